#!/usr/bin/env bash
# bench/apps.sh - the apps (mf, kge, w2v) on the real datasets, by mode
# (both policies by default; replication and sampling with MODES), 1 node
# and `psrun -n 2`, plus the raw HOGWILD! baseline for mf
# (build/bench/hogwild_mf); REPEATS runs per configuration, medians.
#
#   bench/apps.sh                      full run (see the settings below)
#   QUICK=1 bench/apps.sh              smoke run: tiny epochs and data subsets
#   APPS="mf" REPEATS=5 bench/apps.sh  choose apps and repeats
#   MODES="classic localize replicate both" SHAPES=2x1 bench/apps.sh
#                                      relocation only / replication only /
#                                      both, classic as the reference (issue 4)
#
# Environment (defaults in brackets):
#   APPS     apps to run ["mf kge w2v"]; one that is not built is skipped
#   REPEATS  runs per configuration, the median is reported [3; QUICK: 1]
#   QUICK    1: smoke run (mf 2 epochs, kge 1 epoch on a subset, w2v 1 epoch
#            on wiki2019-text8style.10M) [0]
#   SHAPES   psmem shapes, NODESxTHREADS: N>1 runs under psrun -n N -t T, N=1
#            runs the app alone; shapes needing more cores than the machine
#            has are skipped (never oversubscribe) ["1x1 2x1 1x2"]
#   RAW_THREADS  thread counts of the raw baseline hogwild_mf ["1 2"]
#   MODES    parameter management per run ["classic localize"]:
#              classic    --policy classic (rows stay where created)
#              localize   --policy localize (relocation only)
#              replicate  --policy classic --replicate K (replication only)
#              both       --policy localize --replicate K, and for w2v and
#                         kge --sampling S (replication + relocation +
#                         sampling management)
#            a mode may name its sampling scheme: both/naive, localize/pool:8,
#            both/app (the app's own sampler) (w2v, kge; mf has no negatives
#            and ignores it); without one, only both samples through psmem
#            (KGE_SAMPLING, W2V_SAMPLING)
#   MF_REPLICATE, KGE_REPLICATE, W2V_REPLICATE  K of replicate/both
#            [mf 100 items; kge 474 = every relation row of FB15k-237;
#            w2v 1000 words]
#   KGE_SAMPLING, W2V_SAMPLING  S of both without /S [pool, pool]
#   MF_ZIPF  1: with replicate or both in MODES, mf also runs on a zipf-skewed
#            mfgen dataset (app label mf-zipf; MF_ZIPF_GEN: its mfgen options)
#            [1]
#   PLOT_ONLY  1: run nothing, recompute apps.csv and the PNG from apps_runs.csv [0]
#   DATA     datasets [$(git rev-parse --show-toplevel)/../shared/data]
#   BUILD    build folder [build]      OUT  results [bench/out]
#
# Output (bench/out/ is not tracked):
#   apps.csv             app,config,mode,nodes,threads,throughput_median,
#                        metric_name,metric_median,seconds_median,
#                        cpu_median (each median taken over the repeats,
#                        column by column; cpu: the JSON's
#                        train_cpu_seconds, node 0's CPU seconds in training,
#                        less sensitive to the machine's load than seconds)
#   apps_runs.csv        every run: the same columns plus the repeat number,
#                        load1 (the 1-minute load average when it started)
#                        and cpu
#   apps_throughput.png  throughput by configuration, one panel per app (gnuplot)
#   apps_throughput.gp, plot-APP.dat  the gnuplot script and its data
#   apps_env.txt         date, commit, CPU, settings, load average before/after
#   json/, logs/         each run's --json output and its stdout+stderr
# throughput is what the app reports (training items per second: ratings,
# triples, words; evaluation excluded); seconds is the JSON's "seconds".
set -uo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"

QUICK=${QUICK:-0}
BUILD=${BUILD:-build}
DATA=${DATA:-$ROOT/../shared/data}
OUT=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 1
APPS=${APPS:-mf kge w2v}
if [[ $QUICK == 1 ]]; then
	REPEATS=${REPEATS:-1}
	SHAPES=${SHAPES:-1x1 2x1}
else
	REPEATS=${REPEATS:-3}
	SHAPES=${SHAPES:-1x1 2x1 1x2}
fi
RAW_THREADS=${RAW_THREADS:-1 2}
MODES=${MODES:-classic localize}
MF_REPLICATE=${MF_REPLICATE:-100}
KGE_REPLICATE=${KGE_REPLICATE:-474}
W2V_REPLICATE=${W2V_REPLICATE:-1000}
KGE_SAMPLING=${KGE_SAMPLING:-pool}
W2V_SAMPLING=${W2V_SAMPLING:-pool}
MF_ZIPF=${MF_ZIPF:-1}
MF_ZIPF_GEN=${MF_ZIPF_GEN:---rows 20000 --cols 4000 --nnz 1000000 --zipf 1.1 --rank 10 --noise 0.3 --seed 1}

# ---------------------------------------------------------------- settings
# Full run.  Empty *_ARGS means the app's defaults, which are the settings
# of the targets of issue 3:
#   mf   MovieLens-100K u1.base/u1.test, mf --help defaults (rank 100, lr
#        0.015, reg 0.08, 20 epochs); target test RMSE <= 0.94.
#   kge  FB15k-237, kge --help defaults (ComplEx, dim 256, Adagrad lr 0.1,
#        N3 reg 0.01, 256 negatives, batch 256, 25 epochs); target MRR >= 0.30.
#        About 85 s per epoch on one loaded core: ~35 min per run.
#   w2v  wiki2019-text8style (17M words), w2v --help defaults (dim 100,
#        window 5, neg 5, sample 1e-4, min-count 5, 5 epochs); target analogy
#        accuracy >= 35%.  ~10-20 min per run on one core.
# >>> KGE_ARGS and W2V_ARGS: re-check against `kge --help` / `w2v --help`
# >>> when those apps are final (they were still changing when this was
# >>> written); put any non-default target setting here.
MF_TRAIN=${MF_TRAIN:-$DATA/movielens/ml-100k/u1.base}
MF_TEST=${MF_TEST:-$DATA/movielens/ml-100k/u1.test}
MF_ARGS=${MF_ARGS:-}
KGE_DATASET=${KGE_DATASET:-$DATA/kg/FB15k-237}
KGE_ARGS=${KGE_ARGS:-}
W2V_TRAIN=${W2V_TRAIN:-$DATA/text/wiki2019-text8style.gz}
W2V_ANALOGY=${W2V_ANALOGY:-$DATA/text/questions-words.txt}
W2V_ARGS=${W2V_ARGS:-}

# Smoke run (QUICK=1): about a minute or two on 2 cores.
if [[ $QUICK == 1 ]]; then
	MF_ARGS="--epochs 2 $MF_ARGS"
	KGE_ARGS="--epochs 1 --dim 64 $KGE_ARGS"
	KGE_QUICK_TRAIN=20000 # first N triples of train.txt; valid/test: first 500
	W2V_TRAIN=$DATA/text/wiki2019-text8style.10M
	W2V_ARGS="--epochs 1 $W2V_ARGS"
	MF_ZIPF_GEN="--rows 2000 --cols 500 --nnz 100000 --zipf 1.1 --rank 10 --noise 0.3 --seed 1"
	KGE_REPLICATE=$((KGE_REPLICATE < 100 ? KGE_REPLICATE : 100)) # the subset has fewer relations
fi

# ------------------------------------------------------------------ helpers
say() { printf 'apps.sh: %s\n' "$*" >&2; }

CORES=$(nproc 2>/dev/null || echo 1)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT/json" "$OUT/logs"
RUNS=$OUT/apps_runs.csv
CSV=$OUT/apps.csv
PLOT_ONLY=${PLOT_ONLY:-0}
if [[ $PLOT_ONLY != 1 ]]; then
	echo "app,config,mode,nodes,threads,repeat,throughput,metric_name,metric,seconds,load1,cpu" >"$RUNS"
elif [[ ! -s $RUNS ]]; then
	echo "apps.sh: PLOT_ONLY=1 but no $RUNS" >&2
	exit 1
fi

# value of a top-level key in the flat one-line JSON the apps write
jget() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\).*/\1/p" "$1" | head -n 1; }

# add_job APP CONFIG POLICY NODES THREADS METRIC -- command...
# Queues a configuration; run_jobs runs the queue REPEATS times, the repeat
# loop outermost, so that a slow spell of the (shared) machine hits every
# configuration alike instead of all repeats of one.  The command gets
# --json FILE appended; each successful run is a line of apps_runs.csv.
JOB_DESC=()
JOB_CMD=()
add_job() {
	JOB_DESC+=("$1 $2 $3 $4 $5 $6")
	shift 7
	JOB_CMD+=("$(printf '%q ' "$@")")
}

run_jobs() {
	local r i app config policy nodes threads metric tag json log t0 thr val sec load cpu
	for ((r = 1; r <= REPEATS; r++)); do
		for ((i = 0; i < ${#JOB_DESC[@]}; i++)); do
			read -r app config policy nodes threads metric <<<"${JOB_DESC[i]}"
			tag=$app-$config-${policy//[\/:]/_}-$r
			json=$OUT/json/$tag.json
			log=$OUT/logs/$tag.log
			rm -f "$json"
			t0=$SECONDS
			load=$(cut -d' ' -f1 /proc/loadavg)
			printf 'apps.sh: %-7s %-11s %-15s run %d/%d ... ' "$app" "$config" "$policy" "$r" "$REPEATS" >&2
			if eval "${JOB_CMD[i]}" --json "$(printf '%q' "$json")" >"$log" 2>&1 && [[ -s $json ]]; then
				thr=$(jget "$json" throughput)
				val=$(jget "$json" "$metric")
				sec=$(jget "$json" seconds)
				cpu=$(jget "$json" train_cpu_seconds)
				printf '%.0f/s, %s %.4f (%ds, load %s)\n' "$thr" "$metric" "$val" $((SECONDS - t0)) "$load" >&2
				echo "$app,$config,$policy,$nodes,$threads,$r,$thr,$metric,$val,$sec,$load,${cpu:-nan}" >>"$RUNS"
			else
				printf 'FAILED (%ds), see %s:\n' $((SECONDS - t0)) "$log" >&2
				tail -n 5 "$log" | sed 's/^/    /' >&2
			fi
		done
	done
}

# mode_args APP MODE: the app options of a mode (see MODES above)
mode_args() {
	local app=$1 mode=${2%%/*} smp="" k s
	[[ $2 == */* ]] && smp=${2#*/}
	case $app in
	mf*) k=$MF_REPLICATE s= ;;
	kge) k=$KGE_REPLICATE s=${smp:-$KGE_SAMPLING} ;;
	w2v) k=$W2V_REPLICATE s=${smp:-$W2V_SAMPLING} ;;
	esac
	[[ $mode != both ]] && s=$smp # only both samples through psmem unless named
	[[ $app == mf* || $s == app ]] && s=
	case $mode in
	classic | localize) echo "--policy $mode${s:+ --sampling $s}" ;;
	replicate) echo "--policy classic --replicate $k${s:+ --sampling $s}" ;;
	both) echo "--policy localize --replicate $k${s:+ --sampling $s}" ;;
	*) return 1 ;;
	esac
}

# run_psmem APP LABEL METRIC -- app arguments...: queues every shape x mode
# (LABEL names the app in the CSV and the plot: mf-zipf is mf on other data)
run_psmem() {
	local app=$1 label=$2 metric=$3 shape n t mode margs
	shift 4
	for shape in $SHAPES; do
		n=${shape%x*} t=${shape#*x}
		if ((n * t > CORES)); then
			say "$label: shape ${n}x$t skipped: $((n * t)) workers > $CORES cores (no oversubscription)"
			continue
		fi
		for mode in $MODES; do
			if ! margs=$(mode_args "$app" "$mode"); then
				say "$label: unknown mode '$mode' (classic, localize, replicate, both[/SAMPLING])"
				continue
			fi
			# shellcheck disable=SC2086
			if ((n == 1)); then
				add_job "$label" "psmem-${n}n${t}t" "$mode" "$n" "$t" "$metric" -- \
					"$BUILD/apps/$app" "$@" $margs --threads "$t"
			else
				add_job "$label" "psmem-${n}n${t}t" "$mode" "$n" "$t" "$metric" -- \
					"$BUILD/bin/psrun" -n "$n" -t "$t" "$BUILD/apps/$app" "$@" $margs --threads "$t"
			fi
		done
	done
}

need_data() { # need_data APP PATH...
	local app=$1 p
	shift
	for p in "$@"; do
		if [[ ! -e $p ]]; then
			say "$app: skipped: $p not found (set DATA=...; see ../shared/data/README.md)"
			return 1
		fi
	done
}

# ---------------------------------------------------------------------- run
say "QUICK=$QUICK REPEATS=$REPEATS SHAPES='$SHAPES' APPS='$APPS' DATA=$DATA ($CORES cores)"
if [[ ! -x $BUILD/bin/psrun ]]; then
	say "$BUILD/bin/psrun is not built: run 'make' first"
	exit 1
fi
for app in $APPS; do
	if [[ ! -x $BUILD/apps/$app ]]; then
		say "$app: skipped: $BUILD/apps/$app is not built (make)"
		continue
	fi
	case $app in
	mf)
		need_data mf "$MF_TRAIN" "$MF_TEST" || continue
		# shellcheck disable=SC2086
		run_psmem mf mf rmse -- --train "$MF_TRAIN" --test "$MF_TEST" $MF_ARGS
		if [[ -x $BUILD/bench/hogwild_mf ]]; then
			for t in $RAW_THREADS; do
				if ((t > CORES)); then
					say "mf: hogwild ${t}t skipped: more threads than cores"
					continue
				fi
				# shellcheck disable=SC2086
				add_job mf "hogwild-${t}t" none 1 "$t" rmse -- \
					"$BUILD/bench/hogwild_mf" --train "$MF_TRAIN" --test "$MF_TEST" $MF_ARGS --threads "$t"
			done
		else
			say "mf: raw baseline skipped: $BUILD/bench/hogwild_mf is not built (make)"
		fi
		if [[ $MF_ZIPF == 1 && " $MODES " == *" replicate"* || $MF_ZIPF == 1 && " $MODES " == *" both"* ]]; then
			# hot items: the replication case (generated once per run, in TMP)
			# shellcheck disable=SC2086
			if "$BUILD/apps/mfgen" $MF_ZIPF_GEN --out "$TMP/zipf.train" --test-out "$TMP/zipf.test" \
				--test-frac 0.1 2>"$TMP/mfgen.err"; then
				say "mf-zipf: $(cat "$TMP/mfgen.err")"
				# shellcheck disable=SC2086
				run_psmem mf mf-zipf rmse -- --train "$TMP/zipf.train" --test "$TMP/zipf.test" $MF_ARGS
			else
				say "mf-zipf: skipped: mfgen failed: $(cat "$TMP/mfgen.err")"
			fi
		fi
		;;
	kge)
		need_data kge "$KGE_DATASET/train.txt" "$KGE_DATASET/valid.txt" "$KGE_DATASET/test.txt" || continue
		ds=$KGE_DATASET
		if [[ $QUICK == 1 ]]; then # a subset, in a temporary folder (never in the repo)
			ds=$TMP/kge-quick
			mkdir -p "$ds"
			head -n "$KGE_QUICK_TRAIN" "$KGE_DATASET/train.txt" >"$ds/train.txt"
			head -n 500 "$KGE_DATASET/valid.txt" >"$ds/valid.txt"
			head -n 500 "$KGE_DATASET/test.txt" >"$ds/test.txt"
		fi
		# shellcheck disable=SC2086
		run_psmem kge kge mrr -- --dataset "$ds" $KGE_ARGS
		;;
	w2v)
		need_data w2v "$W2V_TRAIN" "$W2V_ANALOGY" || continue
		# shellcheck disable=SC2086
		run_psmem w2v w2v analogy_accuracy -- --train "$W2V_TRAIN" --eval-analogy "$W2V_ANALOGY" $W2V_ARGS
		;;
	*)
		say "$app: unknown app (mf, kge, w2v)"
		;;
	esac
done

if [[ $PLOT_ONLY != 1 ]]; then
{
	echo "date: $(date -Is)"
	echo "commit: $(bench_commit ' (+ uncommitted changes in apps lib bin bench)')"
	echo "cores: $CORES; $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
	echo "settings: QUICK=$QUICK REPEATS=$REPEATS SHAPES='$SHAPES' RAW_THREADS='$RAW_THREADS' MODES='$MODES'"
	echo "replication: MF_REPLICATE=$MF_REPLICATE KGE_REPLICATE=$KGE_REPLICATE W2V_REPLICATE=$W2V_REPLICATE KGE_SAMPLING=$KGE_SAMPLING W2V_SAMPLING=$W2V_SAMPLING MF_ZIPF=$MF_ZIPF ($MF_ZIPF_GEN)"
	echo "args: MF_ARGS='$MF_ARGS' KGE_ARGS='$KGE_ARGS' W2V_ARGS='$W2V_ARGS' W2V_TRAIN=$W2V_TRAIN"
	echo "load before: $(bench_load)"
} >"$OUT/apps_env.txt"
run_jobs
echo "load after: $(bench_load)" >>"$OUT/apps_env.txt"
fi

# ------------------------------------------------------------------ medians
awk -F, "$BENCH_AWK_MEDIAN"'
NR == 1 { next }
{
	key = $1 "," $2 "," $3 "," $4 "," $5
	if (!(key in cnt)) { order[++nk] = key; mname[key] = $8 }
	n = ++cnt[key]
	val[key, n, 7] = $7; val[key, n, 9] = $9; val[key, n, 10] = $10; val[key, n, 12] = NF >= 12 ? $12 : "nan"
}
END {
	print "app,config,mode,nodes,threads,throughput_median,metric_name,metric_median,seconds_median,cpu_median"
	for (k = 1; k <= nk; k++) {
		key = order[k]
		printf "%s,%.0f,%s,%.4f,%.2f,%.2f\n", key, median(key, 7), mname[key], median(key, 9), median(key, 10),
			median(key, 12)
	}
}' "$RUNS" >"$CSV"
say "wrote $CSV ($(($(wc -l <"$CSV") - 1)) configurations) and $RUNS"
column -s, -t "$CSV" >&2 2>/dev/null || cat "$CSV" >&2

# --------------------------------------------------------------------- plot
PNG=$OUT/apps_throughput.png
if ! command -v gnuplot >/dev/null 2>&1; then
	say "gnuplot not found: no PNG (install it with 'apt-get install gnuplot-nox'); the CSV is complete"
	exit 0
fi
apps_in=$(awk -F, 'NR > 1 && !seen[$1]++ { printf "%s ", $1 }' "$CSV")
if [[ -z $apps_in ]]; then
	say "no successful run: no plot"
	exit 1
fi
napps=$(wc -w <<<"$apps_in")
{
	echo "set terminal pngcairo size $((napps > 1 ? 520 * napps : 640)),560 font 'sans,10'"
	echo "set output '$PNG'"
	echo "set multiplot layout 1,$napps title 'psmem apps: training throughput, median of $REPEATS$([[ $QUICK == 1 ]] && echo ' (QUICK smoke run)')'  font 'sans,11'"
	echo "set style fill solid 0.85 border -1"
	echo "set boxwidth 0.7"
	echo "set xtics rotate by -40 left nomirror font 'sans,9'"
	echo "set grid ytics"
	echo "set yrange [0:*]"
	echo "set offsets 0.6, 0.6, graph 0.08, 0"
	echo "set key off"
	echo "set format y '%.1s%c'"
	for app in $apps_in; do
		dat=$OUT/plot-$app.dat
		# x label, throughput, colour (1 classic, 2 localize, 3 raw,
		# 4 replicate, 5 both), metric label
		awk -F, -v app="$app" 'NR > 1 && $1 == app {
			m = $3; sub(/\/.*/, "", m)
			c = m == "classic" ? 1 : m == "localize" ? 2 : m == "replicate" ? 4 : m == "both" ? 5 : 3
			lab = $3 == "none" ? $2 : $3 " " substr($2, 7)
			ms = $7 == "analogy_accuracy" ? sprintf($8 < 10 ? "%.2f%%" : "%.1f%%", $8) : sprintf("%.3f", $8)
			printf "\"%s\" %s %d \"%s\"\n", lab, $6, c, ms
		}' "$CSV" >"$dat"
		unit=$(case $app in mf*) echo ratings/s ;; kge) echo triples/s ;; w2v) echo words/s ;; *) echo items/s ;; esac)
		raw=$(awk -F, -v app="$app" 'NR > 1 && $1 == app && $2 == "hogwild-1t" { print $6 }' "$CSV")
		mname=$(case $app in mf*) echo 'test RMSE' ;; kge) echo 'filtered test MRR' ;; w2v) echo 'analogy accuracy' ;; *) echo metric ;; esac)
		echo "set title '$app: $unit (labels: $mname)'"
		echo "set ylabel '$unit'"
		echo "unset arrow"
		if [[ -n $raw ]]; then
			echo "set arrow from graph 0, first $raw to graph 1, first $raw nohead dt 2 lw 1.5 lc rgb '#444444'"
			echo "set label 99 'raw HOGWILD! 1 thread' at graph 0.02, first $raw offset 0,0.6 font 'sans,8' tc rgb '#444444'"
		else
			echo "unset label 99"
		fi
		echo "plot '$dat' using 0:2:(\$3 == 1 ? 0x4477aa : \$3 == 2 ? 0xee6677 : \$3 == 4 ? 0x228833 : \$3 == 5 ? 0xaa3377 : 0x999999):xtic(1) with boxes lc rgb variable, \\"
		echo "     '' using 0:2:4 with labels offset 0,0.7 font 'sans,8'"
	done
	echo "unset multiplot"
} >"$TMP/plot.gp"
cp "$TMP/plot.gp" "$OUT/apps_throughput.gp"
if gnuplot "$TMP/plot.gp" 2>"$TMP/gp.err"; then
	say "wrote $PNG (gnuplot script: $OUT/apps_throughput.gp)"
else
	say "gnuplot failed: $(cat "$TMP/gp.err")"
fi
