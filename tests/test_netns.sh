#!/usr/bin/env bash
# tests/test_netns.sh - bench/netns.sh: a 2-host job across two network
# namespaces joined by a veth pair, and nothing left behind on any exit path.
#
#   netns_job_crosses_the_link   build/bench/bridge as a 2-host job: both
#       hosts exit 0, host 0 prints the bench's CSV, and the bytes the veth
#       carried host 0 -> 1 are at least the data frames the bench counted
#       (so the job's traffic crossed the emulated link) and at most 1.25x
#       plus 1 MB (TCP/IP headers, barriers, heartbeats); then neither
#       namespace nor veth end exists.
#   netns_wrong_token_is_refused  host 1 with another job's token: both
#       psruns fail, host 1 says "wrong job token", host 0 says it refused
#       a connection from host 1's veth address and that host 1 did not
#       join; nothing is left.
#   netns_term_cleans_up  SIGTERM to netns.sh while the job runs: the
#       namespaces existed during the run (and the root namespace never held
#       a veth end); after it, no namespace, veth, nor psrun is left.
#
# Output in cmocka's format, so tests/run.sh counts each case; a case that
# cannot run (not root, no `ip netns`, bench not built) is skipped with its
# reason.  It does not depend on netem: a kernel without it shapes with tbf.
set -u
BUILD=${PSMEM_BUILD:-${BUILD:-build}}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
NETNS=$ROOT/bench/netns.sh
export BUILD
tmp=$(mktemp -d /tmp/psmem-test-netns.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# a time limit (tests/run.sh's timeout) stops netns.sh through its own
# trap, which removes what it built; SIGKILL would leave it
job=
trap '[[ -n $job ]] && kill -TERM $job 2>/dev/null && wait $job; exit 143' TERM INT
failed=0
cases=(netns_job_crosses_the_link netns_wrong_token_is_refused netns_term_cleans_up)

why_skip=
if [[ $(id -u) != 0 ]]; then
	why_skip="not root (ip netns add needs CAP_SYS_ADMIN)"
elif ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
	why_skip="ip netns is unavailable"
elif ! command -v tc >/dev/null; then
	why_skip="tc (iproute2) is not installed"
elif [[ ! -x $BUILD/bench/bridge || ! -x $BUILD/bin/psrun ]]; then
	why_skip="$BUILD/bench/bridge or $BUILD/bin/psrun is not built (make all)"
elif ! ip netns add "psmem-probe-$$" 2>"$tmp/probe"; then
	why_skip="ip netns add fails here: $(head -n 1 "$tmp/probe")"
else
	ip netns del "psmem-probe-$$"
fi
echo "[==========] Running ${#cases[@]} test(s)."
if [[ -n $why_skip ]]; then
	for c in "${cases[@]}"; do
		echo "[ RUN      ] $c"
		echo "SKIP: $why_skip"
		echo "[  SKIPPED ] $c"
	done
	exit 0
fi

# the failure of the current case: its message, and the case fails
fail() {
	echo "$CASE: FAIL: $*"
	case_failed=1
}

# leftovers PID: fails the case when anything netns.sh PID made is still there
leftovers() {
	local pid=$1 left
	left=$(ip netns list | grep -E "^psmem-[AB]-$pid( |$)")
	[[ -z $left ]] || fail "namespaces left behind: $(echo $left)"
	[[ ! -e /run/netns/psmem-A-$pid && ! -e /run/netns/psmem-B-$pid ]] || fail "/run/netns/psmem-*-$pid left behind"
	left=$(ip -o link show | grep -E "ps[AB]-${pid}[@:]")
	[[ -z $left ]] || fail "veth left in the root namespace: $left"
	left=$(pgrep -a -P "$pid" 2>/dev/null)
	[[ -z $left ]] || fail "children of netns.sh left: $left"
}

contains() { # contains FILE TEXT WHAT
	grep -qF -- "$2" "$1" || fail "$3 lacks '$2'; it says: $(tail -n 5 "$1" | tr '\n' '|')"
}

run_case() {
	CASE=$1
	case_failed=0
	echo "[ RUN      ] $CASE"
	"$CASE"
	if ((case_failed)); then
		echo "[  FAILED  ] $CASE"
		failed=$((failed + 1))
	else
		echo "[       OK ] $CASE"
	fi
}

netns_job_crosses_the_link() {
	local d=$tmp/job pid rc=0 frames link
	bash "$NETNS" --logs "$d" -- "$BUILD/bench/bridge" --seconds 0.002 2>"$tmp/job.err" &
	pid=$!
	job=$pid
	wait $pid || rc=$?
	[[ $rc == 0 ]] || fail "netns.sh exited $rc: $(cat "$tmp/job.err" "$d"/host*.err 2>/dev/null | tail -n 8 | tr '\n' '|')"
	contains "$tmp/job.err" "host 0 exit 0, host 1 exit 0" "netns.sh's stderr"
	contains "$d/host0.out" "op,value_len,batch,where,calls" "host 0's output"
	contains "$d/host0.out" "pull,100,4096,remote," "host 0's output"
	# what the bench's calls put on the wire against what the veth carried
	frames=$(sed -n 's/^# data frames of the calls: \([0-9]*\) bytes host 0 -> 1.*/\1/p' "$d/host0.out")
	link=$(sed -n 's/^netns.sh: the link carried \([0-9]*\) bytes host 0 -> 1.*/\1/p' "$tmp/job.err")
	if [[ -z $frames || -z $link ]]; then
		fail "no byte counts (bench: '$frames', link: '$link')"
	elif ((link < frames)); then
		fail "the veth carried $link bytes host 0 -> 1, less than the $frames bytes of data frames: the job's traffic did not all cross the link"
	elif ((link > frames + frames / 4 + 1000000)); then
		fail "the veth carried $link bytes host 0 -> 1 for $frames bytes of data frames: traffic that is not the job's"
	else
		echo "$CASE: $frames bytes of data frames host 0 -> 1, $link bytes on the veth"
	fi
	grep -h '^netns.sh:' "$tmp/job.err" | sed "s/^/$CASE: /"
	leftovers $pid
}

netns_wrong_token_is_refused() {
	local d=$tmp/tok pid rc=0
	"$BUILD/bin/psrun" --make-token "$tmp/other-token" >/dev/null || fail "psrun --make-token"
	bash "$NETNS" --logs "$d" --host1-token "$tmp/other-token" --psrun-opt=--rendezvous-timeout=2 \
		-- "$BUILD/bench/bridge" --seconds 0.002 2>"$tmp/tok.err" &
	pid=$!
	job=$pid
	wait $pid || rc=$?
	[[ $rc != 0 ]] || fail "netns.sh exited 0 with a wrong token on host 1"
	contains "$tmp/tok.err" "host 0 exit 1, host 1 exit 1" "netns.sh's stderr"
	contains "$d/host1.err" "wrong job token" "host 1's stderr"
	contains "$d/host0.err" "refused a connection from 10.213.0.2:" "host 0's stderr"
	contains "$d/host0.err" "wrong job token" "host 0's stderr"
	contains "$d/host0.err" "host 1 did not join within 2 s" "host 0's stderr"
	[[ ! -s $d/host0.out ]] || fail "host 0's program ran: $(head -n 2 "$d/host0.out")"
	leftovers $pid
}

netns_term_cleans_up() {
	local d=$tmp/term pid rc=0 i seen=0
	mkdir -p "$d"
	bash "$NETNS" --logs "$d" -- "$BUILD/bench/bridge" --seconds 1 2>"$tmp/term.err" &
	pid=$!
	job=$pid
	# until host 0's bench has printed its header (the job runs across
	# the link), at most 60 s
	for ((i = 0; i < 600; i++)); do
		grep -q '^op,' "$d/host0.out" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	if grep -q '^op,' "$d/host0.out" 2>/dev/null; then
		ip netns list | grep -q "^psmem-A-$pid" && ip netns list | grep -q "^psmem-B-$pid" && seen=1
		((seen)) || fail "the namespaces psmem-A-$pid and psmem-B-$pid did not exist during the job"
		! ip -o link show | grep -qE "ps[AB]-${pid}[@:]" || fail "a veth end is in the root namespace"
		[[ -n $(ip netns pids "psmem-A-$pid" 2>/dev/null) ]] || fail "no process in psmem-A-$pid during the job"
	else
		fail "the job never started: $(cat "$tmp/term.err" "$d"/host*.err 2>/dev/null | tail -n 5 | tr '\n' '|')"
	fi
	kill -TERM $pid 2>/dev/null
	wait $pid || rc=$?
	[[ $rc == 143 ]] || fail "netns.sh exited $rc after SIGTERM, not 143"
	leftovers $pid
}

for c in "${cases[@]}"; do run_case "$c"; done
echo "[==========] ${#cases[@]} test(s) run."
((failed == 0))
