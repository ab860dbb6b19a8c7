"""The extension module: zero-copy buffers, argument errors, the GIL,
error codes as exceptions, asynchronous handles."""
import gc
import os
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import psmem


def keys_of(n, start=0):
    return np.arange(start, start + n, dtype=np.int64)


# ----------------------------------------------------------- zero copy

def test_pull_into_out_returns_it_writes_it_allocates_nothing(world):
    t = world.table(2000, 100, init="constant", init_a=2.5)
    k = keys_of(1000, 500)
    out = np.full((1000, 100), np.nan, dtype=np.float32)
    t.pull(k, out)  # warm: first-call registration of this thread
    out[:] = np.nan
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        ret = t.pull(k, out)
        peak_with_out = tracemalloc.get_traced_memory()[1] - base
        del ret
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fresh = t.pull(k)
        peak_alloc = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert t.pull(k, out) is out
    assert np.all(out == 2.5)
    # numpy reports its data buffers to tracemalloc: a pull without out
    # allocates its 400 kB, one into out nothing of the kind
    assert peak_alloc >= 1000 * 100 * 4
    assert peak_with_out < 4096, f"pull into out allocated {peak_with_out} bytes"
    assert fresh.shape == (1000, 100) and fresh.dtype == np.float32 and np.all(fresh == 2.5)


def test_push_reads_the_callers_buffer(world):
    t = world.table(10, 3)
    k = np.array([1, 4], dtype=np.uint64)
    upd = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    t.push(k, upd)
    t.push(k, upd)
    assert t.pull(k).tolist() == [[2, 4, 6], [8, 10, 12]]


def test_torch_tensor_out_is_written_in_place(world):
    torch = pytest.importorskip("torch", reason="torch not installed (python3-torch)")
    t = world.table(10, 4, init="constant", init_a=-1.0)
    out = torch.zeros(3, 4)
    ptr = out.data_ptr()
    ret = t.pull(torch.tensor([0, 5, 9]), out)
    assert ret is out and out.data_ptr() == ptr
    assert torch.all(out == -1.0)


# ------------------------------------------------------ argument errors

@pytest.mark.parametrize("keys, exc, words", [
    (np.arange(3, dtype=np.int32), TypeError, "int64 or uint64"),
    (np.arange(3, dtype=np.float64), TypeError, "int64 or uint64"),
    (np.arange(6, dtype=np.int64).reshape(2, 3), ValueError, "1-D"),
    (np.arange(6, dtype=np.int64)[::2], ValueError, "C-contiguous"),
    ([0, 1, 2], TypeError, "buffer protocol"),
])
def test_bad_keys_are_refused(world, keys, exc, words):
    t = world.table(10, 2)
    with pytest.raises(exc, match=words):
        t.pull(keys)
    with pytest.raises(exc, match=words):
        t.push(keys, np.zeros((3, 2), np.float32))


@pytest.mark.parametrize("out, exc, words", [
    (np.zeros((3, 2), np.float64), TypeError, "float32"),
    (np.zeros((3, 2), np.float16), TypeError, "float32"),
    (np.zeros((3, 3), np.float32), ValueError, r"shape \(3, 2\)"),
    (np.zeros((6,), np.float32), ValueError, r"shape \(3, 2\)"),
    (np.zeros((2, 3), np.float32), ValueError, r"shape \(3, 2\)"),
    (np.zeros((3, 4), np.float32)[:, ::2], ValueError, "C-contiguous"),
    (np.asfortranarray(np.zeros((3, 2), np.float32)), ValueError, "C-contiguous"),
])
def test_bad_values_are_refused_and_not_written(world, out, exc, words):
    t = world.table(10, 2, init="constant", init_a=7.0)
    k = keys_of(3)
    before = out.copy()
    with pytest.raises(exc, match=words):
        t.pull(k, out)
    assert np.array_equal(out, before)  # nothing written, nothing converted
    with pytest.raises(exc, match=words):
        t.push(k, out)
    assert np.all(t.pull(k) == 7.0)  # nothing pushed


def test_read_only_out_is_refused(world):
    t = world.table(10, 2)
    out = np.zeros((2, 2), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        t.pull(keys_of(2), out)
    t.push(keys_of(2), out)  # a read-only buffer is fine for push


def test_bad_table_options_are_refused(world):
    with pytest.raises(ValueError, match='"sum", "assign", "sgd", "adagrad", "adam"'):
        world.table(10, 2, rule="rmsprop")
    with pytest.raises(ValueError, match="zeros"):
        world.table(10, 2, init="normal")
    with pytest.raises(ValueError, match="lr"):
        world.table(10, 2, rule="sgd")
    with pytest.raises(ValueError, match="value_len"):
        world.table(10, 0)
    with pytest.raises(ValueError, match="num_keys: expected >= 1, got -1"):
        world.table(-1, 2)


# ---------------------------------------------------- errors as codes

def test_key_out_of_range_raises_error_with_code(world):
    t = world.table(10, 2)
    with pytest.raises(psmem.Error) as ei:
        t.pull(np.array([3, 10], dtype=np.int64))
    e = ei.value
    assert e.code == psmem.EKEY == -33000
    assert e.strerror == psmem.strerror(psmem.EKEY)
    assert psmem.strerror(psmem.EKEY) in str(e)
    assert isinstance(e, RuntimeError)
    with pytest.raises(psmem.Error) as ei:
        t.push(np.array([11], dtype=np.int64), np.zeros((1, 2), np.float32))
    assert ei.value.code == psmem.EKEY


def test_store_refusals_are_errors_with_their_codes(world, tmp_path):
    with pytest.raises(psmem.Error) as ei:
        world.table(10, 2, rule="adagrad", lr=0.1, hogwild=True)
    assert ei.value.code == psmem.EHOGWILD
    bad = tmp_path / "not-a-checkpoint"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(psmem.Error) as ei:
        world.restore(str(bad))
    assert ei.value.code == psmem.ECKPT
    t = world.table(10, 2, repl_max=1)
    assert t.replicate(np.array([1], dtype=np.int64)) == 1
    with pytest.raises(psmem.Error) as ei:
        t.replicate(np.array([2, 3], dtype=np.int64))
    assert ei.value.code == psmem.ERCAP


# ---------------------------------------------------------------- GIL

def _progress_inside_calls(call, rounds=40):
    """Runs call() `rounds` times while another thread counts; returns how
    many calls saw the counter advance while they ran.  The switch interval
    is set far beyond the test's length, so the counting thread gets the GIL
    only when this thread releases it: inside call() or never."""
    state = {"n": 0, "stop": False}
    started = threading.Event()

    def counter():
        started.set()
        while not state["stop"]:
            state["n"] += 1
            time.sleep(0)  # a yield: lets the caller take the GIL back

    old = sys.getswitchinterval()
    # set before the counter first waits for the GIL: a wait begun under
    # the old interval would force one switch when it times out
    sys.setswitchinterval(100.0)
    th = threading.Thread(target=counter)
    try:
        th.start()
        started.wait()
        seen = 0
        for _ in range(rounds):
            before = state["n"]
            call()
            seen += state["n"] != before
    finally:
        sys.setswitchinterval(old)
        state["stop"] = True
        th.join()
    return seen


def test_gil_is_released_inside_a_long_pull(world):
    t = world.table(200000, 32, init="constant", init_a=1.0)
    k = keys_of(200000)
    out = np.empty((200000, 32), np.float32)
    t.pull(k, out)
    assert _progress_inside_calls(lambda: t.pull(k, out)) >= 2
    assert _progress_inside_calls(lambda: t.push(k, out)) >= 2


def test_gil_probe_sees_a_call_that_holds_the_gil():
    # the same probe around a C call that keeps the GIL (a builtin loop of
    # a few ms, like a pull that forgot to release it): no progress, so
    # the test above can fail
    assert _progress_inside_calls(lambda: sum(range(300000)), rounds=20) == 0


# ------------------------------------------------------------- handles

def test_async_pull_keeps_its_buffers_alive(world):
    t = world.table(100, 8, init="constant", init_a=3.0)
    k = keys_of(50)
    out = np.zeros((50, 8), np.float32)
    refs = sys.getrefcount(out), sys.getrefcount(k)
    h = t.pull_async(k, out)
    assert sys.getrefcount(out) > refs[0] and sys.getrefcount(k) > refs[1]
    oid = id(out)
    del out, k
    gc.collect()
    ret = h.wait()
    assert id(ret) == oid and np.all(ret == 3.0)
    with pytest.raises(RuntimeError, match="already waited"):
        h.wait()
    assert h.waited


def test_async_calls_check_their_buffers_first(world):
    t = world.table(10, 2)
    with pytest.raises(TypeError, match="float32"):
        t.pull_async(keys_of(3), np.zeros((3, 2), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        t.push_async(keys_of(3), np.zeros((3, 4), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="int64"):
        t.localize(np.arange(3, dtype=np.int16))


def test_async_push_and_localize(world):
    t = world.table(100, 2)
    k = keys_of(10)
    h = t.push_async(k, np.ones((10, 2), np.float32))
    assert h.wait() is None
    assert t.localize(k).wait() is None
    assert np.all(t.pull(k) == 1.0)
    # a dropped handle is waited by the collector: the push still lands once
    t.push_async(k, np.ones((10, 2), np.float32))
    gc.collect()
    assert np.all(t.pull(k) == 2.0)


def test_world_attributes_of_a_one_node_job(world):
    assert (world.node_id, world.num_nodes, world.host_id, world.num_hosts) == (0, 1, 0, 1)
    assert world.num_threads >= 1
    assert psmem.init() is world  # one world per process


def test_checkpoint_and_restore(world, tmp_path):
    t = world.table(20, 3, init="uniform", init_a=1.0, seed=5)
    k = keys_of(20)
    saved = t.pull(k).copy()
    path = str(tmp_path / "ckpt")
    world.checkpoint(path)
    t.push(k, np.ones((20, 3), np.float32))
    assert world.restore(path) >= 1
    assert np.array_equal(t.pull(k), saved)
