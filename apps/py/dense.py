#!/usr/bin/env python3
"""dense.py - a small CNN (or MLP) on scikit-learn's handwritten digits,
trained data-parallel over the nodes of a psmem job.

    PYTHONPATH=build/python /usr/bin/python3 apps/py/dense.py            # one node
    PYTHONPATH=build/python build/bin/psrun -n 2 /usr/bin/python3 apps/py/dense.py --sync ssp:2

Data: sklearn.datasets.load_digits (1797 8x8 images, bundled, offline), a
stratified 80/20 train/test split with --seed.  The training set is
partitioned over the nodes (SystemML paramserv's schemes):

    dc  disjoint contiguous: node r takes the r-th contiguous block
    rr  disjoint round robin: node r takes rows r, r + N, r + 2N, ...
    dr  disjoint random: one random permutation (--seed), then contiguous blocks
    or  overlap reshuffle: every node takes the whole set, in its own order

Parameters live in one psmem table (psmem.torch.DenseParameters).
--update batch: every batch pulls the model, computes the gradient of its
batch and pushes it; the table's server-side Adam applies each push.
--update epoch: every epoch pulls the model, runs a local Adam over the
node's shard, and pushes (local - pulled) / nodes: the model averages the
nodes' epochs (table rule sum).  --sync bsp|ssp:S|asp bounds how far a node
runs ahead (one psmem clock per batch or per epoch).  Node 0 evaluates the
final model on the test set.
"""
import os

# Debian's torch multiplies through OpenBLAS, whose own thread pool (one
# spinning thread per core) torch.set_num_threads does not bound: with
# several workers on the cores it would compete with them.  One BLAS thread
# per worker process unless the caller chose otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import time

import numpy as np

PARTITIONS = ("dc", "rr", "dr", "or")


def partition(n, nodes, rank, scheme, seed):
    """Row indices (into 0..n-1) of node `rank`'s shard of n training rows.

    dc, rr, dr: the shards of the nodes are disjoint and cover 0..n-1;
    or: every shard is a permutation of 0..n-1 (its own per node)."""
    if not 0 <= rank < nodes:
        raise ValueError(f"partition: rank {rank} outside 0..{nodes - 1}")
    if scheme == "dc":
        lo, hi = n * rank // nodes, n * (rank + 1) // nodes
        return np.arange(lo, hi, dtype=np.int64)
    if scheme == "rr":
        return np.arange(rank, n, nodes, dtype=np.int64)
    if scheme == "dr":
        perm = np.random.default_rng(seed).permutation(n)
        lo, hi = n * rank // nodes, n * (rank + 1) // nodes
        return perm[lo:hi].astype(np.int64)
    if scheme == "or":
        return np.random.default_rng([seed, 1 + rank]).permutation(n).astype(np.int64)
    raise ValueError(f"partition: expected one of {', '.join(PARTITIONS)}, got {scheme!r}")


def parse_sync(text):
    if text in ("bsp", "asp"):
        return text, 0
    if text.startswith("ssp:"):
        try:
            s = int(text[4:])
        except ValueError:
            s = -1
        if s >= 0:
            return "ssp", s
    raise argparse.ArgumentTypeError(f"--sync: expected bsp, ssp:S (S >= 0) or asp, got {text!r}")


def build_model(kind):
    import torch.nn as nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sync", type=parse_sync, default=("bsp", 0), help="bsp, ssp:S or asp (default bsp)")
    ap.add_argument("--partition", choices=PARTITIONS, default="dc", help="default dc")
    ap.add_argument("--update", choices=("batch", "epoch"), default="batch", help="default batch")
    ap.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="default cnn")
    ap.add_argument("--epochs", type=int, default=10, help="default 10")
    ap.add_argument("--batch", type=int, default=32, help="rows per batch (default 32)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.002 batch, 0.003 epoch)")
    ap.add_argument("--seed", type=int, default=1, help="split, partition, init, order (default 1)")
    ap.add_argument("--json", default=None, help="write a JSON summary to FILE (- = stdout)")
    a = ap.parse_args(argv)
    if a.epochs < 1 or a.batch < 1:
        ap.error("--epochs and --batch must be >= 1")
    mode, stale = a.sync
    lr = a.lr if a.lr is not None else (0.002 if a.update == "batch" else 0.003)

    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    import psmem
    from psmem.torch import DenseParameters

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    w = psmem.init()
    N, rank = w.num_nodes * w.num_hosts, w.host_id * w.num_nodes + w.node_id

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=a.seed, stratify=y)
    Xtr, ytr = torch.from_numpy(Xtr), torch.from_numpy(ytr).long()
    Xte, yte = torch.from_numpy(Xte), torch.from_numpy(yte).long()
    n = len(ytr)
    shards = [partition(n, N, r, a.partition, a.seed) for r in range(N)]
    mine = torch.from_numpy(shards[rank])
    # every node makes as many clocks per epoch as the node with the most
    # batches, so none waits on the bound for one that has finished
    nb = [(len(s) + a.batch - 1) // a.batch for s in shards]
    most = max(nb)

    model = build_model(a.model)
    if a.update == "batch":
        dp = DenseParameters(w, model, rule="adam", lr=lr)
        opt = None
    else:
        dp = DenseParameters(w, model, rule="sum")
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    w.set_consistency(mode, stale)
    gen = torch.Generator().manual_seed(a.seed * 1000 + rank)
    t0 = time.perf_counter()
    last = 0.0
    for ep in range(a.epochs):
        order = mine[torch.randperm(len(mine), generator=gen)]
        if a.update == "epoch":
            dp.pull()
        tot, cnt = 0.0, 0
        for b in range(nb[rank]):
            idx = order[b * a.batch:(b + 1) * a.batch]
            if a.update == "batch":
                dp.pull()
            model.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            loss.backward()
            if a.update == "batch":
                dp.push_grads()
                w.clock()
            else:
                opt.step()
            tot += float(loss) * len(idx)
            cnt += len(idx)
        if a.update == "batch":
            for _ in range(most - nb[rank]):
                w.clock()
        else:
            dp.push_delta(1.0 / N)
            w.clock()
        last = tot / max(cnt, 1)
    secs = time.perf_counter() - t0
    w.barrier()  # every push is in
    dp.pull()
    with torch.no_grad():
        acc = float((model(Xte).argmax(1) == yte).float().mean())
    res = {"app": "dense", "model": a.model, "sync": mode if mode != "ssp" else f"ssp:{stale}",
           "partition": a.partition, "update": a.update, "epochs": a.epochs, "batch": a.batch, "lr": lr,
           "nodes": N, "seed": a.seed, "train_rows": n, "shard_rows": len(mine), "last_loss": round(last, 5),
           "train_seconds": round(secs, 3), "test_accuracy": round(acc, 5)}
    if rank == 0:
        print(f"dense: {a.model} sync {res['sync']} partition {a.partition} update {a.update}: "
              f"test accuracy {acc:.4f} after {a.epochs} epochs ({secs:.1f} s)", file=sys.stderr)
        if a.json:
            text = json.dumps(res)
            if a.json == "-":
                print(text)
            else:
                with open(a.json, "w") as f:
                    f.write(text + "\n")
    w.barrier()
    w.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
