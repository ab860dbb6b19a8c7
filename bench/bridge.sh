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
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
runs=3
if [[ ${1:-} == -n ]]; then
	runs=$2
	shift 2
fi
bench_tmp_token

bench_two_hosts_runs bridge "$runs" "$@"

awk -F, -v runs="$runs" "$BENCH_AWK_MEDIAN"'
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
