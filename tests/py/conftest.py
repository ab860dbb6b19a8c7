"""Shared fixtures of the Python tests (tests/py/run.sh runs them)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
PSRUN = os.path.join(BUILD, "bin", "psrun")
PYDIR = os.path.join(BUILD, "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)


@pytest.fixture(scope="session")
def world():
    """The one-node job of this pytest process (one world per process)."""
    import psmem
    return psmem.init()


def run_psrun(n, script, *args, timeout=120, env_extra=None):
    """Runs `psrun -n n python3 script args` and returns (rc, stdout, stderr)."""
    if not os.access(PSRUN, os.X_OK):
        pytest.fail(f"{PSRUN} not built (make all)")
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    p = subprocess.run([PSRUN, "-n", str(n), sys.executable, script, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr
