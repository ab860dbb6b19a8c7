#!/usr/bin/env bash
# bench/py_kge.sh - apps/py/kge.py two ways on FB15k-237 with 2 processes:
# psmem (psrun -n 2, psmem.torch.Embedding, server-side Adagrad) and the
# PyTorch baseline (shared-memory tensors, 2 torch.multiprocessing workers,
# Hogwild, row-wise Adagrad).  Same model, negatives, batches and epochs.
# Prints one JSON line: psmem_triples_per_s, torch_triples_per_s, psmem_mrr,
# torch_mrr, epochs, ratio (psmem / torch triples/s), the same per CPU
# second of the training processes (psmem_/torch_triples_per_cpu_s,
# cpu_ratio: what a shared machine's other load disturbs least), settings.
#
#   bench/py_kge.sh                      # 1 epoch, kge defaults (dim 256)
#   EPOCHS=3 DIM=128 bench/py_kge.sh
#   MAX_TRAIN=20000 EPOCHS=1 bench/py_kge.sh   # a quick look
#
# Variables: BUILD [build], PYTHON [the python3 that imports torch],
# DATASET [../shared/data/kg/FB15k-237 beside the repo], EPOCHS [1], DIM [256],
# MAX_TRAIN [0: all], TORCH_ADAGRAD [row | element], EXTRA [more kge.py options].
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
EPOCHS=${EPOCHS:-1}
DIM=${DIM:-256}
MAX_TRAIN=${MAX_TRAIN:-0}
TORCH_ADAGRAD=${TORCH_ADAGRAD:-row}
EXTRA=${EXTRA:-}
DATASET=${DATASET:-}
if [ -z "$DATASET" ]; then
	for d in ../shared/data/kg/FB15k-237 /work/shared/data/kg/FB15k-237; do
		[ -f "$d/train.txt" ] && { DATASET=$d; break; }
	done
fi
[ -n "$DATASET" ] && [ -f "$DATASET/train.txt" ] || { echo "py_kge.sh: FB15k-237 not found (set DATASET=DIR)" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
	for p in python3 /usr/bin/python3; do
		"$p" -c 'import numpy, torch' 2>/dev/null && { PYTHON=$p; break; }
	done
fi
[ -n "${PYTHON:-}" ] || { echo "py_kge.sh: no python3 with numpy and torch (make deps)" >&2; exit 1; }
[ -x "$BUILD/bin/psrun" ] && ls "$BUILD"/python/psmem/_psmem*.so >/dev/null 2>&1 ||
	{ echo "py_kge.sh: build first (make)" >&2; exit 1; }
export PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}"
common=(--dataset "$DATASET" --epochs "$EPOCHS" --dim "$DIM" --max-train "$MAX_TRAIN" $EXTRA)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUILD/bin/psrun" -n 2 "$PYTHON" apps/py/kge.py "${common[@]}" --mode psmem --json "$tmp/psmem.json" >&2
"$PYTHON" apps/py/kge.py "${common[@]}" --mode torch --workers 2 --torch-adagrad "$TORCH_ADAGRAD" \
	--json "$tmp/torch.json" >&2
"$PYTHON" - "$tmp/psmem.json" "$tmp/torch.json" <<'PY'
import json, sys
p, t = (json.load(open(f)) for f in sys.argv[1:3])
print(json.dumps({
    "bench": "py_kge", "dataset": p["dataset"], "epochs": p["epochs"], "dim": p["dim"], "batch": p["batch"],
    "neg": p["neg"], "train_triples": p["train_triples"], "processes": 2, "torch_adagrad": t["torch_adagrad"],
    "psmem_triples_per_s": p["triples_per_s"], "torch_triples_per_s": t["triples_per_s"],
    "ratio": round(p["triples_per_s"] / t["triples_per_s"], 3),
    "psmem_triples_per_cpu_s": p["triples_per_cpu_s"], "torch_triples_per_cpu_s": t["triples_per_cpu_s"],
    "cpu_ratio": round(p["triples_per_cpu_s"] / t["triples_per_cpu_s"], 3),
    "psmem_mrr": p.get("mrr"), "torch_mrr": t.get("mrr"),
    "psmem_hits10": p.get("hits10"), "torch_hits10": t.get("hits10"),
    "psmem_loss": p["last_loss"], "torch_loss": t["last_loss"]}))
PY
