#!/usr/bin/env bash
# bench/mf_elastic.sh - mf on 2 hosts x 1 node (two psruns --elastic on
# loopback) undisturbed, then with a third psrun --join started when host 1
# shows epoch JOIN_AFTER done (mf --wait-hosts 3@JOIN_AFTER+1 holds the
# next epoch until it is in); REPEATS runs of each, both with --shares
# SHARES (default 6: 3 per host on 2 hosts, 2 per host on 3).  Prints test
# RMSE, training seconds, the epoch host 2 joined at (host_joined_epoch),
# and the ratings each host trained in the last epoch (host_epoch_ratings).
#
#   bench/mf_elastic.sh                     MovieLens-100K u1, 20 epochs, join after 4
#   POLICY=localize REPEATS=3 bench/mf_elastic.sh
#
# Environment (defaults in brackets):
#   DATA [../shared/data]  TRAIN, TEST [$DATA/movielens/ml-100k/u1.base, u1.test]
#   EPOCHS [20]  JOIN_AFTER [4]  POLICY [classic]  REPEATS [3]  SHARES [6]
#   MF_ARGS [none]  BUILD [build]  OUT [bench/out/mf_elastic]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(git rev-parse --show-toplevel)"
BUILD=${BUILD:-build}
EPOCHS=${EPOCHS:-20}
JOIN_AFTER=${JOIN_AFTER:-4}
POLICY=${POLICY:-classic}
REPEATS=${REPEATS:-3}
SHARES=${SHARES:-6}
OUT=${OUT:-bench/out/mf_elastic}
mkdir -p "$OUT"
bench_mf_inputs mf_elastic.sh
"$BUILD/bin/psrun" --help 2>&1 | grep -q -- --join || { echo "mf_elastic.sh: this psrun has no --join" >&2; exit 1; }
bench_tmp_token
TOKEN=$tmp/token

bench_env_header
echo "# mf --train $TRAIN --test $TEST --epochs $EPOCHS --policy $POLICY --shares $SHARES ${MF_ARGS:-};" \
	"2 hosts x 1 node (psrun --elastic), + 1 joining after epoch $JOIN_AFTER; load $(bench_load)"

# run KIND REPEAT (KIND: two or join)
run() {
	local kind=$1 k=$2 tag="$OUT/$1-$2" port pids=() r
	port=$(bench_free_port)
	# shellcheck disable=SC2206 # MF_ARGS: options split on spaces
	local mf=("$BUILD/apps/mf" --train "$TRAIN" --test "$TEST" --epochs "$EPOCHS" --policy "$POLICY"
		--shares "$SHARES" --json "$tag.json" ${MF_ARGS:-})
	[ "$kind" = join ] && mf+=(--wait-hosts "3@$((JOIN_AFTER + 1))")
	for ((r = 0; r < 2; r++)); do
		"$BUILD/bin/psrun" -n 1 --hosts 2 --host-rank "$r" --coordinator "127.0.0.1:$port" \
			--token-file "$TOKEN" --elastic "${mf[@]}" >"$tag.h$r.out" 2>"$tag.h$r.err" &
		pids+=($!)
	done
	if [ "$kind" = join ]; then
		local mark="mf: host 1: epoch $JOIN_AFTER/$EPOCHS done"
		until grep -qF "$mark" "$tag.h1.out" 2>/dev/null; do
			kill -0 "${pids[1]}" 2>/dev/null || break
			sleep 0.001
		done
		"$BUILD/bin/psrun" -n 1 --join "127.0.0.1:$port" --token-file "$TOKEN" "${mf[@]}" \
			>"$tag.h2.out" 2>"$tag.h2.err" &
		pids+=($!)
	fi
	for pid in "${pids[@]}"; do wait "$pid"; done
	python3 - "$tag.json" "$kind" "$k" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
last = [row[-1] for row in j["host_epoch_ratings"]]
print(sys.argv[2], sys.argv[3], "%.4f" % j["rmse"], "%.3f" % j["train_seconds"],
      j["host_joined_epoch"][0], "/".join(map(str, last)))
EOF
}

echo "kind repeat rmse train_seconds host_joined_epoch last_epoch_ratings_per_host"
for ((k = 1; k <= REPEATS; k++)); do
	run two "$k"
	run join "$k"
done
