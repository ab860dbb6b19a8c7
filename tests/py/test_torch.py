"""psmem.torch: Embedding and DenseParameters against plain PyTorch."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (Debian: python3-torch)")
import psmem.torch as pt  # noqa: E402

from conftest import ROOT, run_psrun  # noqa: E402


def _loss(emb_out, proj):
    return ((emb_out @ proj) ** 2).sum() + emb_out[..., 0].sum()


@pytest.mark.parametrize("rows", [
    [[1, 3, 3], [7, 1, 19]],  # repeated rows: their gradients are summed
    [[19, 3, 7], [1, 0, 12]],  # distinct, unsorted: the direct path
])
def test_embedding_gradients_equal_torch_embedding(world, rows):
    t = world.table(20, 6, init="uniform", init_a=0.5, seed=3)
    keys = np.arange(20, dtype=np.int64)
    w0 = t.pull(keys).copy()
    emb = pt.Embedding(t)
    ref = torch.nn.Embedding(20, 6)
    ref.weight.data.copy_(torch.from_numpy(w0))
    idx = torch.tensor(rows)
    proj = torch.linspace(-1, 1, 6)
    out = emb(idx)
    assert out.shape == (2, 3, 6)
    assert torch.equal(out, ref(idx))
    _loss(out, proj).backward()
    _loss(ref(idx), proj).backward()
    # rule "sum": the table received exactly the rows' gradients
    pushed = t.pull(keys) - w0
    np.testing.assert_allclose(pushed, ref.weight.grad.numpy(), rtol=0, atol=2e-6)
    untouched = [k for k in range(20) if k not in idx.reshape(-1).tolist()]
    assert np.all(pushed[untouched] == 0)
    assert not list(emb.parameters())  # nothing for a torch optimizer


def test_embedding_with_sgd_rule_takes_the_torch_sgd_step(world):
    t = world.table(8, 4, init="uniform", init_a=1.0, seed=9, rule="sgd", lr=0.5)
    keys = np.arange(8, dtype=np.int64)
    w0 = t.pull(keys).copy()
    ref = torch.nn.Embedding(8, 4)
    ref.weight.data.copy_(torch.from_numpy(w0))
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    idx = torch.tensor([0, 2, 2, 5])
    proj = torch.arange(4.0)
    _loss(pt.Embedding(t)(idx), proj).backward()
    _loss(ref(idx), proj).backward()
    opt.step()
    np.testing.assert_allclose(t.pull(keys), ref.weight.detach().numpy(), rtol=0, atol=1e-6)


def test_embedding_without_grad_only_pulls(world):
    t = world.table(5, 2, init="constant", init_a=1.5)
    with torch.no_grad():
        out = pt.Embedding(t)(torch.tensor([4, 0]))
    assert out.tolist() == [[1.5, 1.5], [1.5, 1.5]]
    with pytest.raises(TypeError, match="int64"):
        pt.Embedding(t)(torch.tensor([1.0]))


def test_dense_parameters_pull_and_push(world):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    init = [p.detach().clone() for p in model.parameters()]
    dp = pt.DenseParameters(world, model, rule="sum", chunk=5)
    for p in model.parameters():
        p.data.zero_()
    dp.pull()  # the table holds the initial values (assigned by node 0)
    for p, q in zip(model.parameters(), init):
        assert torch.equal(p.data, q)
    model(torch.ones(1, 3)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    dp.push_grads()
    dp.pull()
    for p, q, g in zip(model.parameters(), init, grads):
        torch.testing.assert_close(p.data, q + g, rtol=0, atol=1e-6)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    dp.push_delta(0.5)
    before = [p.detach().clone() for p in model.parameters()]
    dp.pull()
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.data, b - 0.5, rtol=0, atol=1e-6)


def test_dense_example_trains_under_psrun_two_nodes(tmp_path):
    js = tmp_path / "dense.json"
    rc, out, err = run_psrun(2, os.path.join(ROOT, "apps", "py", "dense.py"), "--model", "mlp", "--epochs", "4",
                             "--sync", "ssp:1", "--partition", "rr", "--json", str(js), timeout=180)
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    import json
    res = json.loads(js.read_text())
    assert res["nodes"] == 2 and res["shard_rows"] == 719  # node 0 of rr: rows 0, 2, ..., 1436 and res["sync"] == "ssp:1"
    assert res["test_accuracy"] >= 0.9, res
