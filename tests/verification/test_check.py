"""``kim-gnn check``: passes on converted models of both adapters and
dtypes, and each check fails on a model made to break it."""

import json
from typing import List

import pytest
import torch

from kim_gnn import contract
from kim_gnn.verification.check import CHECKS, check_model
from kim_gnn.cli import main


@pytest.fixture
def break_conversion(monkeypatch):
    def install(make):
        real = contract.script_staged
        monkeypatch.setattr(contract, "script_staged", lambda staged, spec, label: real(make(staged), spec, label))

    return install


def _mask(contributions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (contributions == 0).to(like.dtype)


class ForcesNotTheGradient(torch.nn.Module):
    """An energy term that backward does not see: forces != -dE/dx."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        e = self.inner(species, coordinates, graphs, contributions)
        # (not .detach(): the driver's freeze drops it and the gradient comes back)
        with torch.no_grad():
            hidden = 0.05 * torch.sin(coordinates[:, 0])
        return e + hidden * _mask(contributions, e)


class StepAtTheCutoff(torch.nn.Module):
    """0.01 eV per neighbor: the energy jumps when a pair crosses rc."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        e = self.inner(species, coordinates, graphs, contributions)
        counts = torch.zeros_like(e).index_add(0, graphs[0][0], torch.ones_like(graphs[0][0], dtype=e.dtype))
        return e + 0.01 * counts * _mask(contributions, e)


class DependsOnAbsolutePosition(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        e = self.inner(species, coordinates, graphs, contributions)
        return e + 1e-3 * coordinates[:, 0] * _mask(contributions, e)


class DependsOnSystemSize(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        e = self.inner(species, coordinates, graphs, contributions)
        mask = _mask(contributions, e)
        return e + 1e-3 * mask.sum() * mask


class Stateful(torch.nn.Module):
    """Remembers how often it was called: neither deterministic nor thread safe."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        e = self.inner(species, coordinates, graphs, contributions)
        return e + 1e-9 * float(self.calls) * _mask(contributions, e)


class Leaky(torch.nn.Module):
    """Keeps ``elements`` float64 per call: 400 kB by default; a slow leak of
    20 kB (2 MB over the memory check's 100 calls) RSS may not show (the
    process's free memory absorbs it), but the heap counter does."""

    kept: List[torch.Tensor]

    def __init__(self, inner, elements: int = 50000):
        super().__init__()
        self.inner = inner
        self.elements = elements
        self.kept: List[torch.Tensor] = []

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        self.kept.append(torch.ones(self.elements, dtype=torch.float64))
        return self.inner(species, coordinates, graphs, contributions)


def slow_leak(inner) -> Leaky:
    return Leaky(inner, elements=2500)


BROKEN = {
    "forces": ForcesNotTheGradient,
    "continuity": StepAtTheCutoff,
    "symmetry": DependsOnAbsolutePosition,
    "periodicity": DependsOnSystemSize,
    "determinism": Stateful,
    "thread-safety": Stateful,
    "memory": Leaky,
}

MODELS = [
    ("nequip", "float64", dict(num_layers=2, species=("Si", "C"))),
    ("nequip", "float32", dict(num_layers=3, species=("Si",), model_dtype="float32")),
    ("mace", "float64", dict(num_interactions=2, species=("Si", "C"), zbl=True)),
    ("mace", "float32", dict(num_interactions=2, species=("C", "Si"), model_dtype="float32")),
]


def _converted(architecture, options, nequip_models, mace_models):
    if architecture == "nequip":
        return nequip_models.converted(**options)
    return mace_models.converted(**options)


@pytest.mark.parametrize("architecture, dtype, options", MODELS, ids=[f"{a}-{d}" for a, d, _ in MODELS])
def test_every_check_passes_on_converted_models(architecture, dtype, options, nequip_models, mace_models):
    report = check_model(_converted(architecture, options, nequip_models, mace_models))
    assert report.model_dtype == dtype
    assert [r.name for r in report.results] == list(CHECKS)
    assert report.passed, report.summary()


@pytest.mark.parametrize("check", list(BROKEN))
def test_each_check_fails_on_a_model_made_to_break_it(check, nequip_models, break_conversion, tmp_path):
    from kim_gnn.nequip import convert_nequip

    deployed = nequip_models.deployed(num_layers=2, species=("Si", "C"))
    break_conversion(BROKEN[check])
    if check == "memory":
        # RSS is the whole process's: measure it in a fresh one, as a user runs
        # `kim-gnn check`, not in a test worker whose allocator earlier tests shaped.
        import subprocess
        import sys

        model = tmp_path / "leaky.pt"
        convert_nequip(deployed).save(str(model))
        proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", "check", str(model), "--only", "memory"],
                              capture_output=True, text=True)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "FAIL  memory" in proc.stdout, proc.stdout
        return
    report = check_model(convert_nequip(deployed), only=[check])
    assert [r.name for r in report.results] == [check]
    assert not report.passed, report.summary()


def test_memory_check_sees_a_small_leak_in_the_heap(nequip_models, break_conversion, monkeypatch):
    """20 kB per call fails on the heap counter, in the test process (the heap
    in use is exact, unlike RSS); without the counter (no glibc) the result
    says that RSS alone was judged."""
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.verification import check

    break_conversion(slow_leak)
    converted = convert_nequip(nequip_models.deployed(num_layers=2, species=("Si", "C")))
    report = check_model(converted, only=["memory"])
    result = report.results[0]
    assert not result.passed and "heap in use grew" in result.detail, result.detail
    assert result.value >= 100 * 2500 * 8 * 0.9, result.detail

    monkeypatch.setattr(check, "_heap_in_use", lambda: None)
    result = check_model(converted, only=["memory"]).results[0]
    assert "heap not measured" in result.detail and "RSS only" in result.detail, result.detail


def test_species_check_fails_on_a_model_without_the_species_guard(nequip_models, monkeypatch):
    """A model emitted without the entry point's species check (as before
    kim-gnn had it) fails with a one_hot / index error deep inside."""
    from kim_gnn.nequip import convert_nequip

    def unguarded(staged, spec, label):
        entry = contract.positional_entry_class(spec.num_layers)(staged).eval()
        return contract.attach_spec(torch.jit.script(entry), spec)

    monkeypatch.setattr(contract, "script_staged", unguarded)
    report = check_model(convert_nequip(nequip_models.deployed(num_layers=2, species=("Si", "C"))), only=["species"])
    assert not report.passed
    assert "unclear error" in report.results[0].detail or "accepted" in report.results[0].detail


def test_cli_check(nequip_models, tmp_path, capsys):
    converted = nequip_models.converted(num_layers=2, species=("Si", "C"))
    assert main(["check", converted, "--only", "symmetry", "periodicity", "-q"]) == 0
    out = capsys.readouterr().out
    assert "PASS  symmetry" in out and "PASS  periodicity" in out and "PASSED: 2 passed" in out

    assert main(["check", converted, "--only", "determinism", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["passed"] and report["results"][0]["name"] == "determinism"
    assert "check [1/1] determinism" in captured.err  # progress on stderr

    assert main(["check", str(tmp_path / "missing.pt")]) == 2
    assert main(["check", converted, "--only", "nonsense"]) == 2


def test_cli_check_exit_1_on_failure(nequip_models, break_conversion, tmp_path, capsys):
    from kim_gnn.nequip import convert_nequip

    break_conversion(DependsOnSystemSize)
    path = tmp_path / "broken.pt"
    convert_nequip(nequip_models.deployed(num_layers=2, species=("Si", "C"))).save(str(path))
    assert main(["check", str(path), "--only", "periodicity", "-q", "--json", str(tmp_path / "r.json")]) == 1
    assert "FAIL  periodicity" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def _matrix(relative):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relative)  # tests/
    spec = importlib.util.spec_from_file_location("_matrix_" + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NEQUIP_MATRIX = _matrix("nequip/v06/test_matrix.py")
MACE_MATRIX = _matrix("mace/test_mace_matrix.py")


@pytest.mark.slow
@pytest.mark.parametrize("combo", NEQUIP_MATRIX.MATRIX, ids=[NEQUIP_MATRIX._id(c) for c in NEQUIP_MATRIX.MATRIX])
def test_checks_pass_on_the_nequip_matrix(nequip_models, combo):
    layers, species, dtype, l_max, zbl = combo
    options = dict(num_layers=layers, species=species, model_dtype=dtype, l_max=l_max, zbl=zbl, seed=layers)
    report = check_model(nequip_models.converted(**options))
    assert report.passed, "\n" + report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("combo", MACE_MATRIX.MATRIX, ids=[MACE_MATRIX._id(c) for c in MACE_MATRIX.MATRIX])
def test_checks_pass_on_the_mace_matrix(mace_models, combo):
    report = check_model(mace_models.converted(**MACE_MATRIX._options(combo)))
    assert report.passed, "\n" + report.summary()


def test_the_tolerance_table_has_a_row_for_every_model_dtype():
    from kim_gnn.contract import MODEL_DTYPES
    from kim_gnn.verification import tolerances

    assert set(tolerances.TABLE) == set(MODEL_DTYPES)
    for view in (tolerances.TOLERANCES, tolerances.FD_STRAIN, tolerances.FD_NOISE, tolerances.CHECK_TOLERANCES):
        assert set(view) == set(MODEL_DTYPES)


def test_richardson_derivative_is_exact_for_a_quartic():
    from kim_gnn.verification.finite_difference import richardson_derivative

    # central differences cancel even powers; Richardson cancels h^2: x^3 and x^4 terms leave no error
    f = lambda x: 2.0 + 3.0 * x + 0.5 * x ** 2 - 7.0 * x ** 3 + 4.0 * x ** 4  # noqa: E731
    assert abs(richardson_derivative(f, 1e-2) - 3.0) < 1e-12
    assert abs(richardson_derivative(lambda x: x ** 5, 1e-1) - 0.0) > 1e-7  # not exact beyond: it can fail
