#!/usr/bin/env bash
# bench/bridge.sh [-n RUNS] [--seconds S]
#
# Runs build/bench/bridge as a 2-host job on this machine, RUNS times
# (default 3): two psruns of one node each on 127.0.0.1 (a port chosen by
# the kernel), a fresh job token in a private temporary directory.  Prints
# one CSV whose numeric columns are the per-row medians over the runs, then
# as comments each run's check line (bytes the calls put on the wire) and
# psrun -v's bridge counters of both hosts.  The calls' frames travel on
# the nodes' data connections, not through psrun: its counters hold only
# barriers, heartbeats and goodbyes (and data frames only where a node has
# no data connection).
set -euo pipefail
BUILD=${BUILD:-build}
runs=3
if [[ ${1:-} == -n ]]; then
	runs=$2
	shift 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUILD/bin/psrun" --make-token "$tmp/token" >/dev/null

one_run() {
	local i=$1 port pid0 pid1 rc=0
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	local common=(-n 1 --hosts 2 --coordinator "127.0.0.1:$port" --token-file "$tmp/token" -v)
	"$BUILD/bin/psrun" "${common[@]}" --host-rank 0 "$BUILD/bench/bridge" "$@" >"$tmp/out$i" 2>"$tmp/err0.$i" &
	pid0=$!
	"$BUILD/bin/psrun" "${common[@]}" --host-rank 1 "$BUILD/bench/bridge" "$@" >/dev/null 2>"$tmp/err1.$i" &
	pid1=$!
	wait $pid0 || rc=$?
	wait $pid1 || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$tmp/err0.$i" "$tmp/err1.$i" >&2
		exit $rc
	fi
}

for ((i = 1; i <= runs; i++)); do
	one_run "$i" "$@"
done

awk -F, -v runs="$runs" '
function median(key, col,    n, i, j, v, t) {
	n = cnt[key]
	for (i = 1; i <= n; i++) v[i] = val[key, i, col]
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
FNR == 1 { header = $0; next }
/^#/ { next }
{
	key = $1 "," $2 "," $3 "," $4
	if (!(key in cnt)) order[++rows] = key
	cnt[key]++
	for (c = 5; c <= NF; c++) val[key, cnt[key], c] = $c
	nf = NF
}
END {
	print header
	for (r = 1; r <= rows; r++) {
		key = order[r]
		line = key
		for (c = 5; c <= nf; c++) line = line "," median(key, c)
		print line
	}
}' "$tmp"/out*
for ((i = 1; i <= runs; i++)); do
	grep -h '^#' "$tmp/out$i" | sed "s/^# /# run $i: /"
	grep -h 'bridge:' "$tmp/err0.$i" "$tmp/err1.$i" | sed "s/^/# run $i: /"
done
