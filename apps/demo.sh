#!/usr/bin/env bash
# make demo: a small real training job under psrun (2 nodes x 1 thread).
# Matrix factorisation of MovieLens-100K (u1.base / u1.test) when the shared
# datasets are beside the repo; otherwise of a synthetic matrix from mfgen.
set -euo pipefail
BUILD=${1:-build}
DATA=${DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
ML=$DATA/movielens/ml-100k
if [ -r "$ML/u1.base" ] && [ -r "$ML/u1.test" ]; then
	train=$ML/u1.base
	test=$ML/u1.test
	what="MovieLens-100K u1 (LIBMF reaches test RMSE 0.923 with k = 100; this run prints 0.919)"
else
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	train=$tmp/train.tsv
	test=$tmp/test.tsv
	"$BUILD/apps/mfgen" --rows 2000 --cols 1000 --nnz 100000 --seed 7 --out "$train" \
		--test-out "$test" --test-frac 0.2 >/dev/null
	what="a synthetic 2000 x 1000 matrix from mfgen (no ../shared/data here)"
fi
echo "demo: matrix factorisation of $what"
echo "+ $BUILD/bin/psrun -n 2 -t 1 $BUILD/apps/mf --train $train --test $test --policy localize"
"$BUILD/bin/psrun" -n 2 -t 1 "$BUILD/apps/mf" --train "$train" --test "$test" --policy localize
