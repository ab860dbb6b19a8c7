#!/usr/bin/env python3
"""kge.py - ComplEx knowledge-graph embeddings in PyTorch, two ways.

    # psmem: rows in psmem tables, psmem.torch.Embedding, server-side Adagrad
    PYTHONPATH=build/python build/bin/psrun -n 2 /usr/bin/python3 apps/py/kge.py \\
        --dataset ../shared/data/kg/FB15k-237 --mode psmem
    # the baseline a PyTorch user writes today: shared-memory tensors updated
    # Hogwild by torch.multiprocessing workers with row-wise Adagrad
    PYTHONPATH=build/python /usr/bin/python3 apps/py/kge.py \\
        --dataset ../shared/data/kg/FB15k-237 --mode torch --workers 2

Model, negatives and batches as the C app (apps/kge.c): every relation r
has a reciprocal r + R; the tail of (h, r, ?) is predicted with the query
q = h * r and the head of (?, r, t) with q = t * (r + R) (complex products:
the first dim/2 floats of a row are real parts, the rest imaginary); a batch
of --batch triples scores each query against the batch's own heads and tails
plus --neg entities drawn uniformly (the distinct ones); loss = softmax
cross-entropy of the true answer, plus --reg times an N3 penalty (cubed
complex moduli) on the rows each query uses, averaged over the queries.

--mode psmem: every node of the psrun job takes its share of the training
triples (shuffled once with --seed, the same order on every node, reshuffled
within the share every epoch).  The tables use psmem's adagrad rule (lr
--lr, eps 1e-10): a batch's backward pass pushes its row gradients
(psmem.torch.Embedding) and the rule applies each push under the row's
lock.

--mode torch: the entity and relation tensors and their Adagrad state are
torch shared-memory tensors; --workers processes (torch.multiprocessing)
take the same shares and update the rows they used without locks (Hogwild)
with Adagrad: --torch-adagrad row keeps one accumulator per row (the mean
of g^2, as DGL-KE and PyTorch-BigGraph), element one per value (the maths of
psmem's rule).

Evaluation: filtered link prediction on test.txt (heads and tails, ties
count half), MRR and Hits@1/3/10; psmem nodes split the queries and add
their sums in a psmem table.  Throughput: training triples per second of
wall time over all workers (evaluation excluded), and per CPU second of
the training processes (triples_per_cpu_s: less disturbed by other load
on a shared machine).
"""
import os

# Debian's torch multiplies through OpenBLAS, whose own thread pool (one
# spinning thread per core) torch.set_num_threads does not bound: with
# several workers on the cores it would compete with them.  One BLAS thread
# per worker process unless the caller chose otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import sys
import time

import numpy as np

ADAGRAD_EPS = 1e-10


# ------------------------------------------------------------------ data

def read_triples(path, ents, rels, train):
    """Triples of a file as an int64 (n, 3) array; ids by first appearance
    in train.txt (as the C app); other files skip unknown names."""
    out, skipped = [], 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(parts):
                raise SystemExit(f"{path}:{lineno}: expected 3 tab-separated non-empty fields "
                                 f"(head, relation, tail), found {len(parts)}")
            h, r, t = parts
            if train:
                ids = (ents.setdefault(h, len(ents)), rels.setdefault(r, len(rels)),
                       ents.setdefault(t, len(ents)))
            else:
                if h not in ents or r not in rels or t not in ents:
                    skipped += 1
                    continue
                ids = (ents[h], rels[r], ents[t])
            out.append(ids)
    return np.array(out, dtype=np.int64).reshape(-1, 3), skipped


def load(dataset, max_train):
    ents, rels = {}, {}
    train, _ = read_triples(os.path.join(dataset, "train.txt"), ents, rels, True)
    valid, _ = read_triples(os.path.join(dataset, "valid.txt"), ents, rels, False)
    test, skipped = read_triples(os.path.join(dataset, "test.txt"), ents, rels, False)
    if max_train and max_train < len(train):
        train = train[:max_train]
    return train, valid, test, len(ents), len(rels), skipped


class Filter:
    """Known answers b of (a, rr) over train, valid and test, both ways:
    keys a * 2R + rr sorted, answers beside them."""

    def __init__(self, triples, nR):
        h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
        key = np.concatenate([h * 2 * nR + r, t * 2 * nR + r + nR])
        val = np.concatenate([t, h])
        order = np.lexsort((val, key))
        self.key, self.val, self.nR = key[order], val[order], nR

    def ranges(self, a, rr):
        k = a * 2 * self.nR + rr
        return np.searchsorted(self.key, k, "left"), np.searchsorted(self.key, k, "right")


# ----------------------------------------------------------------- model

def cmul(a, r):
    """ComplEx query: complex product of a and r (halves: real, imaginary)."""
    import torch
    h = a.shape[-1] // 2
    ar, ai, rr, ri = a[..., :h], a[..., h:], r[..., :h], r[..., h:]
    return torch.cat([ar * rr - ai * ri, ar * ri + ai * rr], -1)


def n3(x):
    h = x.shape[-1] // 2
    return (x[..., :h] ** 2 + x[..., h:] ** 2).sqrt().pow(3).sum()


def batch_loss(Erows, Rrows, hi, ti, ri, rv, reg):
    """Loss of a batch whose entity rows Erows (candidates) and relation
    rows Rrows are given; hi/ti index Erows, ri/rv index Rrows."""
    import torch.nn.functional as F
    import torch
    qa = torch.cat([Erows[hi], Erows[ti]])
    qr = torch.cat([Rrows[ri], Rrows[rv]])
    tgt = torch.cat([ti, hi])
    nq = qa.shape[0]
    S = cmul(qa, qr) @ Erows.t()
    loss = F.cross_entropy(S, tgt, reduction="sum") / nq
    if reg:
        loss = loss + (reg / nq) * (n3(qa) + n3(qr) + n3(Erows[tgt]))
    return loss


def make_batch(trip, nE, nR, neg, gen):
    """Distinct entities (batch heads, tails, neg uniform draws) and
    relations (r and r + R) of a batch, and each triple's positions."""
    import torch
    h, r, t = trip[:, 0], trip[:, 1], trip[:, 2]
    n = len(h)
    negs = torch.randint(0, nE, (neg,), generator=gen)
    ents, inv = torch.unique(torch.cat([h, t, negs]), return_inverse=True)
    rels, rinv = torch.unique(torch.cat([r, r + nR]), return_inverse=True)
    return ents, rels, inv[:n], inv[n:2 * n], rinv[:n], rinv[n:]


def init_rows(seed, tab, lo, hi, D, std):
    """Initial rows lo..hi-1 of table tab: normal(0, std), a function of
    (seed, tab, lo) so every mode starts from the same values."""
    import torch
    g = torch.Generator().manual_seed(seed * 1000003 + tab * 7919 + lo)
    return torch.randn(hi - lo, D, generator=g) * std


def shares(ntrain, parts, seed):
    perm = np.random.default_rng(seed).permutation(ntrain)
    return [perm[ntrain * p // parts: ntrain * (p + 1) // parts] for p in range(parts)]


# ------------------------------------------------------------ evaluation

def evaluate(E, R, trip, flt, lo, hi, QB=256):
    """Sums of 1/rank, hits@1/3/10 and the count over queries lo..hi-1 of
    trip (query 2i: tail of triple i, 2i+1: its head)."""
    import torch
    nR = flt.nR
    rr_sum = h1 = h3 = h10 = 0.0
    for q0 in range(lo, hi, QB):
        q = np.arange(q0, min(hi, q0 + QB))
        x = trip[q // 2]
        head = (q & 1).astype(bool)
        a = np.where(head, x[:, 2], x[:, 0])
        rr = x[:, 1] + np.where(head, nR, 0)
        ans = np.where(head, x[:, 0], x[:, 2])
        Q = cmul(E[torch.from_numpy(a)], R[torch.from_numpy(rr)])
        S = Q @ E.t()
        rows = torch.arange(len(q))
        st = S[rows, torch.from_numpy(ans)].clone()
        flo, fhi = flt.ranges(a, rr)
        ri = np.repeat(np.arange(len(q)), fhi - flo)
        ci = np.concatenate([flt.val[l:h] for l, h in zip(flo, fhi)]) if len(q) else np.zeros(0, np.int64)
        S[torch.from_numpy(ri), torch.from_numpy(ci)] = -math.inf  # the other known answers
        S[rows, torch.from_numpy(ans)] = st
        greater = (S > st[:, None]).sum(1).double()
        equal = (S == st[:, None]).sum(1).double() - 1
        rank = 1 + greater + equal / 2
        rr_sum += float((1 / rank).sum())
        h1 += float((rank <= 1).sum())
        h3 += float((rank <= 3).sum())
        h10 += float((rank <= 10).sum())
    return np.array([rr_sum, h1, h3, h10, hi - lo], dtype=np.float64)


# ------------------------------------------------------------------ psmem

def train_epochs(a, mine, trainT, nE, nR, gen, step, say):
    """The training loop of both modes: each epoch a fresh order (gen) of this
    worker's triples mine, batches of a.batch with a.neg negatives each;
    step(ents, rels, hi, ti, ri, rv) trains on one batch and returns its
    loss; say(ep) after each epoch.  Returns (loss x queries summed, queries)."""
    import torch
    B = a.batch
    loss_sum, nq = 0.0, 0
    for ep in range(a.epochs):
        order = mine[torch.randperm(len(mine), generator=gen)]
        for s in range(0, len(order), B):
            trip = trainT[order[s:s + B]]
            loss = step(*make_batch(trip, nE, nR, a.neg, gen))
            loss_sum += float(loss) * 2 * len(trip)
            nq += 2 * len(trip)
        say(ep)
    return loss_sum, nq


def run_psmem(a, data):
    import torch
    import psmem
    from psmem.torch import Embedding
    train, valid, test, nE, nR, flt = data
    torch.set_num_threads(a.threads)
    w = psmem.init()
    N, me = w.num_nodes * w.num_hosts, w.host_id * w.num_nodes + w.node_id
    D = a.dim
    tE = w.table(nE, D, rule="adagrad", lr=a.lr, eps=ADAGRAD_EPS)
    tR = w.table(2 * nR, D, rule="adagrad", lr=a.lr, eps=ADAGRAD_EPS)
    tM = w.table(4, 8, transient=True)  # 0: losses, 1: test sums
    for tab, t, K in ((0, tE, nE), (1, tR, 2 * nR)):
        lo, hi = K * me // N, K * (me + 1) // N
        t.assign(np.arange(lo, hi, dtype=np.int64), init_rows(a.seed, tab, lo, hi, D, a.init).numpy())
    E, R = Embedding(tE), Embedding(tR)
    mine = torch.from_numpy(shares(len(train), N, a.seed)[me])
    trainT = torch.from_numpy(train)
    gen = torch.Generator().manual_seed(a.seed * 7 + me)
    w.barrier()  # initial values in place
    t0, c0 = time.perf_counter(), time.process_time()

    def step(ents, rels, hi, ti, ri, rv):
        loss = batch_loss(E(ents), R(rels), hi, ti, ri, rv, a.reg)
        loss.backward()  # pushes the rows' gradients; the adagrad rule applies them
        return loss

    def say(ep):
        if me == 0:
            print(f"kge psmem: epoch {ep + 1}/{a.epochs} done ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr)
    loss_sum, nq = train_epochs(a, mine, trainT, nE, nR, gen, step, say)
    cpu = time.process_time() - c0  # this node's process: its workers and service thread
    w.barrier()  # every node's pushes are in
    secs = time.perf_counter() - t0
    tM.push(np.array([0], np.int64), np.array([[loss_sum, nq, cpu, 0, 0, 0, 0, 0]], np.float32))
    res = {}
    if a.eval:
        Eall = torch.from_numpy(tE.pull(np.arange(nE, dtype=np.int64)))
        Rall = torch.from_numpy(tR.pull(np.arange(2 * nR, dtype=np.int64)))
        nqt = 2 * len(test)
        te = time.perf_counter()
        sums = evaluate(Eall, Rall, test, flt, nqt * me // N, nqt * (me + 1) // N)
        tM.push(np.array([1], np.int64), np.concatenate([sums, np.zeros(3)]).astype(np.float32)[None])
        w.barrier()
        tot = tM.pull(np.array([1], np.int64))[0].astype(np.float64)
        res = metrics(tot)
        res["eval_seconds"] = round(time.perf_counter() - te, 2)
    else:
        w.barrier()
    m = tM.pull(np.array([0], np.int64))[0]
    res.update({"mode": "psmem", "workers": N, "train_seconds": round(secs, 3),
                "triples_per_s": round(len(train) * a.epochs / secs, 1),
                "train_cpu_seconds": round(float(m[2]), 3),
                "triples_per_cpu_s": round(len(train) * a.epochs / float(m[2]), 1),
                "last_loss": round(float(m[0] / max(m[1], 1)), 5)})
    w.barrier()
    w.finalize()
    return res if me == 0 else None


def metrics(tot):
    n = max(tot[4], 1)
    return {"mrr": round(tot[0] / n, 5), "hits1": round(tot[1] / n, 5), "hits3": round(tot[2] / n, 5),
            "hits10": round(tot[3] / n, 5), "queries": int(tot[4])}


# ------------------------------------------------------------------ torch

def torch_worker(rank, a, train, share, nE, nR, E, R, GE, GR, start, stats):
    """One Hogwild worker: no locks; reads and updates shared tensors."""
    import torch
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed * 7 + rank)
    mine = torch.from_numpy(share)
    trainT = torch.from_numpy(train)
    lr, row = a.lr, a.torch_adagrad == "row"

    def step(ents, rels, hi, ti, ri, rv):
        Erows = E[ents].requires_grad_()
        Rrows = R[rels].requires_grad_()
        loss = batch_loss(Erows, Rrows, hi, ti, ri, rv, a.reg)
        loss.backward()
        for T, G, idx, g in ((E, GE, ents, Erows.grad), (R, GR, rels, Rrows.grad)):
            if row:  # DGL-KE / PBG: one accumulator per row
                G.index_add_(0, idx, (g * g).mean(1))
                std = G[idx].sqrt_().add_(ADAGRAD_EPS).unsqueeze(1)
            else:    # one per value, as psmem's adagrad rule
                G.index_add_(0, idx, g * g)
                std = G[idx].sqrt_().add_(ADAGRAD_EPS)
            T.index_add_(0, idx, -lr * g / std)
        return loss

    def say(ep):
        if rank == 0:
            print(f"kge torch: epoch {ep + 1}/{a.epochs} done", file=sys.stderr)
    start.wait()
    c0 = time.process_time()
    loss_sum, nq = train_epochs(a, mine, trainT, nE, nR, gen, step, say)
    stats[rank, 0] = loss_sum
    stats[rank, 1] = nq
    stats[rank, 2] = time.process_time() - c0


def run_torch(a, data):
    import torch
    import torch.multiprocessing as mp
    train, valid, test, nE, nR, flt = data
    D, P = a.dim, a.workers
    E = torch.cat([init_rows(a.seed, 0, nE * p // P, nE * (p + 1) // P, D, a.init) for p in range(P)])
    R = torch.cat([init_rows(a.seed, 1, 2 * nR * p // P, 2 * nR * (p + 1) // P, D, a.init) for p in range(P)])
    GE = torch.zeros(nE) if a.torch_adagrad == "row" else torch.zeros(nE, D)
    GR = torch.zeros(2 * nR) if a.torch_adagrad == "row" else torch.zeros(2 * nR, D)
    stats = torch.zeros(P, 3, dtype=torch.float64)  # per worker: loss sum, queries, CPU seconds
    for x in (E, R, GE, GR, stats):
        x.share_memory_()
    ctx = mp.get_context("fork")
    start = ctx.Barrier(P + 1)
    parts = shares(len(train), P, a.seed)
    procs = [ctx.Process(target=torch_worker, args=(p, a, train, parts[p], nE, nR, E, R, GE, GR, start, stats))
             for p in range(P)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    secs = time.perf_counter() - t0
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"kge torch: worker exit codes {bad}")
    res = {}
    if a.eval:
        torch.set_num_threads(a.threads)  # as each psmem node (more oversubscribes a busy machine)
        te = time.perf_counter()
        res = metrics(evaluate(E, R, test, flt, 0, 2 * len(test)))
        res["eval_seconds"] = round(time.perf_counter() - te, 2)
    cpu = float(stats[:, 2].sum())
    res.update({"mode": "torch", "workers": P, "torch_adagrad": a.torch_adagrad, "train_seconds": round(secs, 3),
                "triples_per_s": round(len(train) * a.epochs / secs, 1),
                "train_cpu_seconds": round(cpu, 3), "triples_per_cpu_s": round(len(train) * a.epochs / cpu, 1),
                "last_loss": round(float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1)), 5)})
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="folder with train.txt, valid.txt, test.txt")
    ap.add_argument("--mode", choices=("psmem", "torch"), default="psmem", help="default psmem")
    ap.add_argument("--workers", type=int, default=2, help="torch mode: processes (default 2)")
    ap.add_argument("--torch-adagrad", choices=("row", "element"), default="row",
                    help="torch mode: Adagrad state per row (DGL-KE, PBG) or per value (default row)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    ap.add_argument("--dim", type=int, default=256, help="floats per row, even (default 256)")
    ap.add_argument("--lr", type=float, default=0.1, help="Adagrad learning rate (default 0.1)")
    ap.add_argument("--reg", type=float, default=0.05, help="N3 weight (default 0.05)")
    ap.add_argument("--init", type=float, default=0.001, help="std. deviation of the initial rows (default 0.001)")
    ap.add_argument("--neg", type=int, default=256, help="uniform negatives per batch (default 256)")
    ap.add_argument("--batch", type=int, default=256, help="triples per batch (default 256)")
    ap.add_argument("--epochs", type=int, default=1, help="default 1")
    ap.add_argument("--seed", type=int, default=1, help="default 1")
    ap.add_argument("--max-train", type=int, default=0, help="use the first N training triples (0: all)")
    ap.add_argument("--no-eval", dest="eval", action="store_false", help="skip the test evaluation")
    ap.add_argument("--json", default=None, help="write a JSON summary to FILE (- = stdout)")
    a = ap.parse_args(argv)
    if a.dim < 2 or a.dim % 2:
        ap.error("--dim must be even and >= 2 (ComplEx: real and imaginary halves)")
    for name in ("workers", "threads", "batch", "epochs"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if a.neg < 0 or a.lr <= 0 or a.reg < 0:
        ap.error("--neg and --reg must be >= 0, --lr > 0")
    train, valid, test, nE, nR, skipped = load(a.dataset, a.max_train)
    if len(train) == 0:
        raise SystemExit(f"{a.dataset}/train.txt: no triples")
    flt = Filter(np.concatenate([train, valid, test]), nR)
    data = (train, valid, test, nE, nR, flt)
    res = run_psmem(a, data) if a.mode == "psmem" else run_torch(a, data)
    if res is None:
        return 0
    res = {"app": "kge.py", "model": "complex", "dataset": os.path.basename(os.path.normpath(a.dataset)),
           "dim": a.dim, "batch": a.batch, "neg": a.neg, "lr": a.lr, "reg": a.reg, "epochs": a.epochs,
           "train_triples": len(train), "entities": nE, "relations": nR, "test_skipped": skipped, **res}
    print(f"kge.py {res['mode']}: {res['triples_per_s']:.0f} triples/s, MRR {res.get('mrr', float('nan')):.4f}",
          file=sys.stderr)
    if a.json:
        text = json.dumps(res)
        if a.json == "-":
            print(text)
        else:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
