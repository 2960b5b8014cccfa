"""Adding an architecture needs no edit of the core: a toy adapter from
outside the package (tests/plugins/toy_kim_adapter.py) registers through an
entry point or ``register_adapter`` and gets convert, verify, info, example
and a public ``convert_*`` name."""

import os
import shutil
import subprocess
import sys

import pytest

import kim_gnn
from kim_gnn.adapters import (Adapter, adapter_named, detect_adapter, register_adapter, registered_adapters,
                              unregister_adapter)
from kim_gnn.errors import KimGnnError

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")


def test_builtin_adapters_register_themselves():
    names = [a.name for a in registered_adapters()]
    assert "nequip" in names and "mace" in names
    assert "head" in adapter_named("mace").options and "head" not in adapter_named("nequip").options
    for adapter in registered_adapters():
        for name, target in adapter.exports.items():
            assert name.startswith("convert_") and ":" in target


@pytest.fixture
def toy_in_process(monkeypatch):
    monkeypatch.syspath_prepend(PLUGINS)
    import toy_kim_adapter

    register_adapter(toy_kim_adapter.ADAPTER)
    yield toy_kim_adapter
    unregister_adapter("toy")
    kim_gnn.__dict__.pop("convert_toy", None)


def test_register_adapter_in_process(toy_in_process, tmp_path):
    model = toy_in_process.write_example(str(tmp_path / "m.toylj"))
    assert detect_adapter(model).name == "toy"
    staged = kim_gnn.convert(model)
    assert staged.kim_gnn_spec.architecture == "toy"
    from kim_gnn import convert_toy

    assert convert_toy is toy_in_process.convert_toy
    report = kim_gnn.verify(model, staged, properties=False)
    assert report.passed, report.summary()
    with pytest.raises(KimGnnError, match="already registered"):
        register_adapter(Adapter("toy", lambda p: False, None, None, None))
    with pytest.raises(KimGnnError, match="do not apply to toy"):
        kim_gnn.convert(model, head="x")


def _toy_distribution(root):
    """The toy adapter installed as a distribution with an entry point."""
    root.mkdir()
    shutil.copy(os.path.join(PLUGINS, "toy_kim_adapter.py"), root / "toy_kim_adapter.py")
    info = root / "toy_kim_adapter-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kim-adapter\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kim_gnn.adapters]\ntoy = toy_kim_adapter:ADAPTER\n")
    return root


def test_entry_point_adapter_gets_the_whole_cli(tmp_path):
    plugin = _toy_distribution(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert "toy Lennard-Jones" in cli("convert", "--help")
    out = cli("example", "--architecture", "toy", "--layers", "1", "-q")
    assert "PASSED" in out
    model = work / "kim-gnn-example-toy" / "model.toylj"
    cli("convert", str(model), "-o", "ToyLJ__MO_000000000000_000")
    assert "PASSED" in cli("verify", str(model), "ToyLJ__MO_000000000000_000", "-q", "--no-properties")
    assert "toy" in cli("info", str(model))
    code = "from kim_gnn import convert_toy; import kim_gnn; print('convert_toy' in kim_gnn.__all__)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == "True", proc.stderr
