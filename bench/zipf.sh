#!/usr/bin/env bash
# bench/zipf.sh [-n RUNS] [zipf options...]
#
# The skewed workload of bench/zipf.c under `psrun -n 2` (2 nodes x 1
# thread: this machine has 2 cores, so no oversubscription), modes
# classic / relocate / replicate / both interleaved RUNS times (default 3)
# so drift hits every mode alike.  Prints every run's CSV row, then per mode
# the median throughput and its ratio to relocate (median of the per-run
# ratios).  Every row must say verified=yes (exact final sums after ps_sync).
set -euo pipefail
BUILD=${BUILD:-build}
NODES=${NODES:-2}
runs=3
if [[ ${1:-} == -n ]]; then
	runs=$2
	shift 2
fi
modes=(classic relocate replicate both)
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
header=--header
for ((i = 1; i <= runs; i++)); do
	for m in "${modes[@]}"; do
		"$BUILD/bin/psrun" -n "$NODES" "$BUILD/bench/zipf" --mode "$m" $header "$@" | tee -a "$tmp"
		header=
	done
done
awk -F, '
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
$1 == "mode" { next }
{
	run[$1]++; thr[$1, run[$1]] = $11
	if ($15 != "yes") bad = 1
}
END {
	printf "# mode,median_mkeys_per_s,median_ratio_to_relocate,runs\n"
	split("classic relocate replicate both", ms, " ")
	for (mi = 1; mi <= 4; mi++) {
		m = ms[mi]; n = run[m]
		for (i = 1; i <= n; i++) { a[i] = thr[m, i]; r[i] = thr[m, i] / thr["relocate", i] }
		printf "# %s,%.3f,%.2f,%d\n", m, median(a, n), median(r, n), n
	}
	if (bad) { print "# ERROR: a run did not verify" > "/dev/stderr"; exit 1 }
}' "$tmp"
