"""When a test may skip for a missing component, and when it must fail.

In CI (scripts/test.sh as root sets ``KIM_GNN_TESTS_REQUIRED=1`` for every
stage and ``KIM_GNN_E2E_REQUIRED=1`` for the end-to-end one) every component
is installed, so a test that cannot run for a missing one (an architecture
package, the op library, kim-edn, hypothesis, matplotlib, a compiler, the
KIM API) fails and says what is missing. Elsewhere it skips with that reason
(the scripts print skip reasons: ``-rs``).

No skip is legitimate in CI: a required run fails on any skip (tests/conftest.py).
Tests that cannot run on this machine by design are deselected by marker
instead, never skipped: the CUDA tests without a CUDA device (``cuda``) and
their twins with one (``no_cuda``), counted in one summary line; and the
tests of one environment when the other runs (the ``legacy_env`` /
``modern_env`` markers and ``--stage``).
"""

import importlib
import os

import pytest

#: The environment variables that make a missing component a failure.
REQUIRED_VARIABLES = ("KIM_GNN_TESTS_REQUIRED", "KIM_GNN_E2E_REQUIRED")


def required() -> bool:
    """Whether this run must have every component (CI)."""
    return any(os.environ.get(name) == "1" for name in REQUIRED_VARIABLES)


def missing(reason: str, module_level: bool = False):
    """A component the test needs is missing: skip with ``reason``, or fail
    with it where every component is required."""
    if required():
        pytest.fail(f"a required component is missing: {reason} "
                    f"({' or '.join(f'{v}=1' for v in REQUIRED_VARIABLES)}: nothing may skip for it)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def require_import(name: str, reason: str = "", module_level: bool = False):
    """``pytest.importorskip`` that fails where every component is required."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} cannot be imported ({exc})" + (f"; {reason}" if reason else ""), module_level)


def require_op_library(module_level: bool = False) -> None:
    """The kim_gnn op library (kim_gnn/lib/libkim_gnn_ops.so) must be built."""
    from kim_gnn import kernels

    if not kernels.available():
        missing(f"the kim_gnn op library is not built ({kernels.BUILD_COMMAND})", module_level)
