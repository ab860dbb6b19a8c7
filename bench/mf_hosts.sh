#!/usr/bin/env bash
# bench/mf_hosts.sh - mf on 1 host x 2 nodes against 2 hosts x 1 node
# (two psruns on loopback, one job token), alternating, REPEATS runs of
# each; prints every run and the medians of training seconds and test RMSE
# (issue 13's target: 2 hosts <= 2x the training time, RMSE within 0.01).
#
#   bench/mf_hosts.sh                       MovieLens-100K u1, 20 epochs, localize
#   POLICY=classic REPEATS=5 bench/mf_hosts.sh
#   SHAPES="1x2 2x1 1x4 2x2" bench/mf_hosts.sh   HOSTSxNODES, any mix
#
# Environment (defaults in brackets):
#   DATA     datasets [$(git rev-parse --show-toplevel)/../shared/data]
#   TRAIN, TEST  rating files [$DATA/movielens/ml-100k/u1.base, u1.test]
#   EPOCHS [20]  POLICY [localize]  REPEATS [3]  SHAPES ["1x2 2x1"]
#   MF_ARGS  more mf options [none]
#   BUILD [build]  OUT [bench/out/mf_hosts]: each run's JSON and output
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(git rev-parse --show-toplevel)"
BUILD=${BUILD:-build}
EPOCHS=${EPOCHS:-20}
POLICY=${POLICY:-localize}
REPEATS=${REPEATS:-3}
SHAPES=${SHAPES:-1x2 2x1}
OUT=${OUT:-bench/out/mf_hosts}
mkdir -p "$OUT"
bench_mf_inputs mf_hosts.sh
bench_tmp_token
TOKEN=$tmp/token

bench_env_header
echo "# mf --train $TRAIN --test $TEST --epochs $EPOCHS --policy $POLICY ${MF_ARGS:-}"

# run SHAPE REPEAT: one run; prints "shape repeat train_seconds rmse load1 cpu"
# (cpu: node 0's CPU seconds in training, host 0's on several hosts)
run() {
	local shape=$1 k=$2 hosts=${1%x*} nodes=${1#*x}
	local tag="$OUT/$shape-$k" load
	load=$(cut -d' ' -f1 /proc/loadavg)
	# shellcheck disable=SC2206 # MF_ARGS: options split on spaces
	local mf=("$BUILD/apps/mf" --train "$TRAIN" --test "$TEST" --epochs "$EPOCHS" --policy "$POLICY"
		--json "$tag.json" ${MF_ARGS:-})
	if [ "$hosts" = 1 ]; then
		"$BUILD/bin/psrun" -n "$nodes" "${mf[@]}" >"$tag.h0.out" 2>&1
	else
		local port pids=() r
		port=$(bench_free_port)
		for ((r = 0; r < hosts; r++)); do
			"$BUILD/bin/psrun" -n "$nodes" --hosts "$hosts" --host-rank "$r" \
				--coordinator "127.0.0.1:$port" --token-file "$TOKEN" "${mf[@]}" >"$tag.h$r.out" 2>&1 &
			pids+=($!)
		done
		for r in "${pids[@]}"; do wait "$r"; done
	fi
	python3 - "$tag.json" "$shape" "$k" "$load" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
print(sys.argv[2], sys.argv[3], "%.3f" % j["train_seconds"], "%.4f" % j["rmse"], sys.argv[4],
      "%.3f" % j["train_cpu_seconds"])
EOF
}

echo "shape repeat train_seconds rmse load1 cpu"
: >"$OUT/runs.txt"
for ((k = 1; k <= REPEATS; k++)); do
	for s in $SHAPES; do
		run "$s" "$k" | tee -a "$OUT/runs.txt"
	done
done
echo "# medians: shape train_seconds rmse cpu"
# shellcheck disable=SC2086 # one argument per shape
python3 - "$OUT/runs.txt" $SHAPES <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for s in sys.argv[2:]:
    r = [x for x in rows if x[0] == s]
    print(s, "%.3f" % statistics.median(float(x[2]) for x in r), "%.4f" % statistics.median(float(x[3]) for x in r),
          "%.3f" % statistics.median(float(x[5]) for x in r))
EOF
