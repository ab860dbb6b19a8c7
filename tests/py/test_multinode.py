"""The binding in a psrun job of 2 nodes."""
import os
import re

from conftest import run_psrun

HERE = os.path.dirname(os.path.abspath(__file__))


def test_conservation_under_psrun_two_nodes():
    rc, out, err = run_psrun(2, os.path.join(HERE, "node_conservation.py"))
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    # the nodes share psrun's stdout: find the reports, not lines
    got = sorted(re.findall(r"node (\d)/(\d) exact=(\w+)", out))
    assert got == [("0", "2", "True"), ("1", "2", "True")], out


def test_world_and_clocks_under_psrun_two_nodes():
    rc, out, err = run_psrun(2, os.path.join(HERE, "node_world.py"))
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    got = sorted(re.findall(r"node (\d) of (\d) host (\d) of (\d) values (.*)", out))
    assert got == [("0", "2", "0", "1", "[5.0, 5.0, 0.0, 0.0]"), ("1", "2", "0", "1", "[5.0, 5.0, 0.0, 0.0]")], out
