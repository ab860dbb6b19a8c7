#!/usr/bin/env bash
# bench/micro.sh [-n RUNS] [micro options...]
#
# Runs build/bench/micro RUNS times (default 3) and prints one CSV whose
# numeric columns are the per-row medians over the runs (ratio: the median
# of the runs' ratios, each measured psmem-vs-baseline in the same run), then
# the comment lines of every run (prefixed with the run number) and the
# 2-process scaling of pull value_len=100 recomputed from the medians.
# The raw CSV of each run is kept in $MICRO_KEEP if that is set.  MICRO
# names another micro binary (default $BUILD/bench/micro), for example one
# built from this bench/micro.c against another libpsmem (before / after).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=${BUILD:-build}
runs=3
if [[ ${1:-} == -n ]]; then
	runs=$2
	shift 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for ((i = 1; i <= runs; i++)); do
	"${MICRO:-$BUILD/bench/micro}" "$@" >"$tmp/run$i.csv"
	if [[ -n ${MICRO_KEEP:-} ]]; then
		mkdir -p "$MICRO_KEEP"
		cp "$tmp/run$i.csv" "$MICRO_KEEP/run$i.csv"
	fi
done

awk -F, -v runs="$runs" "$BENCH_AWK_MEDIAN"'
FNR == 1 { run++; if (run == 1) header = $0; next }
/^#/ { comments = comments "# run " run ": " substr($0, 3) "\n"; next }
{
	key = $1 "," $2 "," $3 "," $4 "," $5
	if (!(key in cnt)) { order[++nrows] = key; ncols[key] = NF; note[key] = $NF }
	cnt[key]++
	for (c = 6; c < NF; c++) val[key, cnt[key], c] = $c
}
END {
	print header
	for (r = 1; r <= nrows; r++) {
		k = order[r]; line = k
		for (c = 6; c < ncols[k]; c++) {
			m = median(k, c)
			line = line "," ((c == 8) ? sprintf("%.2f", m) : (c == 9 || c == 10 || c == 11 || c == 16) ? sprintf("%d", m) : (c == 12 || c == 13) ? sprintf("%.2f", m) : sprintf("%.1f", m))
		}
		print line "," note[k]
	}
	printf "%s", comments
	one = "pull,100,1,1,own"; two = "pull,100,2,1,own"; oth = "pull,100,2,1,other"
	if ((one in cnt) && (two in cnt))
		printf "# medians of %d runs: scaling pull value_len=100: 2 processes = %.2fx of 1 process (own; other: %.2fx)\n",
			runs, median(two, 12) / median(one, 12), (oth in cnt) ? median(oth, 12) / median(one, 12) : 0
}' "$tmp"/run*.csv
