#!/usr/bin/env bash
# make demo: a small real training job under psrun (2 nodes x 1 thread):
# matrix factorisation of a synthetic low-rank matrix, factors in psmem.
set -euo pipefail
BUILD=${1:-build}
echo "+ $BUILD/bin/psrun -n 2 -t 1 $BUILD/apps/demo --epochs 10"
"$BUILD/bin/psrun" -n 2 -t 1 "$BUILD/apps/demo" --epochs 10
