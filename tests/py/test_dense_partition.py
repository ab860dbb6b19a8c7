"""apps/py/dense.py's data partitioning (SystemML paramserv's schemes)."""
import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("dense", os.path.join(ROOT, "apps", "py", "dense.py"))
dense = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dense)


@pytest.mark.parametrize("scheme", ["dc", "rr", "dr"])
@pytest.mark.parametrize("n, nodes", [(1437, 2), (10, 3), (7, 4)])
def test_disjoint_schemes_split_every_row_once(scheme, n, nodes):
    shards = [dense.partition(n, nodes, r, scheme, seed=3) for r in range(nodes)]
    allrows = np.concatenate(shards)
    assert sorted(allrows.tolist()) == list(range(n))  # disjoint and complete
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_dc_is_contiguous_rr_round_robin_dr_random():
    assert dense.partition(10, 3, 1, "dc", 1).tolist() == [3, 4, 5]
    assert dense.partition(10, 3, 1, "rr", 1).tolist() == [1, 4, 7]
    dr = dense.partition(100, 2, 0, "dr", 1)
    assert dr.tolist() != list(range(50))
    assert dr.tolist() == dense.partition(100, 2, 0, "dr", 1).tolist()  # seeded
    assert dr.tolist() != dense.partition(100, 2, 0, "dr", 2).tolist()


def test_overlap_reshuffle_gives_every_node_all_rows_in_its_own_order():
    shards = [dense.partition(100, 2, r, "or", seed=1) for r in range(2)]
    for s in shards:
        assert sorted(s.tolist()) == list(range(100))
    assert shards[0].tolist() != shards[1].tolist()
    assert shards[0].tolist() != list(range(100))


def test_bad_scheme_and_rank_are_refused():
    with pytest.raises(ValueError, match="dc, rr, dr, or"):
        dense.partition(10, 2, 0, "xx", 1)
    with pytest.raises(ValueError, match="rank"):
        dense.partition(10, 2, 2, "dc", 1)
