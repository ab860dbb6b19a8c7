#!/usr/bin/env bash
# bench/netns.sh - a 2-host psmem job across an emulated network: two
# network namespaces joined by a veth pair, the link shaped with tc.
#
#   bench/netns.sh [options] [--] PROGRAM [ARGS...]
#
#   -n N               nodes per host (psrun -n) [1]
#   -t T               threads per node (psrun -t) [1]
#   --delay D          one-way delay added by netem on each side of the link,
#                      so the round trip gains 2 D (tc time: 50us, 1ms) [50us]
#   --rate R           link rate, each direction (tc rate: 10gbit, 1gbit) [10gbit]
#   --no-shape         no qdisc at all: the bare veth pair
#   --port P           coordinator port (inside namespace A: no collision) [7000]
#   --psrun-opt OPT    one more psrun option for both hosts (repeatable; e.g.
#                      --psrun-opt=-v --psrun-opt=--rendezvous-timeout=5)
#   --logs DIR         host R's stdout and stderr to DIR/hostR.out and
#                      DIR/hostR.err (DIR is created); without it host 0's go
#                      to ours and host 1's stderr follows, prefixed
#                      "[host 1] ", when the job ends
#   --host1-token F    host 1 reads the job token from F instead of the one
#                      made here (to see a refusal; the tests use it)
#
# The literal "{host}" in ARGS is replaced by the host rank (per-host files,
# e.g. --json out.{host}.json).  BUILD names the build folder [build].
#
# What it builds (names carry this script's PID, so parallel runs never
# collide): namespaces psmem-A-PID and psmem-B-PID, a veth pair created
# straight inside them (psA-PID in A, 10.213.0.1/30; psB-PID in B,
# 10.213.0.2/30; the root namespace never holds either end), loopback up in
# both.  psrun of host 0 runs in A and binds 10.213.0.1:PORT as coordinator,
# host 1 runs in B; a fresh job token (psrun --make-token) in a private
# temporary folder.  The job's traffic therefore crosses the shaped veth
# and nothing else: neither namespace has any other interface or route.
#
# Shaping: netem "delay D rate R" as the root qdisc of both veth ends.  When
# the kernel has no sch_netem ("Specified qdisc kind is unknown"), tbf
# "rate R" instead, and one line says that no delay is emulated: the figures
# then show the rate limit only.
#
# Cleanup on every exit path (EXIT, INT, TERM, HUP; trap): the job's psruns
# are stopped (TERM, KILL 3 s later), then both namespaces are deleted, which
# destroys the veth pair.  Only SIGKILL of this script leaves them: then
# `ip netns del psmem-A-PID; ip netns del psmem-B-PID` removes everything.  Exit status: host 0's when it failed, else host
# 1's; 2 for bad usage or a network that could not be built.
set -uo pipefail

BUILD=${BUILD:-build}
nodes=1
threads=1
delay=50us
rate=10gbit
shape=1
port=7000
logs=
host1_token=
psrun_opts=()

usage() {
	sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}
die() {
	echo "netns.sh: $*" >&2
	exit 2
}

while (($#)); do
	case $1 in
	-n) nodes=${2:?}; shift 2 ;;
	-t) threads=${2:?}; shift 2 ;;
	--delay) delay=${2:?}; shift 2 ;;
	--delay=*) delay=${1#*=}; shift ;;
	--rate) rate=${2:?}; shift 2 ;;
	--rate=*) rate=${1#*=}; shift ;;
	--no-shape) shape=0; shift ;;
	--port) port=${2:?}; shift 2 ;;
	--psrun-opt) psrun_opts+=("${2:?}"); shift 2 ;;
	--psrun-opt=*) psrun_opts+=("${1#*=}"); shift ;;
	--logs) logs=${2:?}; shift 2 ;;
	--host1-token) host1_token=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) die "unknown option '$1' (--help)" ;;
	*) break ;;
	esac
done
(($# > 0)) || die "no program to run (--help)"
[[ $nodes =~ ^[1-9][0-9]*$ ]] || die "-n: '$nodes' is not a positive count"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "-t: '$threads' is not a positive count"
[[ $port =~ ^[1-9][0-9]*$ ]] && ((port < 65536)) || die "--port: '$port' is not a port"
[[ -x $BUILD/bin/psrun ]] || die "$BUILD/bin/psrun is not built (make)"
[[ $(id -u) == 0 ]] || die "needs root (ip netns add, ip link add)"
command -v ip >/dev/null || die "ip (iproute2) not found"
if ((shape)); then
	command -v tc >/dev/null || die "tc (iproute2) not found (or use --no-shape)"
fi

# rate_bytes RATE: bytes per second of a tc rate (bit, kbit, mbit, gbit,
# tbit; k/m/g are powers of 1000 as tc reads them)
rate_bytes() {
	local n u m
	[[ $1 =~ ^([0-9]+(\.[0-9]+)?)([kmgt]?)bit$ ]] || return 1
	n=${BASH_REMATCH[1]} u=${BASH_REMATCH[3]}
	case $u in '') m=1 ;; k) m=1e3 ;; m) m=1e6 ;; g) m=1e9 ;; t) m=1e12 ;; esac
	awk -v n="$n" -v m="$m" 'BEGIN { printf "%.0f\n", n * m / 8 }'
}
if ((shape)); then
	rate_B=$(rate_bytes "$rate") || die "--rate: '$rate' is not a rate like 10gbit, 500mbit"
	((rate_B > 0)) || die "--rate: must be above 0 (or --no-shape)"
	[[ $delay =~ ^[0-9]+(\.[0-9]+)?(us|usec|ms|msec|s|sec)$ ]] || die "--delay: '$delay' is not a time like 50us, 1ms"
fi

# ------------------------------------------------------------------ state
tag=$$
nsA=psmem-A-$tag
nsB=psmem-B-$tag
ifA=psA-$tag
ifB=psB-$tag
addrA=10.213.0.1
addrB=10.213.0.2
tmp=$(mktemp -d /tmp/psmem-netns.XXXXXX) || die "mktemp failed"
pids=()
made_ns=()

cleanup() {
	local rc=$? p i alive
	trap - EXIT INT TERM
	# the job first: a process left in a namespace keeps it (and the
	# veth) alive after its name is deleted
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 30; i++)); do
		alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	# processes that psrun left in a namespace (none when psrun is
	# correct, but never leave a namespace alive because of one)
	for p in "${made_ns[@]}"; do
		for i in $(ip netns pids "$p" 2>/dev/null); do kill -KILL "$i" 2>/dev/null; done
		ip netns del "$p" 2>/dev/null || echo "netns.sh: could not delete namespace $p" >&2
	done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- network
for ns in "$nsA" "$nsB"; do
	ip netns add "$ns" 2>"$tmp/err" || die "ip netns add $ns failed: $(cat "$tmp/err")"
	made_ns+=("$ns")
	ip -n "$ns" link set lo up || die "loopback of $ns"
done
# the pair is born inside the namespaces: the root namespace never sees it
ip link add "$ifA" netns "$nsA" type veth peer name "$ifB" netns "$nsB" 2>"$tmp/err" ||
	die "ip link add ... type veth failed: $(cat "$tmp/err")"
ip -n "$nsA" addr add "$addrA/30" dev "$ifA" || die "address of $ifA"
ip -n "$nsB" addr add "$addrB/30" dev "$ifB" || die "address of $ifB"
ip -n "$nsA" link set "$ifA" up || die "$ifA up"
ip -n "$nsB" link set "$ifB" up || die "$ifB up"

if ((shape)); then
	netem=1
	for pair in "$nsA $ifA" "$nsB $ifB"; do
		read -r ns dev <<<"$pair"
		if ((netem)) && ! ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay "$delay" rate "$rate" 2>"$tmp/err"; then
			if grep -qiE 'unknown|not found|no such file|not supported' "$tmp/err"; then
				netem=0
			else
				die "tc netem on $dev failed: $(cat "$tmp/err")"
			fi
		fi
		if ((!netem)); then
			# burst: 100 us at the rate, at least one 64 KiB GSO packet
			burst=$((rate_B / 10000 > 70000 ? rate_B / 10000 : 70000))
			ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 10ms 2>"$tmp/err" ||
				die "tc tbf on $dev failed: $(cat "$tmp/err")"
		fi
	done
	if ((netem)); then
		echo "netns.sh: link $ifA <-> $ifB shaped by netem: delay $delay each way, rate $rate" >&2
	else
		echo "netns.sh: NO DELAY EMULATED: this kernel lacks sch_netem ($(uname -r)); the link is rate-limited by tbf to $rate (burst $burst B) only, so the figures show the rate, not latency" >&2
	fi
else
	echo "netns.sh: link $ifA <-> $ifB unshaped (--no-shape)" >&2
fi
# the coordinator's address must be routed over the pair (psrun retries
# its connection while host 0 is not listening yet)
ip -n "$nsB" route get "$addrA" 2>/dev/null | grep -q "dev $ifB" || die "$addrA is not routed over $ifB in $nsB"

# -------------------------------------------------------------------- job
"$BUILD/bin/psrun" --make-token "$tmp/token" >/dev/null || die "psrun --make-token failed"
if [[ -n $logs ]]; then
	mkdir -p "$logs" || die "cannot create --logs $logs"
	out=$logs
else
	out=$tmp
fi
psrun=$(realpath "$BUILD/bin/psrun")
for r in 0 1; do
	args=()
	for a in "$@"; do args+=("${a//\{host\}/$r}"); done
	tok=$tmp/token
	[[ $r == 1 && -n $host1_token ]] && tok=$host1_token
	ns=$nsA
	((r == 1)) && ns=$nsB
	cmd=(ip netns exec "$ns" "$psrun" -n "$nodes" -t "$threads" --hosts 2 --host-rank "$r"
		--coordinator "$addrA:$port" --token-file "$tok" "${psrun_opts[@]}" "${args[@]}")
	if [[ $r == 0 && -z $logs ]]; then
		"${cmd[@]}" &
	else
		"${cmd[@]}" >"$out/host$r.out" 2>"$out/host$r.err" &
	fi
	pids+=($!)
done
rc0=0
rc1=0
wait "${pids[0]}" || rc0=$?
wait "${pids[1]}" || rc1=$?
pids=()
# what crossed the pair (the job's traffic and nothing else: the
# namespaces hold no other process)
txA=$(ip netns exec "$nsA" cat "/sys/class/net/$ifA/statistics/tx_bytes" 2>/dev/null)
txB=$(ip netns exec "$nsB" cat "/sys/class/net/$ifB/statistics/tx_bytes" 2>/dev/null)
echo "netns.sh: the link carried ${txA:-?} bytes host 0 -> 1 and ${txB:-?} bytes host 1 -> 0; host 0 exit $rc0, host 1 exit $rc1" >&2
if [[ -z $logs && -s $tmp/host1.err ]]; then
	sed 's/^/[host 1] /' "$tmp/host1.err" >&2
fi
((rc0)) && exit "$rc0"
exit "$rc1"
