"""The Python side of bench/py_pull.sh: t.pull(keys, out) of K keys x V
floats in a one-node job, timed as bench/py_pull.c times ps_pull_sync
(same table, keys, repetitions; best of 5 rounds)."""
import sys
import time

import numpy as np

import psmem

NKEYS = 100000
K, V, REPS = (int(x) for x in (sys.argv[1:4] + ["1000", "100", "20000"][len(sys.argv[1:4]):]))
w = psmem.init()
t = w.table(NKEYS, V, init="constant", init_a=1.0)
keys = (np.arange(K, dtype=np.int64) * 7919) % NKEYS
out = np.empty((K, V), np.float32)
pull = t.pull
best = best_cpu = float("inf")
for _ in range(5):
    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(REPS):
        pull(keys, out)
    best = min(best, (time.perf_counter_ns() - t0) / REPS)
    best_cpu = min(best_cpu, (time.thread_time_ns() - c0) / REPS)
assert out[-1, -1] == 1.0
print(f"py_pull_python keys={K} value_len={V} reps={REPS} cpu_ns_per_call={best_cpu:.0f} ns_per_call={best:.0f}")
w.finalize()
