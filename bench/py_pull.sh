#!/usr/bin/env bash
# bench/py_pull.sh - overhead of t.pull(keys, out) from Python against the
# same ps_pull_sync from C (1000 keys x 100 floats by default, one node).
# C and Python alternate ROUNDS times (each: best of 5 x REPS calls) and the
# best of each side counts, so load from other processes hurts both alike.
# Prints one JSON line: c_ns, python_ns, ratio (python / c).
#   bench/py_pull.sh [KEYS VALUE_LEN REPS]      ROUNDS [6]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-6}
if [ -z "${PYTHON:-}" ]; then
	for p in python3 /usr/bin/python3; do
		"$p" -c 'import numpy' 2>/dev/null && { PYTHON=$p; break; }
	done
fi
K=${1:-1000} V=${2:-100} R=${3:-2000}
cbest= pbest=
for _ in $(seq "$ROUNDS"); do
	c=$("$BUILD/bench/py_pull" "$K" "$V" "$R")
	py=$(PYTHONPATH="$BUILD/python" "$PYTHON" bench/py_pull.py "$K" "$V" "$R")
	cn=${c##*ns_per_call=} pn=${py##*ns_per_call=}
	if [ -z "$cbest" ] || [ "$cn" -lt "$cbest" ]; then cbest=$cn; fi
	if [ -z "$pbest" ] || [ "$pn" -lt "$pbest" ]; then pbest=$pn; fi
done
echo "{\"bench\": \"py_pull\", \"keys\": $K, \"value_len\": $V, \"reps\": $R, \"rounds\": $ROUNDS, \"c_ns\": $cbest, \"python_ns\": $pbest, \"ratio\": $(awk -v a="$pbest" -v b="$cbest" 'BEGIN{printf "%.3f", a/b}')}"
