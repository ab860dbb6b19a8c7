"""pip install ./python  (from the psmem repository root).

Builds the psmem extension from python/psmem/_psmem.c and the library's
sources (../lib, every .c below it), without jemalloc: private allocations
go through malloc (lib's PS_NO_JEMALLOC path), because jemalloc's
initial-exec TLS cannot be loaded into a running interpreter.  lib/launch/
(psrun's bridge) is not part of the library and is left out.  Needs the
build dependencies of psmem (make deps): pkg-config, liburcu, libnuma,
zlib.  Works offline:

    python3 -m pip install --no-build-isolation --no-index ./python
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.environ.get("PSMEM_LIB_SRC", os.path.join(HERE, "..", "lib"))
LIB = os.path.abspath(LIB)
if not os.path.exists(os.path.join(LIB, "psmem.h")):
    raise SystemExit(f"psmem: {LIB}/psmem.h not found: run pip from the psmem repository "
                     "(pip install ./python) or set PSMEM_LIB_SRC to its lib/ folder")

PKGS = ["liburcu-memb", "liburcu-cds", "numa"]


def pkg_config(flag):
    try:
        out = subprocess.run(["pkg-config", flag] + PKGS, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"psmem: pkg-config {flag} {' '.join(PKGS)} failed ({e}): run 'make deps'")
    return shlex.split(out)


# Every .c of the library's layers (lib/base, core, persist, net; not
# lib/launch, which is psrun's), and every folder holding a header as an
# include path.
lib_src = sorted(c for c in glob.glob(os.path.join(LIB, "**", "*.c"), recursive=True)
                 if os.path.relpath(c, LIB).split(os.sep)[0] != "launch")
inc_dirs = sorted({os.path.dirname(h) for h in glob.glob(os.path.join(LIB, "**", "*.h"), recursive=True)})

ext = Extension(
    "psmem._psmem",
    sources=["psmem/_psmem.c"] + lib_src,
    include_dirs=inc_dirs,
    define_macros=[("_GNU_SOURCE", None), ("PS_NO_JEMALLOC", "1")],
    extra_compile_args=["-std=gnu11", "-O2", "-pthread", "-fvisibility=hidden"] + pkg_config("--cflags"),
    extra_link_args=pkg_config("--libs") + ["-lz", "-lm", "-pthread"],
)

setup(
    name="psmem",
    version="0.1",
    description="psmem, a shared-memory parameter server: Python binding",
    packages=["psmem"],
    ext_modules=[ext],
    python_requires=">=3.10"  # PyModule_AddObjectRef,
)
