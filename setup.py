"""Build hook: the kim_gnn op library (csrc/ -> kim_gnn/lib/libkim_gnn_ops.so).

Everything else is in pyproject.toml. The library is built with the torch of
the build environment, so install with ``--no-build-isolation`` after torch
(build isolation would fetch another torch). Without torch or a C++ compiler
the install goes on without the library and says so: the default (aten-only)
models do not need it; ``kim-gnn convert --kernels kim_gnn`` does.
"""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithOps(build_py):
    def run(self):
        build_op_library()
        super().run()


def build_op_library():
    if os.environ.get("KIM_GNN_SKIP_OPS") == "1":
        print("kim-gnn: op library not built (KIM_GNN_SKIP_OPS=1)", file=sys.stderr)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    ops = runpy.run_path(os.path.join(here, "csrc", "build_ops.py"))
    try:
        info = ops["build"]()
    except ops["BuildError"] as exc:
        print(f"kim-gnn: warning: the op library was not built ({exc}); kim-gnn works without it, "
              "but `kim-gnn convert --kernels kim_gnn` needs it", file=sys.stderr)
        return
    print(ops["describe"](info), file=sys.stderr)


setup(cmdclass={"build_py": BuildPyWithOps})
