#!/usr/bin/env bash
# bench/kge_vs_torch.sh - kge against the same model written in PyTorch
# (issue 12): ComplEx on FB15k-237 at kge's defaults (dim 256, Adagrad lr
# 0.1, N3 0.05, 256 negatives, batch 256), WORKERS workers each side, EPOCHS
# epochs; REPEATS runs of each side, alternating (kge, torch, kge, ...), the
# medians reported.  One JSON line on stdout:
#
#   {"kge_triples_per_s", "torch_triples_per_s", "kge_mrr", "torch_mrr",
#    "epochs", "workers", "ratio" (kge / torch triples/s), "cpu", ...}
#
# kge: build/apps/kge --threads WORKERS (one node, WORKERS worker threads;
# the same as psrun -n 1 -t WORKERS).  torch: apps/py/kge.py --mode torch,
# the shared-memory Hogwild baseline of the Python issue (WORKERS
# torch.multiprocessing processes of one torch thread, share_memory_()
# tensors, sparse Adagrad on the rows a batch used; TORCH_ADAGRAD picks its
# state: element, one accumulator per value as kge (the same maths, so the
# same MRR), or row, one per row as DGL-KE and PyTorch-BigGraph (less work,
# and after 1 epoch a test MRR of about 0.15 instead of 0.25: not the same
# model quality, so not the default)), with Debian's
# torch (OpenBLAS) through /usr/bin/python3; skipped, with a message,
# without torch or without apps/py/kge.py.  triples/s count training only
# (wall time, both sides); MRR is the filtered test MRR.  kge's CPU seconds
# in training are reported too: on a shared machine they move less with the
# load than wall time.
#
#   bench/kge_vs_torch.sh
#   EPOCHS=1 REPEATS=3 DATA=/work/shared/data bench/kge_vs_torch.sh
#
# Environment (defaults in brackets):
#   DATA      datasets [$(git rev-parse --show-toplevel)/../shared/data]
#   DATASET   the knowledge graph [$DATA/kg/FB15k-237]
#   BUILD     build folder [build]
#   EPOCHS    [1]   WORKERS [2]   REPEATS [3]
#   TORCH_ADAGRAD  element or row (see above) [element]
#   KGE_ARGS  more kge options []   TORCH_ARGS  more kge.py options []
#             (both sides must keep the same model and settings)
#   PYTHON    the interpreter with torch [/usr/bin/python3]
#   TORCH_PY  the Python app [apps/py/kge.py]
#   OUT       each run's JSON and log [bench/out/kge_vs_torch]
set -uo pipefail

ROOT=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
DATA=${DATA:-$ROOT/../shared/data}
DATASET=${DATASET:-$DATA/kg/FB15k-237}
BUILD=${BUILD:-build}
EPOCHS=${EPOCHS:-1}
WORKERS=${WORKERS:-2}
REPEATS=${REPEATS:-3}
KGE_ARGS=${KGE_ARGS:-}
TORCH_ARGS=${TORCH_ARGS:-}
TORCH_ADAGRAD=${TORCH_ADAGRAD:-element}
TORCH_PY=${TORCH_PY:-apps/py/kge.py}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$ROOT/bench/out/kge_vs_torch}

say() { printf 'kge_vs_torch: %s\n' "$*" >&2; }

[[ -x $BUILD/apps/kge ]] || { say "no $BUILD/apps/kge: run make first"; exit 1; }
[[ -f $DATASET/train.txt ]] || { say "SKIP: no dataset at $DATASET (set DATA or DATASET)"; exit 0; }
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	say "SKIP: $PYTHON cannot import torch (Debian: apt-get install python3-torch)"
	exit 0
fi
[[ -f $TORCH_PY ]] || { say "SKIP: no torch baseline ($TORCH_PY)"; exit 0; }
mkdir -p "$OUT" || exit 1
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
say "cpu: ${CPU:-unknown}, $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# One run of a side: its JSON summary (one line) in $OUT/SIDE-K.json.
run_kge() {
	local k=$1
	say "kge run $k: $BUILD/apps/kge --dataset $DATASET --threads $WORKERS --epochs $EPOCHS $KGE_ARGS"
	# shellcheck disable=SC2086
	"$BUILD/apps/kge" --dataset "$DATASET" --threads "$WORKERS" --epochs "$EPOCHS" $KGE_ARGS \
		--json "$OUT/kge-$k.json" >"$OUT/kge-$k.log" 2>&1 ||
		{ say "kge run $k failed (see $OUT/kge-$k.log)"; exit 1; }
}
run_torch() {
	local k=$1
	say "torch run $k: $PYTHON $TORCH_PY --mode torch --dataset $DATASET --workers $WORKERS --epochs $EPOCHS --torch-adagrad $TORCH_ADAGRAD $TORCH_ARGS"
	# shellcheck disable=SC2086
	"$PYTHON" "$TORCH_PY" --mode torch --dataset "$DATASET" --workers "$WORKERS" --epochs "$EPOCHS" \
		--torch-adagrad "$TORCH_ADAGRAD" $TORCH_ARGS --json "$OUT/torch-$k.json" >"$OUT/torch-$k.log" 2>&1 ||
		{ say "torch run $k failed (see $OUT/torch-$k.log)"; exit 1; }
}
for ((k = 1; k <= REPEATS; k++)); do
	run_kge "$k"
	run_torch "$k"
done
say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PYTHON" - "$OUT" "$REPEATS" "$EPOCHS" "$WORKERS" "$CPU" "$(nproc)" "$TORCH_ADAGRAD" <<'EOF'
import json, statistics, sys
out, reps, epochs, workers, cpu, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
torch_adagrad = sys.argv[7]
def load(side, *keys):
    cols = [[] for _ in keys]
    for k in range(1, reps + 1):
        with open("%s/%s-%d.json" % (out, side, k)) as f:
            j = json.load(f)
        for c, key in zip(cols, keys):
            c.append(round(float(j[key]), 4))
    return cols
kt, km, kc = load("kge", "throughput", "mrr", "train_cpu_seconds")
tt, tm = load("torch", "triples_per_s", "mrr")
k, t = statistics.median(kt), statistics.median(tt)
print(json.dumps({"kge_triples_per_s": round(k, 1), "torch_triples_per_s": round(t, 1),
                  "kge_mrr": round(statistics.median(km), 4), "torch_mrr": round(statistics.median(tm), 4),
                  "epochs": epochs, "workers": workers, "ratio": round(k / t, 3) if t > 0 else None,
                  "cpu": cpu, "cores": cores, "repeats": reps, "torch_adagrad": torch_adagrad,
                  "kge_train_cpu_seconds": statistics.median(kc),
                  "kge_runs": kt, "torch_runs": tt, "kge_mrrs": km, "torch_mrrs": tm}))
EOF
