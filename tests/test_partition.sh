#!/usr/bin/env bash
# tests/test_partition.sh - a real network partition of a 3-host job under
# psrun --on-host-failure continue (bridge.c BR-Q, "Quorum" in DESIGN.md).
#
#   partition_minority_stops  three network namespaces (one psrun each,
#       1 node running tests/test_hosts_leave's "quorum" storm) on one
#       Linux bridge in a fourth; once host 2 storms, its port on the
#       bridge goes down: hosts 0 and 1 (the majority) drop host 2 after
#       the silence bound, finish and exit 0; host 2 sees both peers
#       silent at once, logs "lost quorum" and exits non-zero, without
#       dropping anyone or promoting anything (before BR-Q it dropped both
#       and went on alone: split brain).  Then no namespace or psrun of
#       the case is left.
#
# Output in cmocka's format, so tests/run.sh counts the case; it is
# skipped with its reason when it cannot run (not root, no `ip netns`, no
# bridge support, binaries not built).
set -u
BUILD=${PSMEM_BUILD:-${BUILD:-build}}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
tmp=$(mktemp -d /tmp/psmem-test-partition.XXXXXX)
NS=psmem-part-$$
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for n in sw h0 h1 h2; do ip netns del "$NS-$n" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
failed=0
cases=(partition_minority_stops)

why_skip=
if [[ $(id -u) != 0 ]]; then
	why_skip="not root (ip netns add needs CAP_SYS_ADMIN)"
elif ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
	why_skip="ip netns is unavailable"
elif [[ ! -x $BUILD/bin/psrun || ! -x $BUILD/tests/test_hosts_leave ]]; then
	why_skip="$BUILD/bin/psrun or $BUILD/tests/test_hosts_leave is not built (make all)"
elif ! ip netns add "$NS-sw" 2>"$tmp/probe" || ! ip -n "$NS-sw" link add br0 type bridge 2>>"$tmp/probe"; then
	why_skip="a namespace with a bridge cannot be made here: $(head -n 1 "$tmp/probe")"
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

fail() {
	echo "$CASE: FAIL: $*"
	case_failed=1
}

contains() { # contains FILE TEXT WHAT
	grep -qF -- "$2" "$1" || fail "$3 lacks '$2'; it says: $(tail -n 5 "$1" | tr '\n' '|')"
}

lacks() { # lacks FILE TEXT WHAT
	! grep -qF -- "$2" "$1" || fail "$3 has '$2': $(grep -F -- "$2" "$1" | head -n 2 | tr '\n' '|')"
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

# waits up to $2 tenths of a second for process $1 to end; its status in rc
wait_for() {
	local i
	for ((i = 0; i < $2; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	rc=-1
	kill -0 "$1" 2>/dev/null && return
	wait "$1"
	rc=$?
}

partition_minority_stops() {
	local r i rc
	ip -n "$NS-sw" link set br0 up
	for r in 0 1 2; do
		ip netns add "$NS-h$r"
		ip -n "$NS-sw" link add "p$r" type veth peer name eth0 netns "$NS-h$r"
		ip -n "$NS-sw" link set "p$r" master br0 up
		ip -n "$NS-h$r" addr add "10.77.0.$((r + 1))/24" dev eth0
		ip -n "$NS-h$r" link set eth0 up
		ip -n "$NS-h$r" link set lo up
	done
	"$BUILD/bin/psrun" --make-token "$tmp/token" >/dev/null || fail "psrun --make-token"
	for r in 0 1 2; do
		ip netns exec "$NS-h$r" "$BUILD/bin/psrun" -n 1 --hosts 3 --host-rank $r \
			--coordinator 10.77.0.1:7000 --token-file "$tmp/token" --rendezvous-timeout 20 \
			--on-host-failure continue --backup-rate 50 \
			"$BUILD/tests/test_hosts_leave" --node quorum >"$tmp/h$r.out" 2>"$tmp/h$r.err" &
		pids[r]=$!
	done
	# until host 2 storms (every host's first 100 rounds done), at most 60 s
	for ((i = 0; i < 600; i++)); do
		grep -q 'quorum: host 2 running' "$tmp/h2.out" 2>/dev/null && break
		kill -0 "${pids[2]}" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q 'quorum: host 2 running' "$tmp/h2.out" 2>/dev/null; then
		fail "host 2 never stormed: $(cat "$tmp"/h*.err 2>/dev/null | tail -n 6 | tr '\n' '|')"
		return
	fi
	ip -n "$NS-sw" link set p2 down # the cut: host 2 alone, hosts 0 and 1 together
	for r in 0 1; do
		wait_for "${pids[r]}" 300
		[[ $rc == 0 ]] || fail "host $r exited $rc: $(tail -n 4 "$tmp/h$r.err" "$tmp/h$r.out" | tr '\n' '|')"
		contains "$tmp/h$r.out" "quorum: host $r: finished with 2 hosts" "host $r's output"
		contains "$tmp/h$r.err" "dropped, the job goes on with 2 of 3 hosts" "host $r's stderr"
		lacks "$tmp/h$r.err" "lost quorum" "host $r's stderr"
	done
	wait_for "${pids[2]}" 300
	[[ $rc != 0 && $rc != -1 ]] || fail "host 2 (the minority) exited $rc, not by itself with a failure"
	contains "$tmp/h2.err" "psrun: host 2: lost quorum: host " "host 2's stderr"
	contains "$tmp/h2.err" "this side reaches 1 of the 3 hosts present before" "host 2's stderr"
	lacks "$tmp/h2.err" "dropped, the job goes on" "host 2's stderr"
	lacks "$tmp/h2.err" "promoted" "host 2's stderr"
	lacks "$tmp/h2.out" "finished with" "host 2's output"
	grep -h 'lost quorum' "$tmp/h2.err" | head -n 1 | sed "s/^/$CASE: /"
}

for c in "${cases[@]}"; do run_case "$c"; done
echo "[==========] ${#cases[@]} test(s) run."
((failed == 0))
