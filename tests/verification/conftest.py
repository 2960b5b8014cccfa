"""Fixtures of the harness tests: the toy plug-in adapter (tests/plugins)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins"))


@pytest.fixture
def toy_source(tmp_path):
    """A toy model file, with the toy adapter registered for the test."""
    import toy_kim_adapter as toy

    import kim_gnn
    from kim_gnn.adapters import register_adapter, unregister_adapter

    register_adapter(toy.ADAPTER)
    yield toy.write_example(str(tmp_path / "m.toygnn"))
    unregister_adapter("toy")
    kim_gnn.__dict__.pop("convert_toy", None)
