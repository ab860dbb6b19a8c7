#!/usr/bin/env bash
# bench/hosts.sh - 1 host x 2 nodes against 2 hosts x 1 node: the apps (mf,
# kge, w2v) and the bridge's remote pull, on loopback and (with --netns)
# across an emulated network (bench/netns.sh).  Issue 13's table.
#
#   bench/hosts.sh [-n RUNS] [--netns] [--delay D] [--rate R] [--no-bridge]
#
#   -n RUNS      runs per configuration, the median is reported [3]; the
#                layouts alternate within each run, so a slow spell of the
#                (shared) machine hits every layout alike
#   --netns      also run each 2-host job across two network namespaces
#                joined by a veth pair (bench/netns.sh; root; shaped with
#                netem delay D rate R, or tbf rate R when the kernel lacks
#                netem, which netns.sh then says)
#   --delay D, --rate R   the emulated link [50us, 10gbit]
#   --no-bridge  skip build/bench/bridge
#
# Layouts: 1host-2nodes   psrun -n 2 APP ...
#          2hosts-lo      two psruns of one node each on 127.0.0.1 (--hosts 2,
#                         a port chosen by the kernel, a fresh job token)
#          2hosts-netns   the same across the emulated network (--netns)
#
# Environment (defaults in brackets):
#   APPS     apps to run ["mf kge w2v"]; one not built, or whose data is
#            absent, is skipped with a message
#   DATA     datasets [/work/shared/data, else ../shared/data from the repo]
#   BUILD    build folder [build]     OUT  results [bench/out]
#   TIMEOUT  seconds one run may take; a run past it counts as failed [1800]
#   QUICK    1: smoke run (mf 2 epochs, kge on a 20000-triple subset, w2v
#            1 epoch on wiki2019-text8style.10M) [0]
#   MF_ARGS  [--epochs 20 --policy localize], on MovieLens-100K u1.base/u1.test
#   KGE_ARGS [--epochs 1 --policy localize], on FB15k-237
#   W2V_ARGS [--policy localize] (w2v's defaults otherwise, as bench/apps.sh),
#            on W2V_TRAIN [wiki2019-text8style.gz] with questions-words.txt
#
# Output: a CSV on stdout (and in OUT/hosts.csv; every run in
# OUT/hosts_runs.csv, each run's JSON and log under OUT/hosts/):
#   app,layout,runs,train_seconds,metric_name,metric,ratio_vs_1host,metric_vs_1host
# train_seconds: the JSON's train_seconds (mf) or seconds (kge, w2v: both
# count training only) of host 0's node 0; metric: rmse, mrr or
# analogy_accuracy; ratio_vs_1host: train_seconds over 1host-2nodes';
# metric_vs_1host: the difference of the metrics.  Then the bridge's CSV:
#   bench,layout,runs,pull_100x4096_mkeys_per_s,pull_100x1_p50_us,pull_1x1_p50_us
# (build/bench/bridge --seconds 0.1, host 0 pulling keys of host 1: batches
# of 4096 keys x 100 floats, and one key of 100 floats and of 1 float).
# Medians are taken column by column over the successful runs.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
BUILD=${BUILD:-build}
export BUILD
if [[ -z ${DATA:-} ]]; then
	DATA=/work/shared/data
	[[ -d $DATA ]] || DATA=$ROOT/../shared/data
fi
OUT=${OUT:-$ROOT/bench/out}
APPS=${APPS:-mf kge w2v}
TIMEOUT=${TIMEOUT:-1800}
QUICK=${QUICK:-0}
runs=3
netns=0
bridge=1
delay=50us
rate=10gbit

say() { printf 'hosts.sh: %s\n' "$*" >&2; }
while (($#)); do
	case $1 in
	-n) runs=${2:?}; shift 2 ;;
	--netns) netns=1; shift ;;
	--delay) delay=${2:?}; shift 2 ;;
	--rate) rate=${2:?}; shift 2 ;;
	--no-bridge) bridge=0; shift ;;
	-h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
	*) say "unknown argument '$1' (--help)"; exit 2 ;;
	esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { say "-n: '$runs' is not a positive count"; exit 2; }
[[ -x $BUILD/bin/psrun ]] || { say "$BUILD/bin/psrun is not built (make)"; exit 1; }
if ((netns)) && [[ $(id -u) != 0 ]]; then
	say "--netns needs root (ip netns add): the 2hosts-netns layout is skipped"
	netns=0
fi

MF_TRAIN=$DATA/movielens/ml-100k/u1.base
MF_TEST=$DATA/movielens/ml-100k/u1.test
KGE_DATASET=$DATA/kg/FB15k-237
W2V_TRAIN=${W2V_TRAIN:-$DATA/text/wiki2019-text8style.gz}
W2V_ANALOGY=$DATA/text/questions-words.txt
MF_ARGS=${MF_ARGS:---epochs 20 --policy localize}
KGE_ARGS=${KGE_ARGS:---epochs 1 --policy localize}
W2V_ARGS=${W2V_ARGS:---policy localize}
mkdir -p "$OUT/hosts" || exit 1
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d /tmp/psmem-hosts.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [[ $QUICK == 1 ]]; then
	MF_ARGS="$MF_ARGS --epochs 2"
	W2V_TRAIN=$DATA/text/wiki2019-text8style.10M
	W2V_ARGS="$W2V_ARGS --epochs 1"
	if [[ -f $KGE_DATASET/train.txt ]]; then
		mkdir -p "$TMP/kge"
		head -n 20000 "$KGE_DATASET/train.txt" >"$TMP/kge/train.txt"
		head -n 500 "$KGE_DATASET/valid.txt" >"$TMP/kge/valid.txt"
		head -n 500 "$KGE_DATASET/test.txt" >"$TMP/kge/test.txt"
		KGE_DATASET=$TMP/kge
	fi
fi
"$BUILD/bin/psrun" --make-token "$TMP/token" >/dev/null || exit 1

layouts=(1host-2nodes 2hosts-lo)
((netns)) && layouts+=(2hosts-netns)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_layout LAYOUT LOG -- PROGRAM ARGS...: runs the job in LAYOUT; the
# literal {host} in ARGS becomes the host rank (1host-2nodes: 0).  Host 0's
# stdout and everything's stderr go to LOG (host 1's stdout to LOG.host1).
run_layout() {
	local layout=$1 log=$2 rc=0 rc1=0 port p0 p1 a r
	shift 3
	case $layout in
	1host-2nodes)
		local args=()
		for a in "$@"; do args+=("${a//\{host\}/0}"); done
		timeout -k 10 "$TIMEOUT" "$BUILD/bin/psrun" -n 2 "${args[@]}" >"$log" 2>&1 || rc=$?
		;;
	2hosts-lo)
		port=$(free_port)
		for r in 0 1; do
			local args=()
			for a in "$@"; do args+=("${a//\{host\}/$r}"); done
			local cmd=(timeout -k 10 "$TIMEOUT" "$BUILD/bin/psrun" -n 1 --hosts 2 --host-rank "$r"
				--coordinator "127.0.0.1:$port" --token-file "$TMP/token" "${args[@]}")
			if ((r == 0)); then
				"${cmd[@]}" >"$log" 2>&1 &
				p0=$!
			else
				"${cmd[@]}" >"$log.host1" 2>&1 &
				p1=$!
			fi
		done
		wait "$p0" || rc=$?
		wait "$p1" || rc1=$?
		((rc)) || rc=$rc1
		;;
	2hosts-netns)
		timeout -k 10 "$TIMEOUT" bash "$ROOT/bench/netns.sh" --delay "$delay" --rate "$rate" \
			--logs "$log.d" -- "$@" 2>"$log.netns" || rc=$?
		cat "$log.d/host0.out" "$log.d/host0.err" "$log.netns" >"$log" 2>/dev/null
		grep -h 'NO DELAY\|shaped by\|unshaped' "$log.netns" 2>/dev/null | head -n 1 >"$TMP/netns-line"
		;;
	esac
	return $rc
}

# value of a top-level key in the flat one-line JSON the apps write
jget() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^\",}]*\).*/\1/p" "$1" | head -n 1; }

RUNS_CSV=$OUT/hosts_runs.csv
echo "app,layout,run,train_seconds,metric_name,metric" >"$RUNS_CSV"
BRIDGE_RUNS=$OUT/hosts_bridge_runs.csv
echo "bench,layout,run,pull_100x4096_mkeys_per_s,pull_100x1_p50_us,pull_1x1_p50_us" >"$BRIDGE_RUNS"

# the apps this run can do: "app metric command..." per line
jobs=()
for app in $APPS; do
	if [[ ! -x $BUILD/apps/$app ]]; then
		say "$app: skipped: $BUILD/apps/$app is not built (make)"
		continue
	fi
	case $app in
	mf)
		if [[ ! -f $MF_TRAIN || ! -f $MF_TEST ]]; then
			say "mf: skipped: $MF_TRAIN or $MF_TEST not found (DATA=...; see /work/shared/data/README.md)"
			continue
		fi
		jobs+=("mf rmse $BUILD/apps/mf --train $MF_TRAIN --test $MF_TEST $MF_ARGS")
		;;
	kge)
		if [[ ! -f $KGE_DATASET/train.txt || ! -f $KGE_DATASET/test.txt ]]; then
			say "kge: skipped: $KGE_DATASET/{train,valid,test}.txt not found (DATA=...)"
			continue
		fi
		jobs+=("kge mrr $BUILD/apps/kge --dataset $KGE_DATASET $KGE_ARGS")
		;;
	w2v)
		if [[ ! -f $W2V_TRAIN || ! -f $W2V_ANALOGY ]]; then
			say "w2v: skipped: $W2V_TRAIN or $W2V_ANALOGY not found (DATA=...)"
			continue
		fi
		jobs+=("w2v analogy_accuracy $BUILD/apps/w2v --train $W2V_TRAIN --eval-analogy $W2V_ANALOGY $W2V_ARGS")
		;;
	*) say "$app: unknown app (mf, kge, w2v)" ;;
	esac
done
if ((bridge)) && [[ ! -x $BUILD/bench/bridge ]]; then
	say "bridge: skipped: $BUILD/bench/bridge is not built (make)"
	bridge=0
fi

{
	echo "date: $(date -u '+%F %T UTC')"
	echo "commit: $(bench_commit ' (+ uncommitted changes)')"
	echo "cpu: $(nproc) x $(bench_cpu_model)"
	echo "runs: $runs; layouts: ${layouts[*]}; QUICK=$QUICK; netem/tbf: delay $delay rate $rate"
	echo "MF_ARGS='$MF_ARGS' KGE_ARGS='$KGE_ARGS' W2V_ARGS='$W2V_ARGS' W2V_TRAIN=$W2V_TRAIN"
	echo "load before: $(bench_load)"
} >"$OUT/hosts_env.txt"
sed 's/^/# /' "$OUT/hosts_env.txt" >&2

for ((run = 1; run <= runs; run++)); do
	for job in "${jobs[@]}"; do
		read -r app metric cmd <<<"$job"
		for layout in "${layouts[@]}"; do
			tag=$app-$layout-$run
			json=$OUT/hosts/$tag.json
			log=$OUT/hosts/$tag.log
			rm -rf "$json" "$OUT/hosts/$tag".json.* "$log" "$log".*
			t0=$SECONDS
			printf 'hosts.sh: %-4s %-13s run %d/%d ... ' "$app" "$layout" "$run" "$runs" >&2
			# shellcheck disable=SC2086
			if run_layout "$layout" "$log" -- $cmd --json "$json.{host}" && [[ -s $json.0 ]]; then
				sec=$(jget "$json.0" train_seconds)
				[[ -n $sec ]] || sec=$(jget "$json.0" seconds)
				val=$(jget "$json.0" "$metric")
				echo "$app,$layout,$run,$sec,$metric,$val" >>"$RUNS_CSV"
				printf '%ss training, %s %s (%ds in all)\n' "$sec" "$metric" "$val" $((SECONDS - t0)) >&2
			else
				printf 'FAILED (%ds), see %s:\n' $((SECONDS - t0)) "$log" >&2
				tail -n 4 "$log" | sed 's/^/    /' >&2
			fi
		done
	done
	if ((bridge)); then
		for layout in "${layouts[@]}"; do
			[[ $layout == 1host-* ]] && continue
			log=$OUT/hosts/bridge-$layout-$run.log
			rm -rf "$log" "$log".*
			printf 'hosts.sh: bridge %-13s run %d/%d ... ' "$layout" "$run" "$runs" >&2
			if run_layout "$layout" "$log" -- "$BUILD/bench/bridge" --seconds 0.1; then
				# op,value_len,batch,where,calls,p50,p99,mkeys_per_s,...
				row=$(awk -F, '
					$1 == "pull" && $4 == "remote" && $2 == 100 && $3 == 4096 { m = $8 }
					$1 == "pull" && $4 == "remote" && $2 == 100 && $3 == 1 { p = $6 }
					$1 == "pull" && $4 == "remote" && $2 == 1 && $3 == 1 { q = $6 }
					END { print m "," p "," q }' "$log")
				echo "bridge,$layout,$run,$row" >>"$BRIDGE_RUNS"
				echo "$row (Mkeys/s at 100x4096, p50 us at 100x1, 1x1)" >&2
			else
				echo "FAILED, see $log" >&2
				tail -n 4 "$log" | sed 's/^/    /' >&2
			fi
		done
	fi
done
echo "load after: $(bench_load)" >>"$OUT/hosts_env.txt"
[[ -s $TMP/netns-line ]] && say "netns: $(cat "$TMP/netns-line")"

# medians column by column; the 1-host layout is the reference of the ratio
awk -F, "$BENCH_AWK_MEDIAN"'
NR == 1 { next }
{
	key = $1 "," $2
	if (!(key in cnt)) { order[++nk] = key; app[key] = $1; lay[key] = $2; mname[key] = $5 }
	n = ++cnt[key]
	val[key, n, 4] = $4; val[key, n, 6] = $6
}
END {
	print "app,layout,runs,train_seconds,metric_name,metric,ratio_vs_1host,metric_vs_1host"
	for (k = 1; k <= nk; k++) {
		key = order[k]; ref = app[key] ",1host-2nodes"
		s = median(key, 4); m = median(key, 6)
		if (ref in cnt && median(ref, 4) > 0)
			printf "%s,%d,%.2f,%s,%.4f,%.2f,%+.4f\n", key, cnt[key], s, mname[key], m, s / median(ref, 4), m - median(ref, 6)
		else
			printf "%s,%d,%.2f,%s,%.4f,,\n", key, cnt[key], s, mname[key], m
	}
}' "$RUNS_CSV" >"$OUT/hosts.csv"
cat "$OUT/hosts.csv"
if ((bridge)); then
	awk -F, "$BENCH_AWK_MEDIAN"'
	NR == 1 { next }
	{
		key = $1 "," $2
		if (!(key in cnt)) order[++nk] = key
		n = ++cnt[key]
		for (c = 4; c <= 6; c++) val[key, n, c] = $c
	}
	END {
		print "bench,layout,runs,pull_100x4096_mkeys_per_s,pull_100x1_p50_us,pull_1x1_p50_us"
		for (k = 1; k <= nk; k++)
			printf "%s,%d,%.3f,%.2f,%.2f\n", order[k], cnt[order[k]], median(order[k], 4), median(order[k], 5), median(order[k], 6)
	}' "$BRIDGE_RUNS" | tee "$OUT/hosts_bridge.csv"
fi
say "wrote $OUT/hosts.csv$( ((bridge)) && echo " and $OUT/hosts_bridge.csv"), every run in $RUNS_CSV; env: $OUT/hosts_env.txt"
