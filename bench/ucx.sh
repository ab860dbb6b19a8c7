#!/usr/bin/env bash
# bench/ucx.sh [-n ROUNDS] [ucx_rpc options...]
#
# Runs build/bench/ucx_rpc (psmem's remote pull pattern between two
# processes of this host: plain TCP against UCX UCP over tcp, shared memory
# and UCX's own choice; bench/ucx_rpc.c says what each row measures) with
# ROUNDS rounds (default 5; every round runs every transport in turn, so
# drift of a busy machine hits them all alike) and prints one CSV whose
# numeric columns are the medians over the rounds, then ucx_rpc's comments
# (UCX's version, the lanes and protocols it chose) and the CPU model.
# Without UCX (pkg-config ucx; Debian's libucx-dev) it prints why it skips
# and exits 0.  Builds the binary with `make bench-ucx` when it is missing.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
rounds=5
if [[ ${1:-} == -n ]]; then
	rounds=$2
	shift 2
fi
if ! pkg-config --exists ucx 2>/dev/null; then
	echo "SKIP bench/ucx.sh: UCX not found (pkg-config ucx; Debian package libucx-dev)"
	exit 0
fi
if [[ ! -x $BUILD/bench/ucx_rpc ]]; then
	make --no-print-directory BUILD="$BUILD" bench-ucx >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$BUILD/bench/ucx_rpc" --rounds "$rounds" "$@" >"$tmp/raw.csv"

awk -F, "$BENCH_AWK_MEDIAN"'
/^#/ { next }
$1 == "round" { next }
{
	key = $2 "," $3
	if (!(key in cnt)) order[++rows] = key
	cnt[key]++
	calls[key] = $4
	for (c = 5; c <= 8; c++) val[key, cnt[key], c] = $c
}
END {
	print "transport,pattern,rounds,calls,p50_us,p99_us,keys_per_s,mb_per_s"
	for (r = 1; r <= rows; r++) {
		key = order[r]
		printf "%s,%d,%s,%s,%s,%.0f,%.1f\n", key, cnt[key], calls[key], median(key, 5), median(key, 6),
		       median(key, 7), median(key, 8)
	}
}' "$tmp/raw.csv"
grep '^#' "$tmp/raw.csv" || true
echo "# CPU: $(bench_cpu_model), $(nproc) cores online"
