#!/usr/bin/env bash
# bench/filters.sh [-n RUNS] [--seconds S]
#
# The wire filters (PS_WIRE_KEYCACHE, PS_WIRE_COMPRESS; docs/DESIGN.md
# "Wire filters"): runs build/bench/filters as a 2-host job on this machine
# (two psruns of one node on 127.0.0.1, a port chosen by the kernel, a
# fresh job token in a private temporary directory), RUNS times (default
# 3).  Prints one CSV (filter,workload,calls,mkeys_per_s,wire_bytes_per_key,
# plain_bytes_per_key,ratio) whose numeric columns are medians over the
# runs, then as comments the CPU and psrun -v's bridge counters of each run
# (they add barriers, heartbeats and goodbyes to the frames counted here).
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

bench_two_hosts_runs filters "$runs" "$@"

python3 - "$tmp" "$runs" <<'PY'
import csv, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
rows, order = {}, []
for i in range(1, runs + 1):
    with open(f"{tmp}/out{i}") as f:
        r = csv.reader(line for line in f if not line.startswith('#'))
        header = next(r)
        for row in r:
            key = tuple(row[:2])
            if key not in rows:
                rows[key] = []
                order.append(key)
            rows[key].append([float(x) for x in row[2:]])
print(','.join(header))
for key in order:
    cols = list(zip(*rows[key]))
    med = [statistics.median(c) for c in cols]
    print(','.join(key) + ',%d,%.3f,%.1f,%.1f,%.2f' % tuple(med))
PY
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); runs: $runs; args: $*"
for ((i = 1; i <= runs; i++)); do
	grep -h 'bridge:' "$tmp/err0.$i" "$tmp/err1.$i" | sed "s/^/# run $i: /"
done
