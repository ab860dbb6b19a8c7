#!/usr/bin/env bash
# bench/mf_hostfail.sh - mf on 3 hosts x 1 node (three psruns on loopback,
# --on-host-failure continue) undisturbed, then with one psrun
# SIGKILLed (host KILL_HOST) when it shows epoch KILL_AFTER done; REPEATS runs of
# each.  Prints test RMSE, training seconds, psrun's recovery time (loss ->
# first barrier over the survivors, from each survivor) and kill -> the
# adopter's "takes over" line (the survivors train the lost share).
#
#   bench/mf_hostfail.sh                    MovieLens-100K u1, 20 epochs, kill after 7
#   POLICY=localize REPEATS=3 bench/mf_hostfail.sh
#
# Environment (defaults in brackets):
#   DATA [../shared/data]  TRAIN, TEST [$DATA/movielens/ml-100k/u1.base, u1.test]
#   EPOCHS [20]  KILL_AFTER [7]  POLICY [classic]  REPEATS [3]  MF_ARGS [none]
#   KILL_HOST [2]: the host killed (0: host 1 reports from then on)
#   BACKUP_RATE [20]  BUILD [build]  OUT [bench/out/mf_hostfail]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(git rev-parse --show-toplevel)"
BUILD=${BUILD:-build}
EPOCHS=${EPOCHS:-20}
KILL_AFTER=${KILL_AFTER:-7}
POLICY=${POLICY:-classic}
REPEATS=${REPEATS:-3}
BACKUP_RATE=${BACKUP_RATE:-20}
KILL_HOST=${KILL_HOST:-2}
OUT=${OUT:-bench/out/mf_hostfail}
mkdir -p "$OUT"
bench_mf_inputs mf_hostfail.sh
bench_tmp_token
TOKEN=$tmp/token
now() { date +%s.%N; }

bench_env_header
echo "# mf --train $TRAIN --test $TEST --epochs $EPOCHS --policy $POLICY ${MF_ARGS:-}; 3 hosts x 1 node," \
	"--on-host-failure continue --backup-rate $BACKUP_RATE"

# run KIND REPEAT (KIND: full or kill)
run() {
	local kind=$1 k=$2 tag="$OUT/$1-$2" port pids=() r
	port=$(bench_free_port)
	# shellcheck disable=SC2206 # MF_ARGS: options split on spaces
	local mf=("$BUILD/apps/mf" --train "$TRAIN" --test "$TEST" --epochs "$EPOCHS" --policy "$POLICY"
		--json "$tag.json" ${MF_ARGS:-})
	for ((r = 0; r < 3; r++)); do
		"$BUILD/bin/psrun" -n 1 --hosts 3 --host-rank "$r" --coordinator "127.0.0.1:$port" \
			--token-file "$TOKEN" --on-host-failure continue --backup-rate "$BACKUP_RATE" \
			"${mf[@]}" >"$tag.h$r.out" 2>"$tag.h$r.err" &
		pids+=($!)
	done
	local t_kill=0 t_res=0
	if [ "$kind" = kill ]; then
		# polled in one process (a shell loop's greps lag an epoch or more)
		local mark="mf: host $KILL_HOST: epoch $KILL_AFTER/$EPOCHS done"
		[ "$KILL_HOST" = 0 ] && mark="epoch $KILL_AFTER/$EPOCHS: "
		read -r t_kill t_res < <(python3 - "$tag" "${pids[$KILL_HOST]}" "$mark" "$KILL_HOST" "${pids[@]}" <<'EOF'
import os, signal, sys, time
tag, pid, mark, kh = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
others = [int(p) for i, p in enumerate(sys.argv[5:]) if i != kh]
def running(p):  # not exited (a zombie waits for the shell to reap it)
    try:
        return open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def seen(paths, s):
    for p in paths:
        try:
            if s in open(p).read():
                return True
        except FileNotFoundError:
            pass
    return False
while not seen([tag + ".h%d.out" % kh], mark):
    time.sleep(0.0005)
tk = time.time()
try:
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:  # the job ended before the kill: no loss to time
    print(0, 0)
    sys.exit(0)
while not seen([tag + ".h%d.out" % h for h in range(3) if h != kh], "takes over"):
    if not any(running(p) for p in others):  # the survivors died: nothing resumed
        print(tk, 0)
        sys.exit(0)
    time.sleep(0.0005)
print(tk, time.time())
EOF
)
	fi
	local st=0
	for ((r = 0; r < 3; r++)); do
		if [ "$kind" = kill ] && [ "$r" = "$KILL_HOST" ]; then wait "${pids[$r]}" 2>/dev/null || true; else wait "${pids[$r]}" || st=$?; fi
	done
	if [ "$st" != 0 ]; then # a survivor failed: say why, go on with the next run
		echo "$kind $k died: $(cat "$tag".h*.err | grep -v '^psrun: \|^psmem: ' | head -1)"
		return 0
	fi
	local rec
	rec=$(cat "$tag".h*.err | grep -o 'released [0-9.]* ms' | awk '{print $2}' | paste -sd/ || true)
	python3 - "$tag.json" "$kind" "$k" "${rec:--}" "$t_kill" "$t_res" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
tk, tr = float(sys.argv[5]), float(sys.argv[6])
print(sys.argv[2], sys.argv[3], "%.4f" % j["rmse"], "%.3f" % j["train_seconds"], sys.argv[4],
      ("%.1f" % (1000 * (tr - tk))) if tk and tr else "-", j.get("host_lost_epoch"))
EOF
}

echo "kind repeat rmse train_seconds recovered_ms(survivors) kill_to_resumed_ms host_lost_epoch"
for ((k = 1; k <= REPEATS; k++)); do
	run full "$k"
	run kill "$k"
done
