#!/usr/bin/env bash
# bench/py_pull.sh - overhead of t.pull(keys, out) from Python against the
# same ps_pull_sync from C (1000 keys x 100 floats by default, one node).
# C and Python alternate ROUNDS times (each: best of 5 x REPS calls) and the
# best of each side counts, so load from other processes hurts both alike.
# Prints one JSON line: c_ns, python_ns, ratio (python / c): wall time;
# c_cpu_ns, python_cpu_ns, cpu_ratio: the calling thread's CPU time.
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
min() { if [ -z "$1" ] || [ "$2" -lt "$1" ]; then echo "$2"; else echo "$1"; fi; }
cw= pw= cc= pc=
for _ in $(seq "$ROUNDS"); do
	c=$("$BUILD/bench/py_pull" "$K" "$V" "$R")
	py=$(PYTHONPATH="$BUILD/python" "$PYTHON" bench/py_pull.py "$K" "$V" "$R")
	cw=$(min "$cw" "${c##*ns_per_call=}") pw=$(min "$pw" "${py##*ns_per_call=}")
	c=${c##*cpu_ns_per_call=} py=${py##*cpu_ns_per_call=}
	cc=$(min "$cc" "${c%% *}") pc=$(min "$pc" "${py%% *}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
echo "{\"bench\": \"py_pull\", \"keys\": $K, \"value_len\": $V, \"reps\": $R, \"rounds\": $ROUNDS," \
	"\"c_ns\": $cw, \"python_ns\": $pw, \"ratio\": $(ratio "$pw" "$cw")," \
	"\"c_cpu_ns\": $cc, \"python_cpu_ns\": $pc, \"cpu_ratio\": $(ratio "$pc" "$cc")}"
