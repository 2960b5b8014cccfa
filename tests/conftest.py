import os

# e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses
# by default; nequip and mace set this themselves only when imported first.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from skip_policy import missing, require_import, required

# --- which environment runs which test: markers, chosen by --stage ---------------

TESTS = Path(__file__).resolve().parent

#: The environment marker of each path, relative to tests/ (a folder marks
#: everything under it); tests elsewhere run in the legacy environment. The
#: one table that says where a test runs: scripts/test.sh and
#: scripts/test_modern.sh pick a stage (``--stage``), never paths.
ENVIRONMENT_MARKERS = {
    "nequip/modern": "modern_env",
    "kim_e2e": "e2e",
    "nequip/test_detection.py": "both_envs",
}

MARKERS = {
    "slow": "the full model matrix (runs in CI too)",
    "modern_env": "runs in the modern environment (.venv-modern: nequip >= 0.7, Allegro)",
    "both_envs": "runs in both environments (the legacy and the modern one)",
    "legacy_env": "runs in the legacy environment only (within a both_envs file)",
    "e2e": "end to end through the real KIM API, ASE's KIM calculator and LAMMPS (one process: tests/kim_e2e)",
    "cuda": "needs a CUDA device: deselected where torch sees none (CI), counted in one summary line",
    "no_cuda": "checks what happens without a CUDA device (the twin of a cuda test): deselected where there is one",
}

#: Stages (``--stage``): which tests each environment runs.
STAGES = {
    "legacy": "the legacy environment (.venv): tests without modern_env or e2e",
    "modern": "the modern environment (.venv-modern): modern_env and both_envs tests, not legacy_env ones",
    "e2e": "the end-to-end tests (.venv, one process): e2e",
}

#: The device markers: a test marked with one is deselected (not skipped)
#: where the device it needs is missing, or present when it needs none. CI
#: has no GPU, so its runs deselect the ``cuda`` tests and say how many in
#: one line; a GPU machine runs them (``-m cuda``). No skip is left for CI to
#: allow: any skip in a required run (KIM_GNN_TESTS_REQUIRED=1 /
#: KIM_GNN_E2E_REQUIRED=1) fails it.
DEVICE_MARKERS = {
    "cuda": (True, "no CUDA device (they run on a GPU machine: scripts/device_check.sh)"),
    "no_cuda": (False, "a CUDA device is present (they check the errors without one)"),
}

#: Skipped tests of this session (node ids).
_SKIPS = []

#: Tests deselected by device marker in this session: {marker: count}
#: (under xdist each worker collects and sends its counts to the controller).
_DEVICE_DESELECTED = {}


def _environment_marker(path: Path):
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    for end in range(1, len(parts) + 1):
        marker = ENVIRONMENT_MARKERS.get("/".join(parts[:end]))
        if marker:
            return marker
    return None


def _in_stage(markers, stage: str) -> bool:
    if stage == "legacy":
        return not markers & {"modern_env", "e2e"}
    if stage == "modern":
        return bool(markers & {"modern_env", "both_envs"}) and "legacy_env" not in markers
    return "e2e" in markers


def pytest_addoption(parser):
    parser.addoption("--stage", choices=sorted(STAGES), default=None,
                     help="run only the tests of one stage: " + "; ".join(f"{k}: {v}" for k, v in STAGES.items()))


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(DeviceDeselection(), "kim_gnn_device_deselection")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class DeviceDeselection:
    """Deselects the tests of a device marker (DEVICE_MARKERS) that cannot
    run here; after ``-m``, ``-k`` and the stage (``trylast``), so that the
    count is of tests this run would otherwise have run."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        marked = {name: [item for item in items if item.get_closest_marker(name)] for name in DEVICE_MARKERS}
        if not any(marked.values()):
            return  # (no torch import for runs without device tests)
        present = _cuda_available()
        dropped = []
        for name, (needs_device, _) in DEVICE_MARKERS.items():
            if marked[name] and needs_device != present:
                _DEVICE_DESELECTED[name] = len(marked[name])
                dropped += marked[name]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            gone = set(map(id, dropped))
            items[:] = [item for item in items if id(item) not in gone]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist, on the controller: a worker's device deselections (every worker
    collects the same tests)."""
    for name, count in getattr(node, "workeroutput", {}).get("kim_gnn_device_deselected", {}).items():
        _DEVICE_DESELECTED[name] = max(count, _DEVICE_DESELECTED.get(name, 0))


def pytest_ignore_collect(collection_path, config):
    """A stage does not even import the test files of another environment
    (their imports may need packages that environment lacks)."""
    stage = config.getoption("--stage")
    if stage is None or collection_path.name == "conftest.py":
        return None
    marker = _environment_marker(collection_path)
    if collection_path.is_dir():
        if marker is None:
            return None  # a folder without its own environment: look inside
        return True if not _in_stage({marker}, stage) else None
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return True if not _in_stage({marker} - {None}, stage) else None
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = _environment_marker(item.path)
        if marker:
            item.add_marker(marker)
    stage = config.getoption("--stage")
    if stage is None:
        return
    kept, dropped = [], []
    for item in items:
        (kept if _in_stage({m.name for m in item.iter_markers()}, stage) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append(report.nodeid)


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped (pytest.skip(..., allow_module_level=True))
        _SKIPS.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for name, count in sorted(_DEVICE_DESELECTED.items()):  # one line per device marker
        what = ("CUDA test" if name == "cuda" else f"test marked {name}") + ("" if count == 1 else "s")
        terminalreporter.write_line(f"{count} {what} deselected: {DEVICE_MARKERS[name][1]}")
    if not _SKIPS:
        return
    terminalreporter.write_line(f"skips: {len(_SKIPS)} (a missing component, or a test of another environment; "
                                f"-rs prints why)")
    if required():
        terminalreporter.write_line("FAILED: tests skipped in a required run (KIM_GNN_TESTS_REQUIRED=1 / "
                                    "KIM_GNN_E2E_REQUIRED=1): " + ", ".join(_SKIPS), red=True)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        # an xdist worker: the controller sees every report and decides
        session.config.workeroutput["kim_gnn_device_deselected"] = dict(_DEVICE_DESELECTED)
        return
    if required() and _SKIPS and exitstatus == 0:
        session.exitstatus = 1


def build_once(path: str, build) -> str:
    """``build(path)`` unless ``path`` exists, one builder at a time: the xdist
    workers of a session share the model folders (``session_folder``), so a
    model one worker built (or is building) the others wait for and reuse
    instead of building it again. ``build`` writes atomically (a temporary
    file renamed into place), so an existing ``path`` is complete."""
    import fcntl

    if not os.path.exists(path):
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not os.path.exists(path):
                    build(path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def save_atomically(converted, path: str) -> None:
    """Save a converted model under a temporary name, then rename it to ``path``."""
    converted.save(path + ".tmp")
    os.replace(path + ".tmp", path)


def session_folder(tmp_path_factory, name: str) -> str:
    """A folder of this session, shared by its xdist workers (each worker's
    base temporary folder is a subfolder of the session's)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / name
    folder.mkdir(exist_ok=True)
    return str(folder)


class NequIPModels:
    """Seeded random NequIP deployed models, built once per session and option
    set (across the session's xdist workers: ``build_once``)."""

    def __init__(self, root):
        self.root = root

    def deployed(self, **options) -> str:
        from kim_gnn.nequip.v06.example import build_example_nequip

        options.setdefault("r_max", 3.5)
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()))
        name = "_".join(f"{k}-{'-'.join(v) if isinstance(v, tuple) else v}" for k, v in key)
        return build_once(os.path.join(self.root, f"{name}.pth"), lambda path: build_example_nequip(path, **options))

    def converted(self, **options) -> str:
        from kim_gnn.nequip import convert_nequip

        deployed = self.deployed(**options)
        return build_once(deployed[:-4] + ".staged.pt", lambda path: save_atomically(convert_nequip(deployed), path))


@pytest.fixture(scope="session")
def nequip_models(tmp_path_factory):
    require_import("nequip")
    return NequIPModels(session_folder(tmp_path_factory, "nequip-models"))


class MACEModels:
    """Seeded random MACE ``.model`` files, built once per session and option
    set (across the session's xdist workers: ``build_once``)."""

    def __init__(self, root):
        self.root = root

    @staticmethod
    def _name(options) -> str:
        parts = []
        for k, v in sorted(options.items()):
            v = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            parts.append(f"{k}-{v}".replace("RealAgnostic", "").replace("InteractionBlock", ""))
        return "_".join(parts) or "default"

    def model(self, **options) -> str:
        from kim_gnn.mace.example import build_example_mace

        path = os.path.join(self.root, f"{self._name(options)}.model")
        return build_once(path, lambda path: build_example_mace(path, **options))

    def converted(self, head=None, **options) -> str:
        from kim_gnn.mace import convert_mace

        source = self.model(**options)
        out = source[: -len(".model")] + (f".head-{head}" if head else "") + ".staged.pt"
        return build_once(out, lambda path: save_atomically(convert_mace(source, head=head), path))


@pytest.fixture(scope="session")
def mace_models(tmp_path_factory):
    require_import("mace")
    return MACEModels(session_folder(tmp_path_factory, "mace-models"))


class StagedRuns:
    """Run a converted model under the conditions of the C++ driver that a
    Python test process does not have by itself."""

    @property
    def BLOCKED(self):
        """The modules a converted model must run without: every registered
        adapter's ``import_names``."""
        from kim_gnn.adapters import blocked_import_names

        return blocked_import_names()

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    @staticmethod
    def under_default_dtypes(path, atoms):
        """Results with torch's default dtype float32 (as in the driver), then float64."""
        import torch

        from kim_gnn.executor import StagedExecutor

        results = []
        for dtype in (torch.float32, torch.float64):
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                results.append(StagedExecutor(path).run(atoms))
            finally:
                torch.set_default_dtype(previous)
        return results

    @staticmethod
    def assert_same_results(first, second, cases, tol):
        """Two converted models give the same energy, per-atom energies and
        forces on every case (``second`` is the reference; ``tol`` relative to
        max(1, |E|) and max(1, largest force component))."""
        import numpy as np

        from kim_gnn.executor import StagedExecutor

        a, b = StagedExecutor(first), StagedExecutor(second)
        for case in cases:
            ra, rb = a.run(case.atoms), b.run(case.atoms)
            scale = max(1.0, abs(rb.energy))
            assert abs(ra.energy - rb.energy) <= tol * scale, case.name
            np.testing.assert_allclose(ra.energies, rb.energies, rtol=0, atol=tol * scale, err_msg=case.name)
            np.testing.assert_allclose(ra.forces, rb.forces, rtol=0, atol=tol * max(1.0, np.abs(rb.forces).max()),
                                       err_msg=case.name)

    def energy_without_architecture_packages(self, path, atoms) -> float:
        """The energy from a fresh process with default torch settings in
        which no architecture package (nequip, e3nn, mace, ...) can be imported."""
        import pickle
        import subprocess
        import sys
        import textwrap

        atoms_file = self.tmp_path / "atoms.pkl"
        atoms_file.write_bytes(pickle.dumps(atoms))
        script = self.tmp_path / "run_blocked.py"
        script.write_text(textwrap.dedent(f"""
            import pickle, sys
            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split('.')[0] in {self.BLOCKED!r}:
                        raise ImportError(name)
            sys.meta_path.insert(0, Block())
            import torch
            from kim_gnn.executor import StagedExecutor
            atoms = pickle.loads(open({str(atoms_file)!r}, 'rb').read())
            r = StagedExecutor({str(path)!r}).run(atoms)
            assert torch.get_default_dtype() == torch.float32
            print(repr(r.energy))
        """))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
        return float(out.stdout.strip())


@pytest.fixture
def staged_runs(tmp_path):
    return StagedRuns(tmp_path)


def _run_driver_emulation(tmp_path, model_file, graphs, threads, calls=5, virials=False):
    """Run ``model_file`` on ``graphs`` (``build_staged_graphs`` results) in
    ``tests/kernels_driver_emulation.py``: a fresh process with only torch
    and the kim_gnn op library loaded, as a driver runs it; returns its
    outputs (npz arrays; with ``virials`` also per-particle virials through
    ``energy_and_edge_vectors``)."""
    import subprocess
    import sys

    import numpy as np

    from kim_gnn import kernels

    inputs = {"num_cases": np.array(len(graphs))}
    for c, g in enumerate(graphs):
        inputs[f"{c}_layers"] = np.array(len(g.edge_index))
        inputs[f"{c}_species"] = g.species
        inputs[f"{c}_positions"] = g.positions
        inputs[f"{c}_contributions"] = g.contributions
        for k, e in enumerate(g.edge_index):
            inputs[f"{c}_edges_{k}"] = e
    np.savez(tmp_path / "inputs.npz", **inputs)
    out = tmp_path / f"out-{threads}.npz"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_NUM_THREADS")}
    emulation = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels_driver_emulation.py")
    proc = subprocess.run([sys.executable, emulation, kernels.library_path(), str(model_file),
                           str(tmp_path / "inputs.npz"), str(out), str(threads), str(calls)]
                          + (["virials"] if virials else []),
                          capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


@pytest.fixture
def driver_emulation():
    """``driver_emulation(tmp_path, model_file, graphs, threads)``: see ``_run_driver_emulation``."""
    return _run_driver_emulation
