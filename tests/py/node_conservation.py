"""Run by test_multinode.py under `psrun -n 2`: every node pushes known
integer updates (sync and async, from two Python threads) into shared keys;
after a barrier every node checks that the table holds exactly their sum."""
import sys
import threading

import numpy as np

import psmem

K, V, ROUNDS = 64, 8, 300

w = psmem.init()
N, me = w.num_nodes, w.node_id
t = w.table(K, V)
c = w.table(N, 1)  # counts of pushes, one key per node


def worker(tid):
    rng = np.random.default_rng([me, tid])
    mine = np.zeros((K, V), np.float64)
    for r in range(ROUNDS):
        n = int(rng.integers(1, K))
        keys = rng.choice(K, size=n, replace=False).astype(np.int64)
        upd = rng.integers(-3, 4, size=(n, V)).astype(np.float32)
        if r % 2:
            t.push(keys, upd)
        else:
            t.push_async(keys, upd).wait()
        mine[keys] += upd
    sums[tid] = mine


sums = [None, None]
ths = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
for th in ths:
    th.start()
for th in ths:
    th.join()
c.push(np.array([me], np.int64), np.ones((1, 1), np.float32))
# every node's share, exactly: each node recomputes the others' streams
expect = np.zeros((K, V), np.float64)
for node in range(N):
    for tid in range(2):
        rng = np.random.default_rng([node, tid])
        for r in range(ROUNDS):
            n = int(rng.integers(1, K))
            keys = rng.choice(K, size=n, replace=False).astype(np.int64)
            upd = rng.integers(-3, 4, size=(n, V)).astype(np.float32)
            expect[keys] += upd
w.barrier()
got = t.pull(np.arange(K, dtype=np.int64))
counts = c.pull(np.arange(N, dtype=np.int64))
own = sums[0] + sums[1]  # this node's share, as it counted it
ok = (np.array_equal(got.astype(np.float64), expect) and bool(np.all(counts == 1))
      and bool(np.any(own != 0)) and bool(np.any(own != expect)))
sys.stdout.write(f"node {me}/{N} exact={ok} total={got.sum():.0f} expect={expect.sum():.0f} nonzero={int((expect != 0).sum())}\n")
sys.stdout.flush()  # one write: the nodes share the pipe
w.barrier()
w.finalize()
sys.exit(0 if ok else 1)
