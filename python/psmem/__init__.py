"""psmem: a shared-memory parameter server, from Python.

    import numpy as np, psmem
    w = psmem.init()                      # joins the psrun job, or a one-node job
    t = w.table(1000, 16, init="uniform", init_a=0.1, rule="adagrad", lr=0.1)
    keys = np.array([3, 7, 42], dtype=np.int64)
    rows = t.pull(keys)                   # float32 (3, 16)
    t.push(keys, np.ones((3, 16), np.float32))
    w.barrier()
    w.finalize()

Every call writes into / reads from the caller's buffers (numpy arrays, CPU
torch tensors) without copies, and releases the GIL while it runs.  Errors
of the store raise psmem.Error (.code, .strerror); wrong dtypes, shapes or
strides raise TypeError / ValueError naming what was expected.
"""
import atexit as _atexit

from ._psmem import (  # noqa: F401
    Error, World, Table, Handle, init, strerror,
    EKEY, ETABLE, EFULL, ENOSEG, EMISMATCH, EDEAD, ETOOMANY, ENOMEMSEG, EHANDLE,
    ERCAP, ERULE, EHOGWILD, ECKPT, ESHAPE, EHOSTDOWN,
)

__all__ = ["init", "Error", "World", "Table", "Handle", "strerror"]


def _finalize_at_exit():
    # A program that does not call finalize() still leaves the job cleanly.
    from . import _psmem
    w = getattr(_psmem, "_world_for_exit", None)
    if w is not None:
        try:
            w.finalize()
        except Exception:
            pass


_init_c = init


def init(threads=None):
    """init(threads=None) -> World: joins the job psrun started (PSMEM_* in
    the environment), or creates a private one-node job.  threads: worker
    threads per node (every node the same; default psrun's -t, or 1)."""
    w = _init_c(threads)
    from . import _psmem
    _psmem._world_for_exit = w
    return w


_atexit.register(_finalize_at_exit)
