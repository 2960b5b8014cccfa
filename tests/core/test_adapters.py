"""Adding an architecture needs no edit of the core: a toy two-layer adapter
from outside the package (tests/plugins/toy_kim_adapter.py) registers through
an entry point or ``register_adapter``, runs on the core runtime (pruned or
not, aten or the kim_gnn kernels) and gets convert, verify against its numpy
original, info, example and a public ``convert_*`` name. The adapters
declare the packages a converted model must run without and their
environment hints (docs/adding-an-adapter.md)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from skip_policy import missing

import kim_gnn
from kim_gnn.adapters import (Adapter, adapter_named, detect_adapter, register_adapter, registered_adapters,
                              unregister_adapter)
from kim_gnn.errors import KimGnnError

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
PLUGINS = os.path.join(TESTS, "plugins")


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
    model = toy_in_process.write_example(str(tmp_path / "m.toygnn"))
    assert detect_adapter(model).name == "toy"
    staged = kim_gnn.convert(model)
    assert staged.spec.architecture == "toy" and staged.spec.num_layers == 2
    from kim_gnn import convert_toy

    assert convert_toy is toy_in_process.convert_toy
    with pytest.raises(KimGnnError, match="already registered"):
        register_adapter(Adapter("toy", lambda p: False, None, None, None))
    with pytest.raises(KimGnnError, match="do not apply to toy"):
        kim_gnn.convert(model, head="x")
    with pytest.raises(KimGnnError, match="--layers 2"):
        toy_in_process.write_example(str(tmp_path / "m3.toygnn"), num_layers=3)


def test_adapters_declare_packages_and_environment(toy_in_process):
    from kim_gnn.adapters import blocked_import_names, environment_hint

    blocked = blocked_import_names()
    for name in ("nequip", "e3nn", "mace", "allegro", "torch_geometric", "toy_kim_adapter"):
        assert name in blocked
    assert "legacy environment" in environment_hint("mace") and "scripts/setup.sh" in environment_hint("nequip")
    assert "setup_modern.sh" in environment_hint("nequip-modern")
    assert "toy plug-in" in environment_hint("toy")
    from kim_gnn.nequip.modern import load

    assert load.LEGACY_ENV_HINT == environment_hint("nequip")
    assert load.MODERN_ENV_HINT == environment_hint("nequip-modern")
    with pytest.raises(TypeError, match="import_names"):
        register_adapter(Adapter("bad", lambda p: False, None, None, None, import_names="bad"))
    with pytest.raises(KimGnnError, match="no adapter for architecture 'nope'"):
        environment_hint("nope")


def test_fresh_worker_blocks_every_registered_adapters_packages(toy_in_process, tmp_path):
    """verify's fresh process blocks the union of the registered adapters'
    import_names, a plug-in's included: an adapter that declares ``ase``
    (which the worker needs) makes it fail, naming the blocked module."""
    from ase import Atoms

    model = toy_in_process.write_example(str(tmp_path / "m.toygnn"))
    staged = kim_gnn.convert(model)
    dimer = Atoms("Si2", positions=[(0, 0, 0), (0, 0, 2.5)])
    assert kim_gnn.verify(model, staged, structures=[dimer]).passed
    register_adapter(Adapter("blocks-ase", lambda p: False, None, None, None, import_names=("ase",)))
    try:
        with pytest.raises(KimGnnError, match="ase is blocked: a converted model must run without it"):
            kim_gnn.verify(model, staged, structures=[dimer])
    finally:
        unregister_adapter("blocks-ase")


@pytest.fixture
def toy_models(toy_in_process, tmp_path):
    from kim_gnn import kernels

    model = toy_in_process.write_example(str(tmp_path / "m.toygnn"))
    options = {"pruned": {}, "unpruned": {"prune": False}}
    if kernels.available():
        options["kernels"] = {"kernels": "kim_gnn"}
    return model, {name: kim_gnn.convert(model, **opts) for name, opts in options.items()}


def test_toy_runs_on_the_core_runtime(toy_models):
    """Two layers on the core runtime: pruned (aten and kernels) and unpruned
    models pass the whole harness against the numpy/ASE original, record
    what was applied, and agree with each other to 1e-12."""
    model, staged = toy_models
    for name, converted in staged.items():
        details = converted.spec.details
        assert details["pruned"] == ("false" if name == "unpruned" else "true"), name
        assert details["kernels"] == ("kim_gnn" if name == "kernels" else "aten"), name
        report = kim_gnn.verify(model, converted)
        assert report.passed, report.summary()
        assert len(report.cases) >= 10 and all(c.passed for c in report.cases)
    if "kernels" not in staged:
        missing("--kernels kim_gnn not verified: the kim_gnn op library is not built (csrc/build_ops.py)")


def test_toy_pruned_equals_unpruned(toy_models, tmp_path):
    from kim_gnn.executor import StagedExecutor
    from kim_gnn.verification.structures import battery

    model, staged = toy_models
    executors = {}
    for name, converted in staged.items():
        converted.save(str(tmp_path / f"{name}.pt"))
        executors[name] = StagedExecutor(str(tmp_path / f"{name}.pt"))
    for case in battery(["Si"], 4.0, 0):
        reference = executors["unpruned"].run(case.atoms)
        for name in set(executors) - {"unpruned"}:
            got = executors[name].run(case.atoms)
            assert abs(got.energy - reference.energy) <= 1e-12 * max(1.0, abs(reference.energy)), (name, case.name)
            np.testing.assert_allclose(got.energies, reference.energies, rtol=0, atol=1e-12, err_msg=case.name)
            np.testing.assert_allclose(got.forces, reference.forces, rtol=0, atol=1e-12, err_msg=case.name)


def test_toy_is_a_two_hop_model(toy_models, tmp_path):
    """An atom's energy depends on an atom more than rc but less than 2 rc
    away (rc = 4): the second layer reads the first layer's density of its
    neighbours, in the original and in every converted model."""
    from ase import Atoms

    from kim_gnn.executor import StagedExecutor

    model, staged = toy_models
    original = adapter_named("toy").original(model)
    chains = [Atoms("Si3", positions=[(0, 0, 0), (3.0, 0, 0), (x, 0, 0)]) for x in (5.5, 6.0)]
    first = [original.evaluate(a).energies[0] for a in chains]
    assert abs(first[0] - first[1]) > 1e-6
    for name, converted in staged.items():
        converted.save(str(tmp_path / f"{name}.pt"))
        runner = StagedExecutor(str(tmp_path / f"{name}.pt"))
        got = [runner.run(a).energies[0] for a in chains]
        np.testing.assert_allclose(got, first, rtol=0, atol=1e-12, err_msg=name)


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

    help_text = cli("convert", "--help")
    assert "toy two-layer GNN" in help_text and "--no-prune" in help_text and "--kernels" in help_text
    out = cli("example", "--architecture", "toy", "--layers", "2", "-q")
    assert "PASSED" in out
    model = work / "kim-gnn-example-toy" / "model.toygnn"
    info = cli("info", str(model))
    assert "toy" in info and "influence_distance" in info and "8.0" in info
    from kim_gnn import kernels
    from kim_gnn.executor import read_spec, resolve_model_file

    variants = {"ToyGNN__MO_000000000000_000": ([], "true", "aten"),
                "ToyGNNUnpruned__MO_000000000000_000": (["--no-prune"], "false", "aten")}
    if kernels.available():
        variants["ToyGNNKernels__MO_000000000000_000"] = (["--kernels", "kim_gnn"], "true", "kim_gnn")
    for item, (flags, pruned, used) in variants.items():
        cli("convert", str(model), "-o", item, *flags)
        details = read_spec(resolve_model_file(str(work / item))).details
        assert (details["pruned"], details["kernels"]) == (pruned, used), item
        assert "PASSED" in cli("verify", str(model), item, "-q", "--no-properties")
    code = "from kim_gnn import convert_toy; import kim_gnn; print('convert_toy' in kim_gnn.__all__)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == "True", proc.stderr
    if len(variants) < 3:
        missing("--kernels kim_gnn not tried: the kim_gnn op library is not built (csrc/build_ops.py)")
