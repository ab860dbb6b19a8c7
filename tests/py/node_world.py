"""Run by test_multinode.py under psrun: prints this node's view of the job,
and checks the clocks and a collective table under SSP."""
import sys

import numpy as np

import psmem

w = psmem.init()
w.set_consistency("ssp", 1)
t = w.table(4, 1, rule="sum")
for _ in range(5):
    t.push(np.array([w.node_id], np.int64), np.ones((1, 1), np.float32))
    w.clock()
w.barrier()
v = t.pull(np.arange(4, dtype=np.int64))[:, 0].tolist()
sys.stdout.write(f"node {w.node_id} of {w.num_nodes} host {w.host_id} of {w.num_hosts} values {v}\n")
sys.stdout.flush()  # one write: the nodes share the pipe
w.finalize()
