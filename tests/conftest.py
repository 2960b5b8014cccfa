import os

# e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses
# by default; nequip and mace set this themselves only when imported first.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import pytest  # noqa: E402


class NequIPModels:
    """Seeded random NequIP deployed models, built once per session and option set."""

    def __init__(self, root):
        self.root = root
        self._built = {}

    def deployed(self, **options) -> str:
        from kim_gnn.nequip.example import build_example_nequip

        options.setdefault("r_max", 3.5)
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()))
        if key not in self._built:
            name = "_".join(f"{k}-{'-'.join(v) if isinstance(v, tuple) else v}" for k, v in key)
            path = os.path.join(self.root, f"{name}.pth")
            build_example_nequip(path, **options)
            self._built[key] = path
        return self._built[key]

    def converted(self, **options) -> str:
        from kim_gnn.nequip import convert_nequip

        deployed = self.deployed(**options)
        out = deployed[:-4] + ".staged.pt"
        if not os.path.exists(out):
            convert_nequip(deployed).save(out)
        return out


@pytest.fixture(scope="session")
def nequip_models(tmp_path_factory):
    pytest.importorskip("nequip")
    return NequIPModels(str(tmp_path_factory.mktemp("nequip-models")))


class MACEModels:
    """Seeded random MACE ``.model`` files, built once per session and option set."""

    def __init__(self, root):
        self.root = root
        self._built = {}

    @staticmethod
    def _name(options) -> str:
        parts = []
        for k, v in sorted(options.items()):
            v = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            parts.append(f"{k}-{v}".replace("RealAgnostic", "").replace("InteractionBlock", ""))
        return "_".join(parts) or "default"

    def model(self, **options) -> str:
        from kim_gnn.mace.example import build_example_mace

        name = self._name(options)
        if name not in self._built:
            path = os.path.join(self.root, f"{name}.model")
            build_example_mace(path, **options)
            self._built[name] = path
        return self._built[name]

    def converted(self, head=None, **options) -> str:
        from kim_gnn.mace import convert_mace

        source = self.model(**options)
        out = source[: -len(".model")] + (f".head-{head}" if head else "") + ".staged.pt"
        if not os.path.exists(out):
            convert_mace(source, head=head).save(out)
        return out


@pytest.fixture(scope="session")
def mace_models(tmp_path_factory):
    pytest.importorskip("mace")
    return MACEModels(str(tmp_path_factory.mktemp("mace-models")))


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
