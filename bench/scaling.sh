#!/usr/bin/env bash
# bench/scaling.sh - throughput against workers (nodes x threads), classic
# vs localize, for the micro-benchmark and the three apps; CSV and a PNG per
# experiment; the NUMA cost model applied to each multi-node app run.
#
#   bench/scaling.sh                    default run (about 3 min on 2 cores)
#   EXPERIMENTS="mf w2v" bench/scaling.sh
#   REPEATS=1 bench/scaling.sh          one run per point (default 3, medians)
#   PLOT_ONLY=1 bench/scaling.sh        recompute the CSVs, model and plots from
#                                       bench/out/scaling_runs.csv
#
# Shapes.  WORKERS are 1, 2, 4, ... up to the machine's cores, and the
# core count itself; NODES are 1 (one process) and S, the number of sockets
# (NUMA nodes with CPUs and memory; 2 on a one-socket machine, so that the
# multi-process path is measured).  Each NODES value n runs every worker
# count W that it divides, with W/n threads per node.  Nothing is
# oversubscribed.  So this 2-core, 1-socket machine runs 1x1, 1x2 and 2x1;
# a 2-socket host with 64 cores runs 1x1 .. 1x64 and 2x1 .. 2x32.
#
# Experiments (EXPERIMENTS, default "micro mf kge w2v"):
#   micro  build/bench/micro, pull and push of value_len 100 over a table of
#          MICRO_BYTES; W processes of 1 thread.  "localize" = keys owned by
#          the calling node ('own' rows), "classic" = keys owned by another
#          node ('other' rows); 1 process has only own keys.  Raw baseline:
#          the same gather / add on a plain shared array by 1 process.
#   mf     MovieLens-100K, MF_EPOCHS epochs; raw baseline: hogwild_mf with
#          1 thread (dashed line) and with W threads (dotted, "raw").
#   kge    FB15k-237, first KGE_TRIPLES training triples, dim 64, 1 epoch.
#   w2v    wiki2019-text8style.10M, 1 epoch.
#   kge and w2v have no raw implementation in this repository: their
#   reference line is psmem at 1 node x 1 thread (classic), and says so.
#
# Multi-node app runs are launched as `psrun -v` and watched by
# `psstat --final --json`, which prints every node's final counters:
# local_keys / remote_keys (own arena / another node's arena) and
# relocations go into the CSV and into the NUMA model (bench/RESULTS.md):
# with one node per socket, remote keys are remote-socket accesses.
#
# Output in OUT (bench/out/, not tracked):
#   scaling_EXP.csv  experiment,series,policy,nodes,threads,workers,
#                    throughput,unit,seconds,local_keys,remote_keys,
#                    relocations (throughput and seconds: the median run of
#                    REPEATS; counts: means over the runs that have them,
#                    which vary from run to run under localize; empty when
#                    not measured)
#   scaling_EXP.png  throughput against workers, one line per (policy,
#                    nodes), the raw single-process baseline dashed
#   scaling_model.csv  the NUMA model per multi-node app run (see RESULTS.md)
#   scaling_runs.csv   every run (the same columns, no header)
#   scaling_env.txt, scaling_logs/  machine, settings, every run's output
set -uo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

BUILD=${BUILD:-build}
DATA=${DATA:-$ROOT/../shared/data}
OUT=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT/scaling_logs" && OUT=$(cd "$OUT" && pwd) || exit 1
EXPERIMENTS=${EXPERIMENTS:-micro mf kge w2v}
REPEATS=${REPEATS:-3}
PLOT_ONLY=${PLOT_ONLY:-0}
MICRO_BYTES=${MICRO_BYTES:-256M}
MF_EPOCHS=${MF_EPOCHS:-20}
KGE_TRIPLES=${KGE_TRIPLES:-20000}
# NUMA model constants: published figures for 2-socket Xeons (RESULTS.md)
LAT_LOCAL_NS=${LAT_LOCAL_NS:-80}
LAT_REMOTE_NS=${LAT_REMOTE_NS:-130}

say() { printf 'scaling.sh: %s\n' "$*" >&2; }

CORES=$(nproc 2>/dev/null || echo 1)
# sockets: NUMA nodes with CPUs and memory (the library's rule)
sockets() {
	local cpu mem
	cpu=$(cat /sys/devices/system/node/has_cpu 2>/dev/null) || { echo 1; return; }
	mem=$(cat /sys/devices/system/node/has_memory 2>/dev/null) || { echo 1; return; }
	expand() { tr ',' '\n' <<<"$1" | awk -F- '{ for (i = $1; i <= ($2 == "" ? $1 : $2); i++) print i }'; }
	comm -12 <(expand "$cpu" | sort) <(expand "$mem" | sort) | wc -l
}
S=$(sockets)
MULTI=$((S > 1 ? S : 2))
NODES=${NODES:-1 $MULTI}
if [[ -z ${WORKERS:-} ]]; then
	WORKERS=""
	for ((w = 1; w < CORES; w *= 2)); do WORKERS+="$w "; done
	WORKERS+=$CORES
fi
# shapes "n t" for every n in NODES, W in WORKERS with n | W
SHAPES=()
for n in $NODES; do
	for w in $WORKERS; do
		((w >= n && w % n == 0 && w <= CORES)) && SHAPES+=("$n $((w / n))")
	done
done

TMP=$(mktemp -d)
JOBPID=
STATPID=
cleanup() {
	[[ -n $JOBPID ]] && kill -TERM "$JOBPID" 2>/dev/null && wait "$JOBPID" 2>/dev/null
	[[ -n $STATPID ]] && kill -TERM "$STATPID" 2>/dev/null && wait "$STATPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# value of a top-level key in a flat one-line JSON
jget() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\).*/\1/p" "$1" | head -n 1; }
# sum of a per-node counter in psstat --json output
jsum() { grep -o "\"$2\": [0-9]*" "$1" 2>/dev/null | awk '{ s += $2 } END { if (NR) print s }'; }

# every run: experiment,series,policy,nodes,threads,workers,throughput,
# unit,seconds,local,remote,reloc
RUNS=$OUT/scaling_runs.csv

# ------------------------------------------------------------------ apps
# run_app EXP POLICY N T -- cmd...: one run; appends a line to $RUNS
run_app() {
	local exp=$1 policy=$2 n=$3 t=$4 series=$5 unit=$6
	shift 7
	local tag="$exp-$series-$policy-${n}x$t-r$REP" json=$TMP/app.json stats=$TMP/stats.json
	local log=$OUT/scaling_logs/$tag.log job= line rc
	rm -f "$json" "$stats"
	printf 'scaling.sh: %-5s %-8s %-8s %dx%d run %d/%d ... ' "$exp" "$series" "$policy" "$n" "$t" "$REP" "$REPEATS" >&2
	if ((n == 1)); then
		"$@" --json "$json" >"$log" 2>&1
		rc=$?
	else
		# psrun -v names the job on its first stderr line: read it from a
		# FIFO as soon as it is written, so that psstat attaches before
		# even a short job ends; the rest of stderr is copied to the log
		rm -f "$TMP/fifo"
		mkfifo "$TMP/fifo"
		: >"$log" # everyone appends: O_APPEND keeps the writers' lines whole
		"$BUILD/bin/psrun" -v -n "$n" -t "$t" "$@" --json "$json" >>"$log" 2>"$TMP/fifo" &
		JOBPID=$!
		exec 3<"$TMP/fifo"
		while IFS= read -r -t 30 -u 3 line; do # (stale-segment notes may come first)
			echo "$line" >>"$log"
			[[ $line =~ ^psrun:\ job\ (psmem-[0-9a-f]+): ]] && job=${BASH_REMATCH[1]} && break
		done
		if [[ -n $job ]]; then
			"$BUILD/bin/psstat" --final --json --interval 0.1 "$job" >"$stats" 2>>"$log" &
			STATPID=$!
		fi
		cat <&3 >>"$log"
		exec 3<&-
		wait "$JOBPID"
		rc=$?
		JOBPID=
		[[ -n $STATPID ]] && wait "$STATPID"
		STATPID=
	fi
	if [[ $rc -ne 0 || ! -s $json ]]; then
		printf 'FAILED (status %d), see %s\n' "$rc" "$log" >&2
		return
	fi
	local thr sec l r m
	thr=$(jget "$json" throughput)
	sec=$(jget "$json" seconds)
	l=$(jsum "$stats" local_keys) r=$(jsum "$stats" remote_keys) m=$(jsum "$stats" relocations)
	printf '%.0f %s%s\n' "$thr" "$unit" "$([[ -n $l ]] && awk -v l="$l" -v r="$r" 'BEGIN { printf ", %.1f%% local keys", 100 * l / (l + r + (l + r == 0)) }')" >&2
	[[ $n -gt 1 && -z $l ]] && say "  (psstat saw no counters: the run ended before it attached)"
	echo "$exp,$series,$policy,$n,$t,$((n * t)),$thr,$unit,$sec,$l,$r,$m" >>"$RUNS"
}

need() { # need EXP PATH...
	local exp=$1 p
	shift
	for p in "$@"; do
		[[ -e $p ]] || { say "$exp: skipped: $p not found (DATA=...)"; return 1; }
	done
}

app_shapes() { # app_shapes EXP UNIT -- app argv (without --policy/--threads)
	local exp=$1 unit=$2 s n t policy
	shift 3
	for s in "${SHAPES[@]}"; do
		read -r n t <<<"$s"
		for policy in classic localize; do
			run_app "$exp" "$policy" "$n" "$t" psmem "$unit" -- "$@" --policy "$policy" --threads "$t"
		done
	done
}

exp_mf() {
	local train=$DATA/movielens/ml-100k/u1.base test=$DATA/movielens/ml-100k/u1.test w
	need mf "$train" "$test" || return
	app_shapes mf ratings/s -- "$BUILD/apps/mf" --train "$train" --test "$test" --epochs "$MF_EPOCHS"
	for w in $WORKERS; do
		run_app mf none 1 "$w" raw ratings/s -- "$BUILD/bench/hogwild_mf" --train "$train" --test "$test" \
			--epochs "$MF_EPOCHS" --threads "$w"
	done
}

exp_kge() {
	local src=$DATA/kg/FB15k-237 ds=$TMP/kge
	need kge "$src/train.txt" "$src/valid.txt" "$src/test.txt" || return
	mkdir -p "$ds"
	head -n "$KGE_TRIPLES" "$src/train.txt" >"$ds/train.txt"
	head -n 300 "$src/valid.txt" >"$ds/valid.txt"
	head -n 300 "$src/test.txt" >"$ds/test.txt"
	app_shapes kge triples/s -- "$BUILD/apps/kge" --dataset "$ds" --dim 64 --epochs 1
}

exp_w2v() {
	local train=$DATA/text/wiki2019-text8style.10M
	need w2v "$train" || return
	app_shapes w2v words/s -- "$BUILD/apps/w2v" --train "$train" --epochs 1
}

# ----------------------------------------------------------------- micro
# One micro run per process count W > 1 (W = 1 comes with the first); the
# rows: op,value_len,nodes,threads,placement,...,agg_mkeys_per_s(12),
# baseline_agg_mkeys_per_s(13).
exp_micro() {
	local w first=1 csv multi=0
	for w in $WORKERS; do ((w > 1)) && multi=1; done
	for w in $WORKERS; do
		((w == 1 && multi)) && continue
		csv=$OUT/scaling_logs/micro-$w-r$REP.csv
		printf 'scaling.sh: micro %d process(es) run %d/%d ... ' "$w" "$REP" "$REPEATS" >&2
		if ! "$BUILD/bench/micro" --max-bytes "$MICRO_BYTES" --value-lens 100 --ops pull,push --reps 5 \
			--nodes "$((w > 1 ? w : 0))" >"$csv" 2>"$csv.err"; then
			printf 'FAILED, see %s.err\n' "$csv" >&2
			continue
		fi
		echo ok >&2
		awk -F, -v first=$first '
			/^#/ || $1 == "op" { next }
			$3 == 1 && !first { next }
			{
				pol = $5 == "own" ? "localize" : "classic"
				printf "micro_%s,psmem,%s,%d,1,%d,%s,Mkeys/s,,,,\n", $1, pol, $3, $3, $12
				if ($5 == "own")
					printf "micro_%s,raw,none,%d,1,%d,%s,Mkeys/s,,,,\n", $1, $3, $3, $13
			}' "$csv" >>"$RUNS"
		first=0
	done
}

# ------------------------------------------------------------------- run
if [[ $PLOT_ONLY == 1 ]]; then # the titles tell the repeats of the data
	REPEATS=$(sed -n 's/.* REPEATS=\([0-9]*\).*/\1/p' "$OUT/scaling_env.txt" 2>/dev/null | head -n 1)
	REPEATS=${REPEATS:-1}
	[[ -s $RUNS ]] || { say "PLOT_ONLY=1 but no $RUNS"; exit 1; }
else
	[[ -x $BUILD/bin/psrun && -x $BUILD/bin/psstat ]] || { say "build first: make"; exit 1; }
	: >"$RUNS"
	say "$CORES cores, $S socket(s); NODES='$NODES' WORKERS='$WORKERS' REPEATS=$REPEATS; shapes: $(printf '%s, ' "${SHAPES[@]/ /x}")"
	{
		echo "date: $(date -Is)"
		echo "commit: $(git rev-parse --short HEAD 2>/dev/null)"
		echo "cores: $CORES; sockets: $S; $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
		echo "settings: EXPERIMENTS='$EXPERIMENTS' NODES='$NODES' WORKERS='$WORKERS' REPEATS=$REPEATS MICRO_BYTES=$MICRO_BYTES MF_EPOCHS=$MF_EPOCHS KGE_TRIPLES=$KGE_TRIPLES"
		echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$OUT/scaling_env.txt"
	for ((REP = 1; REP <= REPEATS; REP++)); do
		for e in $EXPERIMENTS; do
			case $e in
			micro | mf | kge | w2v) "exp_$e" ;;
			*) say "unknown experiment '$e' (micro mf kge w2v)" ;;
			esac
		done
	done
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/scaling_env.txt"
fi

# medians per point (see Output above)
rm -f "$OUT"/scaling_{micro_pull,micro_push,mf,kge,w2v}.csv
for e in $(cut -d, -f1 "$RUNS" | sort -u); do
	echo "experiment,series,policy,nodes,threads,workers,throughput,unit,seconds,local_keys,remote_keys,relocations" \
		>"$OUT/scaling_$e.csv"
	awk -F, -v e="$e" '$1 == e' "$RUNS" | sort -t, -k2,2 -k3,3 -k4,4n -k5,5n -k7,7g | awk -F, -v OFS=, '
		{
			key = $2 "," $3 "," $4 "," $5; n[key]++; line[key, n[key]] = $0
			if (!(key in seen)) { seen[key] = 1; order[++k] = key }
			if ($10 != "") { c[key]++; l[key] += $10; r[key] += $11; m[key] += $12 }
		}
		END {
			for (i = 1; i <= k; i++) {
				key = order[i]
				split(line[key, int((n[key] + 1) / 2)], f, ",")
				if (c[key]) { f[10] = sprintf("%.0f", l[key] / c[key]); f[11] = sprintf("%.0f", r[key] / c[key]); f[12] = sprintf("%.0f", m[key] / c[key]) }
				print f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]
			}
		}' >>"$OUT/scaling_$e.csv"
done

# ------------------------------------------------------------ NUMA model
# Per multi-node app run with counts: L local, R remote keys, M relocations,
# A = L + R accesses.  On a host with one node per socket (the n = 2 runs
# on a 2-socket host), a remote key is a remote-socket access.
#   latency-bound, ns per access: placed (L*lat_l + R*lat_r) / A; unplaced,
#     a NUMA-oblivious layout (pages spread evenly over the S = n sockets):
#     (1/S)*lat_l + ((S-1)/S)*lat_r.  Moves (a remote read and a local write
#     per relocation) run on the service thread, off the workers' critical
#     path: shown apart, as ns per access, M*(lat_r + lat_l) / A.
#   bandwidth-bound, traffic time relative to all-local: a remote access
#     moves its bytes at f = 50% or 70% of local speed: placed
#     (L + R/f + M*(1 + 1/f)) / A (moves included: they share the links);
#     unplaced 1/S + ((S-1)/S)/f.
MODEL=$OUT/scaling_model.csv
{
	echo "app,policy,nodes,threads,accesses,local_share,relocations,ns_per_access_placed,ns_per_access_unplaced,move_ns_per_access,stall_s_placed,stall_s_unplaced,bw_placed_f50,bw_placed_f70,bw_unplaced_f50,bw_unplaced_f70,measured_seconds"
	cat "$OUT"/scaling_{mf,kge,w2v}.csv 2>/dev/null | awk -F, -v ll="$LAT_LOCAL_NS" -v lr="$LAT_REMOTE_NS" '
		$1 == "experiment" || $2 != "psmem" || $4 < 2 || $10 == "" { next }
		{
			L = $10; R = $11; M = $12 + 0; A = L + R; n = $4
			if (A == 0) next
			fr = (n - 1) / n
			placed = (L * ll + R * lr) / A
			unpl = (1 - fr) * ll + fr * lr
			move = M * (ll + lr) / A
			printf "%s,%s,%d,%d,%.0f,%.4f,%.0f,%.1f,%.1f,%.1f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.2f\n", $1, $3, $4, $5, A,
				L / A, M, placed, unpl, move, placed * A / 1e9, unpl * A / 1e9,
				(L + R / 0.5 + M * (1 + 1 / 0.5)) / A, (L + R / 0.7 + M * (1 + 1 / 0.7)) / A,
				(1 - fr) + fr / 0.5, (1 - fr) + fr / 0.7, $9
		}'
} >"$MODEL"
if (($(wc -l <"$MODEL") > 1)); then
	say "NUMA model ($LAT_LOCAL_NS / $LAT_REMOTE_NS ns local / remote; see bench/RESULTS.md): $MODEL"
	column -s, -t "$MODEL" >&2 2>/dev/null || cat "$MODEL" >&2
fi

# ------------------------------------------------------------------ plots
if ! command -v gnuplot >/dev/null 2>&1; then
	say "gnuplot not found: no PNG (apt-get install gnuplot-nox); the CSVs are complete"
	exit 0
fi
plot() { # plot EXP
	local e=$1 csv=$OUT/scaling_$1.csv png=$OUT/scaling_$1.png unit ref reflabel s dat i=0 plots="" title xmax micro=0
	# micro: a series is a placement over process counts (nodes = workers)
	[[ $e == micro_* ]] && micro=1
	unit=$(awk -F, 'NR == 2 { print $8 }' "$csv")
	ref=$(awk -F, '$2 == "raw" && $6 == 1 { print $7; exit }' "$csv")
	reflabel="raw single-process baseline, 1 worker"
	if [[ -z $ref ]]; then
		ref=$(awk -F, '$2 == "psmem" && $3 == "classic" && $4 == 1 && $6 == 1 { print $7; exit }' "$csv")
		reflabel="psmem 1 node x 1 thread (no raw baseline for $e)"
	fi
	while IFS= read -r s; do
		IFS=, read -r kind policy n <<<"$s"
		dat=$TMP/$e-$i.dat
		awk -F, -v k="$s" -v m="$micro" 'NR > 1 && $2 "," $3 "," ($2 == "raw" || m ? "" : $4) == k { print $6, $7 }' "$csv" |
			sort -n >"$dat"
		if [[ $kind == raw ]]; then
			title=$([[ $e == micro_* ]] && echo "raw shared array, W processes" || echo "raw, W threads in one process")
			plots+="'$dat' using 1:2 with linespoints dt 3 lw 1.5 pt 6 lc rgb '#666666' title \"$title\", "
		else
			if [[ $e == micro_* ]]; then
				title=$([[ $policy == localize ]] && echo "own keys (localize)" || echo "another node's keys (classic)")
			else
				title="$policy, $n node$([[ $n != 1 ]] && echo s)"
			fi
			plots+="'$dat' using 1:2 with linespoints lw 2 pt $((i + 5)) title \"$title\", "
		fi
		i=$((i + 1))
	done < <(awk -F, -v m="$micro" 'NR > 1 { k = $2 "," $3 "," ($2 == "raw" || m ? "" : $4) } NR > 1 && !seen[k]++ { print k }' "$csv")
	[[ -n $ref ]] && plots+="$ref with lines dt 2 lw 1.5 lc rgb '#222222' title \"$reflabel\", "
	xmax=$(awk -F, 'NR > 1 && $6 > m { m = $6 } END { print m + 0 }' "$csv")
	{
		echo "set terminal pngcairo size 720,480 font 'sans,10' noenhanced"
		echo "set output '$png'"
		echo "set title \"$e: throughput against workers, $CORES cores, $S socket(s)$( ((REPEATS > 1)) && echo ", median of $REPEATS")\""
		echo "set xlabel 'workers (nodes x threads)'"
		echo "set ylabel '$unit'"
		echo "set xrange [0.5:$xmax + 0.5]"
		echo "set xtics 1"
		echo "set yrange [0:*]"
		echo "set grid"
		echo "set key top left font 'sans,9'"
		echo "set format y '%.2s%c'"
		echo "plot ${plots%, }"
	} >"$TMP/$e.gp"
	if gnuplot "$TMP/$e.gp" 2>"$TMP/gp.err"; then
		say "wrote $png"
	else
		say "gnuplot failed for $e: $(cat "$TMP/gp.err")"
	fi
}
for csv in "$OUT"/scaling_*.csv; do
	e=$(basename "$csv" .csv)
	e=${e#scaling_}
	[[ $e == model || $e == runs ]] && continue
	plot "$e"
done
