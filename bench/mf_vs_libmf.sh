#!/usr/bin/env bash
# bench/mf_vs_libmf.sh - psmem's mf against LIBMF (FPSGD, the tool a user
# would pick for matrix factorisation), same data, same rank, same number
# of threads, in the same run, alternating, REPEATS times each (issue 12).
#
#   bench/mf_vs_libmf.sh
#   MF_BEFORE=/work/main/build/apps/mf bench/mf_vs_libmf.sh   also an older mf
#   REPEATS=1 SETS=ml bench/mf_vs_libmf.sh                   quick look
#
# Work:
#   ml   MovieLens-100K u1 (u1.base / u1.test), k=100, 20 epochs/iterations:
#        end-to-end wall time (mf: one run with --test; LIBMF: mf-train then
#        mf-predict, both loading their input) and test RMSE.
#   syn  synthetic 20M ratings from build/apps/mfgen (200k x 50k, rank 10,
#        noise 0.1, uniform ids, seed 1; 10% held out: 18M train, 2M test),
#        k=100, 5 epochs: training ratings/s per epoch and test RMSE after 5.
#        mf: the JSON's throughput (training time only, evaluation excluded).
#        LIBMF: mf-train without a validation set, each iteration's output
#        line time-stamped as it is flushed; per iteration = (time of line 5
#        - time of line 1) / 4, i.e. full iterations 2..5 (LIBMF's first
#        iteration updates only 8 of the k factors, its "slow" part, when
#        there is no L1 term); RMSE from mf-predict on the test split.
# Both run with 2 threads (mf --threads 2, mf-train -s 2) at their default
# learning rate and regularisation (LIBMF: -r 0.1 -l2 0.1, 20 bins -> max(20,
# 2T+1)); MF_ARGS adds mf options.
#
# LIBMF is built privately from $SHARED/peers/libmf into $BUILD/peers/libmf
# with its AVX path (-DUSEAVX -mavx, as its Makefile suggests), never in
# place; without it the script says so and exits 0 (nothing to compare).
#
# Environment (defaults in brackets):
#   SHARED     the shared folder [../shared relative to the repository root,
#              else ../shared beside the main checkout of this worktree]
#   BUILD      build folder [build]     OUT  results [bench/out]
#   REPEATS    runs per tool and set, medians reported [3]
#   SETS       which work ["ml syn"]
#   THREADS    [2]   RANK [100]
#   MF         the mf under test [$BUILD/apps/mf]
#   MF_BEFORE  another mf binary, run alternating with the others (labelled
#              mf_before) [none]
#   MF_ARGS    extra mf options [none]
#
# CPU: besides wall-clock rates, CPU nanoseconds per training rating (all
# threads; mf: its JSON train_cpu_seconds; LIBMF: its /proc CPU time
# between iteration lines 1 and last), a figure a loaded machine disturbs
# less than wall time.
#
# Output: $OUT/mf_vs_libmf_runs.csv (every run), $OUT/mf_vs_libmf.csv and
# $OUT/mf_vs_libmf.json (medians and the ratio mf / LIBMF), printed too, with
# the CPU model and load averages: the machine may be shared, so read the
# figures with the load beside them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
OUT=${OUT:-bench/out}
REPEATS=${REPEATS:-3}
SETS=${SETS:-ml syn}
THREADS=${THREADS:-2}
RANK=${RANK:-100}
MF=${MF:-$BUILD/apps/mf}
MFGEN=${MFGEN:-$BUILD/apps/mfgen}
MF_BEFORE=${MF_BEFORE:-}
MF_ARGS=${MF_ARGS:-}

if [ -z "${SHARED:-}" ]; then
	SHARED=$ROOT/../shared
	if [ ! -d "$SHARED" ]; then
		common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
		[ -n "$common" ] && SHARED=$(dirname "$(dirname "$common")")/shared
	fi
fi
LIBMF_SRC=$SHARED/peers/libmf
ML=$SHARED/data/movielens/ml-100k
if [ ! -f "$LIBMF_SRC/mf.cpp" ]; then
	echo "mf_vs_libmf: LIBMF not found at $LIBMF_SRC (set SHARED); nothing to compare against, skipped"
	exit 0
fi
for b in "$MF" "$MFGEN"; do
	[ -x "$b" ] || { echo "mf_vs_libmf: $b is not built (make all)" >&2; exit 1; }
done
[ -z "$MF_BEFORE" ] || [ -x "$MF_BEFORE" ] || { echo "mf_vs_libmf: MF_BEFORE=$MF_BEFORE is not executable" >&2; exit 1; }
command -v perl >/dev/null || { echo "mf_vs_libmf: needs perl (time stamps of LIBMF's lines)" >&2; exit 1; }

mkdir -p "$OUT" "$BUILD/peers"
DATA=$BUILD/mf_vs_libmf
mkdir -p "$DATA"

# ---- LIBMF, a private copy with AVX
LM=$BUILD/peers/libmf
if [ ! -x "$LM/mf-train" ] || [ ! -x "$LM/mf-predict" ] || [ "$LIBMF_SRC/mf.cpp" -nt "$LM/mf-train" ]; then
	echo "mf_vs_libmf: building a private LIBMF (AVX) from $LIBMF_SRC in $LM"
	rm -rf "$LM"
	cp -r "$LIBMF_SRC" "$LM"
	make -s -C "$LM" clean >/dev/null
	make -s -C "$LM" DFLAG="-DUSEAVX -DUSEOMP" \
		CXXFLAGS="-Wall -O3 -pthread -std=c++0x -march=native -mavx -fopenmp" mf-train mf-predict >"$LM/build.log" 2>&1 ||
		{ echo "mf_vs_libmf: LIBMF build failed, see $LM/build.log" >&2; exit 1; }
fi

# ---- data: 0-based, space-separated (LIBMF's input; mf reads it as it is)
to_libmf() { awk '{ printf "%d %d %s\n", $1 - 1, $2 - 1, $3 }' "$1" >"$2.tmp" && mv "$2.tmp" "$2"; }
if [[ " $SETS " == *" ml "* ]]; then
	[ -f "$ML/u1.base" ] || { echo "mf_vs_libmf: $ML/u1.base missing" >&2; exit 1; }
	[ -f "$DATA/ml.train" ] || to_libmf "$ML/u1.base" "$DATA/ml.train"
	[ -f "$DATA/ml.test" ] || to_libmf "$ML/u1.test" "$DATA/ml.test"
fi
if [[ " $SETS " == *" syn "* ]] && [ ! -f "$DATA/syn.test" ]; then
	echo "mf_vs_libmf: generating the synthetic set (mfgen 200k x 50k, 20M, rank 10) in $DATA"
	"$MFGEN" --rows 200000 --cols 50000 --nnz 20000000 --rank 10 --noise 0.1 --zipf 0 --seed 1 \
		--out "$DATA/syn.raw.train" --test-out "$DATA/syn.raw.test" --test-frac 0.1
	to_libmf "$DATA/syn.raw.train" "$DATA/syn.train"
	to_libmf "$DATA/syn.raw.test" "$DATA/syn.test"
	rm -f "$DATA/syn.raw.train" "$DATA/syn.raw.test"
fi

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
NCPU=$(nproc)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
RUNS=$OUT/mf_vs_libmf_runs.csv
echo "set,tool,rep,seconds,throughput,rmse,cpu_ns_per_rating,load1" >"$RUNS"
TMP=$(mktemp -d /tmp/mf_vs_libmf.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
jnum() { sed -n "s/.*\"$2\": \([-0-9.eE+na]*\).*/\1/p" "$1" | head -1; }

# run_mf BIN LABEL SET EPOCHS
run_mf() {
	local bin=$1 label=$2 set=$3 ep=$4 l t0 t1
	l=$(load1)
	t0=$(now)
	# shellcheck disable=SC2086
	"$bin" --train "$DATA/$set.train" --test "$DATA/$set.test" --rank "$RANK" --epochs "$ep" \
		--threads "$THREADS" --json "$TMP/mf.json" $MF_ARGS >"$TMP/mf.log" 2>&1 ||
		{ echo "mf_vs_libmf: $bin failed:" >&2; cat "$TMP/mf.log" >&2; exit 1; }
	t1=$(now)
	local cpu n ep2
	cpu=$(jnum "$TMP/mf.json" train_cpu_seconds)
	n=$(jnum "$TMP/mf.json" train_ratings)
	ep2=$(jnum "$TMP/mf.json" epochs)
	echo "$set,$label,$rep,$(echo "$t1 - $t0" | bc -l),$(jnum "$TMP/mf.json" throughput),$(jnum "$TMP/mf.json" rmse),$(echo "$cpu * 1000000000 / ($n * $ep2)" | bc -l),$l" >>"$RUNS"
}

# run_libmf SET ITERS
run_libmf() {
	local set=$1 it=$2 l t0 t1 n thr rmse cpu
	l=$(load1)
	t0=$(now)
	# each line stamped with the wall clock and mf-train's CPU seconds
	# (utime + stime of /proc/PID/stat, in clock ticks) as it arrives
	rm -f "$TMP/fifo" "$TMP/pid"
	mkfifo "$TMP/fifo"
	"$LM/mf-train" -k "$RANK" -t "$it" -s "$THREADS" "$DATA/$set.train" "$TMP/libmf.model" >"$TMP/fifo" &
	local pid=$!
	echo "$pid" >"$TMP/pid"
	TICK=$(getconf CLK_TCK) PIDFILE=$TMP/pid perl -MTime::HiRes=time -ne '
		my $c = "nan";
		if (open(my $pf, "<", $ENV{PIDFILE})) { my $p = <$pf>; chomp $p;
			if (open(my $st, "<", "/proc/$p/stat")) { my @f = split / /, (split /\) /, <$st>)[1];
				$c = ($f[11] + $f[12]) / $ENV{TICK}; } }
		printf "%.6f %s %s", time, $c, $_' <"$TMP/fifo" >"$TMP/libmf.log"
	wait "$pid"
	"$LM/mf-predict" "$DATA/$set.test" "$TMP/libmf.model" "$TMP/libmf.pred" >"$TMP/libmf.pred.log"
	t1=$(now)
	rmse=$(sed -n 's/^RMSE = //p' "$TMP/libmf.pred.log")
	# iteration lines: "<stamp> <cpu> N tr_rmse obj" after the header
	n=$(wc -l <"$DATA/$set.train")
	thr=$(awk -v n="$n" '$3 ~ /^[0-9]+$/ { t[$3] = $1; last = $3 }
		END { if (last >= 2) printf "%.0f", n * (last - 1) / (t[last] - t[1]); else print "nan" }' "$TMP/libmf.log")
	cpu=$(awk -v n="$n" '$3 ~ /^[0-9]+$/ { c[$3] = $2; last = $3 }
		END { if (last >= 2 && c[1] != "nan") printf "%.2f", (c[last] - c[1]) * 1e9 / (n * (last - 1)); else print "nan" }' "$TMP/libmf.log")
	echo "$set,libmf,$rep,$(echo "$t1 - $t0" | bc -l),$thr,$rmse,$cpu,$l" >>"$RUNS"
}

TOOLS="mf libmf"
[ -n "$MF_BEFORE" ] && TOOLS="mf libmf mf_before"
echo "mf_vs_libmf: CPU $CPU ($NCPU CPUs), load $LOAD0; $REPEATS repeats of [$TOOLS] on [$SETS], k=$RANK, $THREADS threads"
for set in $SETS; do
	ep=20
	[ "$set" = syn ] && ep=5
	for rep in $(seq 1 "$REPEATS"); do
		for tool in $TOOLS; do
			case $tool in
			mf) run_mf "$MF" mf "$set" "$ep" ;;
			mf_before) run_mf "$MF_BEFORE" mf_before "$set" "$ep" ;;
			libmf) run_libmf "$set" "$ep" ;;
			esac
			tail -1 "$RUNS"
		done
	done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- medians and ratios
python3 - "$RUNS" "$OUT" "$CPU" "$NCPU" "$LOAD0" "$LOAD1" "$REPEATS" "$THREADS" "$RANK" "${MF_ARGS:-}" <<'EOF'
import csv, json, statistics, sys
runs, out, cpu, ncpu, load0, load1, reps, threads, rank, mfargs = sys.argv[1:]
rows = list(csv.DictReader(open(runs)))
def med(s, t, k):
    v = [float(r[k]) for r in rows if r["set"] == s and r["tool"] == t and r[k] not in ("", "nan")]
    return statistics.median(v) if v else float("nan")
sets = sorted({r["set"] for r in rows}, key=lambda s: ["ml", "syn"].index(s) if s in ("ml", "syn") else 9)
tools = [t for t in ("mf", "libmf", "mf_before") if any(r["tool"] == t for r in rows)]
res = {"cpu": cpu, "cpus": int(ncpu), "load_before": load0, "load_after": load1, "repeats": int(reps),
       "threads": int(threads), "rank": int(rank), "mf_args": mfargs, "sets": {}}
lines = ["set,tool,seconds_median,throughput_median,rmse_median,cpu_ns_per_rating_median,seconds_ratio_vs_libmf,throughput_ratio_vs_libmf,cpu_ratio_vs_libmf"]
for s in sets:
    d = {}
    for t in tools:
        d[t] = {k: med(s, t, k) for k in ("seconds", "throughput", "rmse", "cpu_ns_per_rating")}
    lm = d.get("libmf")
    for t in tools:
        x = d[t]
        x["seconds_ratio"] = x["seconds"] / lm["seconds"] if lm else float("nan")
        x["throughput_ratio"] = x["throughput"] / lm["throughput"] if lm else float("nan")
        x["cpu_ratio"] = x["cpu_ns_per_rating"] / lm["cpu_ns_per_rating"] if lm else float("nan")
        lines.append("%s,%s,%.3f,%.0f,%.4f,%.1f,%.3f,%.3f,%.3f" % (s, t, x["seconds"], x["throughput"], x["rmse"],
                                                                 x["cpu_ns_per_rating"], x["seconds_ratio"],
                                                                 x["throughput_ratio"], x["cpu_ratio"]))
    res["sets"][s] = d
open(out + "/mf_vs_libmf.csv", "w").write("\n".join(lines) + "\n")
json.dump(res, open(out + "/mf_vs_libmf.json", "w"), indent=1)
print("\n".join(lines))
print("# ml: seconds = end to end (load, 20 epochs, test); syn: throughput = training ratings/s per epoch (LIBMF: iterations 2..5), rmse = test RMSE after 5")
print("# cpu_ns_per_rating: CPU time (all threads) per training rating (mf: the JSON's train_cpu_seconds; LIBMF: its CPU between iteration lines 1 and last); less sensitive to a shared machine than wall time")
print("# CPU: %s (%s CPUs); load average before %s, after %s; medians of %s" % (cpu, ncpu, load0, load1, reps))
EOF
