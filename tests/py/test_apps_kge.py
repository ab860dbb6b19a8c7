"""apps/py/kge.py on a tiny generated graph: both modes train and evaluate."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="torch not installed (Debian: python3-torch)")
from conftest import PYDIR, ROOT, run_psrun  # noqa: E402

KGE = os.path.join(ROOT, "apps", "py", "kge.py")
ARGS = ["--dim", "16", "--batch", "16", "--neg", "8", "--epochs", "25", "--reg", "0", "--init", "0.1"]


@pytest.fixture(scope="module")
def tinykg(tmp_path_factory):
    """40 entities, 3 relations, 120 triples (tail = f(head, relation));
    the test triples are training triples: MRR measures the fit, ~0.1 at
    random, 1 once learnt."""
    d = tmp_path_factory.mktemp("tinykg")
    trip = [(h, r, (h * (r + 2) + r) % 40) for h in range(40) for r in range(3)]
    lines = [f"e{h}\tr{r}\te{t}\n" for h, r, t in trip]
    lines = lines[::7] + [x for i, x in enumerate(lines) if i % 7]  # spread the relations
    (d / "train.txt").write_text("".join(lines))
    (d / "valid.txt").write_text("".join(lines[30:40]))
    (d / "test.txt").write_text("".join(lines[:30]) + "eX\tr0\te1\n")  # one unknown entity: skipped
    return str(d)


def test_kge_psmem_two_nodes_learns_the_tiny_graph(tinykg, tmp_path):
    js = tmp_path / "kge.json"
    rc, out, err = run_psrun(2, KGE, "--dataset", tinykg, *ARGS, "--json", str(js), timeout=180)
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    res = json.loads(js.read_text())
    assert res["mode"] == "psmem" and res["workers"] == 2
    assert res["train_triples"] == 120 and res["queries"] == 60 and res["test_skipped"] == 1
    assert res["mrr"] > 0.6, res


def test_kge_torch_hogwild_baseline_learns_the_tiny_graph(tinykg, tmp_path):
    js = tmp_path / "kge.json"
    env = dict(os.environ, PYTHONPATH=PYDIR)
    p = subprocess.run([sys.executable, KGE, "--dataset", tinykg, "--mode", "torch", "--workers", "2",
                        "--torch-adagrad", "element", *ARGS, "--json", str(js)],
                       capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads(js.read_text())
    assert res["mode"] == "torch" and res["workers"] == 2 and res["queries"] == 60
    assert res["mrr"] > 0.6, res


def test_kge_refuses_a_malformed_line(tmp_path):
    for f in ("train.txt", "valid.txt", "test.txt"):
        (tmp_path / f).write_text("a\tr\tb\n")
    (tmp_path / "train.txt").write_text("a\tr\tb\nc\td\n")
    env = dict(os.environ, PYTHONPATH=PYDIR)
    p = subprocess.run([sys.executable, KGE, "--dataset", str(tmp_path), "--no-eval"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode != 0
    assert "train.txt:2: expected 3 tab-separated" in p.stderr
