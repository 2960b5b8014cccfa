"""``verify`` must reject every deliberately wrong conversion.

Each wrong conversion is made by intercepting the one call every adapter
makes to emit its model, ``contract.script_staged(staged, spec, label)``,
and handing it a broken staged module instead. Where the mistake allows it
the break is a wrapper around the correct staged module's inputs or outputs
(permuted graphs, permuted species, ...), so these tests do not depend on
the staged modules' internals; the pair-term and scale mistakes replace one
named part.
"""

import copy
from typing import Dict, List

import numpy as np
import pytest
import torch

from kim_gnn import contract
from kim_gnn.errors import KimGnnError
from kim_gnn.verification.harness import TOLERANCES, tolerances_for, verify


class ReversedGraphs(torch.nn.Module):
    """The L graphs in the wrong order (first layer on edge_index_0)."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        reversed_graphs: List[torch.Tensor] = []
        for k in range(len(graphs)):
            reversed_graphs.append(graphs[len(graphs) - 1 - k])
        return self.inner(species, coordinates, reversed_graphs, contributions)


class FirstLayerOnWrongGraph(torch.nn.Module):
    """Only the first layer convolves over the wrong graph (edge_index_{L-2})."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        wrong: List[torch.Tensor] = []
        for k in range(len(graphs)):
            wrong.append(graphs[k] if k != len(graphs) - 1 else graphs[k - 1])
        return self.inner(species, coordinates, wrong, contributions)


class PaddingCounted(torch.nn.Module):
    """Every particle treated as contributing: padding energies are summed."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.inner(species, coordinates, graphs, torch.zeros_like(contributions))


class PaddingMessagesDropped(torch.nn.Module):
    """The padding atoms' contribution is missing: edges to them are dropped."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        real = contributions == 0
        kept: List[torch.Tensor] = []
        for g in graphs:
            kept.append(g[:, real[g[0]] & real[g[1]]])
        return self.inner(species, coordinates, kept, contributions)


class SpeciesReversed(torch.nn.Module):
    """The model's species in the wrong order (the .param list reversed)."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner
        self.num_species = len(spec.species)

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.inner(self.num_species - 1 - species, coordinates, graphs, contributions)


class GlobalScaleTwice(torch.nn.Module):
    """NequIP: the global energy scale applied a second time."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner
        self.scale = float(np.prod([float(s) for s in spec.details["global_scales"].split()]))
        assert self.scale != 1.0

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.inner(species, coordinates, graphs, contributions) * self.scale


class TotalEnergyOnly(torch.nn.Module):
    """Right total energy and forces, but no per-atom energies: a [1] tensor."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.inner(species, coordinates, graphs, contributions).sum().reshape(1)


class ColumnOutput(torch.nn.Module):
    """Per-atom energies of the wrong shape [N, 1]."""

    def __init__(self, inner, spec):
        super().__init__()
        self.inner = inner

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.inner(species, coordinates, graphs, contributions).unsqueeze(1)


# --- mistakes inside the staged module: replace one named part -----------------

class PassThroughDict(torch.nn.Module):
    """A pair term that adds nothing (whether the energy so far is in the
    dict, as in NequIP's own order, or not, as the pruned model calls it)."""

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if "atomic_energy" not in data:
            data["atomic_energy"] = torch.zeros_like(data["pos"][:, :1])
        return data


class NoPair(torch.nn.Module):
    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor, edge_index: torch.Tensor,
                atomic_numbers: torch.Tensor, num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        return torch.zeros((num_out,), dtype=node_attrs.dtype, device=node_attrs.device)


class MacePairTerm(torch.nn.Module):
    """MACE's own pair term module (as mace-torch calls it) in the staged
    model's pair-term slot: its energies summed into every node it is
    given, cut to the receivers."""

    def __init__(self, pair):
        super().__init__()
        self.pair = pair

    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor, edge_index: torch.Tensor,
                atomic_numbers: torch.Tensor, num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        return self.pair(x, node_attrs, edge_index, atomic_numbers)[:num_out]


class ScaleShiftTwice(torch.nn.Module):
    """MACE: scale * (scale * x) + shift."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        shift = self.inner(torch.zeros_like(x), head)
        return self.inner(self.inner(x, head) - shift, head)


def _kind(module) -> str:
    return getattr(module, "original_name", type(module).__name__)


def replace_parts(root, predicate, make) -> int:
    """Replace every submodule for which ``predicate`` holds by ``make(it)``."""
    count = 0
    for name, module in list(root.named_modules()):
        if name and predicate(name, module):
            parent = root.get_submodule(name.rpartition(".")[0]) if "." in name else root
            parent._modules[name.rpartition(".")[2]] = make(module)
            count += 1
    assert count, "found no part to break"
    return count


def drop_pair_term(staged, spec):
    replace_parts(staged, lambda n, m: _kind(m) in ("ZBL", "LennardJones", "SimpleLennardJones"), lambda m: PassThroughDict())
    return staged


def drop_mace_pair_term(staged, spec):
    replace_parts(staged, lambda n, m: n.rpartition(".")[2] == "pair_repulsion", lambda m: NoPair())
    return staged


def mace_scale_shift_twice(staged, spec):
    replace_parts(staged, lambda n, m: n.rpartition(".")[2] == "scale_shift", ScaleShiftTwice)
    return staged


def wrapping(cls):
    return lambda staged, spec: cls(staged, spec)


@pytest.fixture
def break_conversion(monkeypatch):
    """``break_conversion(mutate)``: from now on conversions emit ``mutate(staged, spec)``."""

    def install(mutate):
        real = contract.script_staged

        def broken(staged, spec, label):
            return real(mutate(staged, spec), spec, label)

        monkeypatch.setattr(contract, "script_staged", broken)

    return install


def assert_rejected(report, reason=None, caught_by=None):
    """The report fails; with ``reason``, a failed structure's error says it;
    with ``caught_by`` (a set of names, see ``checks_that_failed``), each of
    those checks caught the mistake on some structure."""
    assert not report.passed, report.summary()
    if reason:
        assert any(reason in (c.error or "") for c in report.failures), report.summary()
    if caught_by:
        caught = checks_that_failed(report)
        assert set(caught_by) <= caught, \
            f"{sorted(set(caught_by) - caught)} did not catch it (caught by: {sorted(caught)})\n{report.summary()}"


def checks_that_failed(report):
    """Which of verify's comparisons failed on some structure: ``energy``,
    ``forces``, ``atomic_energy``, ``stress`` (each beyond its limit, as
    verify judges it), ``padding`` (non-contributing particles with
    energies), ``shape`` (not per-particle energies), ``error`` (another error)."""
    tol = report.tolerances
    samples = {s["name"]: s for s in report.samples}
    caught = set()
    for case in report.failures:
        if case.error:
            caught.add("padding" if "non-contributing particles" in case.error
                       else "shape" if "not per-particle energies" in case.error else "error")
            continue
        sample = samples[case.name]
        n = case.n_atoms
        if case.energy_error_per_atom > tol["energy_per_atom"] * max(1.0, abs(case.energy_original) / n):
            caught.add("energy")
        if case.max_force_error > tol["forces"] * max(1.0, float(np.abs(sample["forces"][0]).max(initial=0.0))):
            caught.add("forces")
        if case.max_atomic_energy_error is not None and not case.max_atomic_energy_error <= (
                tol["atomic_energy"] * max(1.0, float(np.abs(sample["energies"][0]).max(initial=0.0)))):
            caught.add("atomic_energy")
        if case.max_stress_error is not None and case.max_stress_error > case.stress_limit:
            caught.add("stress")
    return caught


NEQUIP_OPTIONS = dict(num_layers=2, species=("Si", "C"), zbl=True)
MACE_OPTIONS = dict(num_interactions=2, species=("Si", "C"), zbl=True)

NEQUIP_MISTAKES = {
    "reversed_graphs": wrapping(ReversedGraphs),
    "one_layer_on_wrong_graph": wrapping(FirstLayerOnWrongGraph),
    "pair_term_dropped": drop_pair_term,
    "global_scale_twice": wrapping(GlobalScaleTwice),
    "padding_energies_summed": wrapping(PaddingCounted),
    "padding_contribution_missing": wrapping(PaddingMessagesDropped),
    "species_order_wrong": wrapping(SpeciesReversed),
}
#: Which of verify's comparisons must catch each mistake (checks_that_failed).
#: Wrong graphs, a dropped pair term or missing padding messages change the
#: energy and forces; a scale applied twice every energy; summed padding
#: energies are caught by the contract's zero-padding check before any
#: comparison; wrong species order is caught by the per-atom energies even on
#: structures whose total energy happens to agree (primitive cell, dimer).
CAUGHT_BY = {
    "reversed_graphs": {"energy", "forces"},
    "one_layer_on_wrong_graph": {"energy", "forces"},
    "pair_term_dropped": {"energy", "forces"},
    "global_scale_twice": {"energy", "atomic_energy"},
    "scale_twice": {"energy", "atomic_energy"},
    "padding_energies_summed": {"padding"},
    "padding_contribution_missing": {"energy", "forces"},
    "species_order_wrong": {"atomic_energy"},
}
MACE_MISTAKES = {
    "reversed_graphs": wrapping(ReversedGraphs),
    "one_layer_on_wrong_graph": wrapping(FirstLayerOnWrongGraph),
    "pair_term_dropped": drop_mace_pair_term,
    "scale_twice": mace_scale_shift_twice,
    "padding_energies_summed": wrapping(PaddingCounted),
    "padding_contribution_missing": wrapping(PaddingMessagesDropped),
    "species_order_wrong": wrapping(SpeciesReversed),
}


def test_the_correct_conversions_pass(nequip_models, mace_models):
    from kim_gnn.mace import convert_mace
    from kim_gnn.nequip import convert_nequip

    deployed = nequip_models.deployed(**NEQUIP_OPTIONS)
    assert verify(deployed, convert_nequip(deployed), properties=False).passed
    source = mace_models.model(**MACE_OPTIONS)
    assert verify(source, convert_mace(source), properties=False).passed


@pytest.mark.parametrize("mistake", list(NEQUIP_MISTAKES))
def test_verify_rejects_wrong_nequip_conversions(mistake, nequip_models, break_conversion):
    from kim_gnn.nequip import convert_nequip

    deployed = nequip_models.deployed(**NEQUIP_OPTIONS)
    break_conversion(NEQUIP_MISTAKES[mistake])
    assert_rejected(verify(deployed, convert_nequip(deployed), properties=False), caught_by=CAUGHT_BY[mistake])


@pytest.mark.parametrize("mistake", list(MACE_MISTAKES))
def test_verify_rejects_wrong_mace_conversions(mistake, mace_models, break_conversion):
    from kim_gnn.mace import convert_mace

    source = mace_models.model(**MACE_OPTIONS)
    break_conversion(MACE_MISTAKES[mistake])
    assert_rejected(verify(source, convert_mace(source), properties=False), caught_by=CAUGHT_BY[mistake])


def test_verify_rejects_mace_zbl_in_the_default_dtype(mace_models, break_conversion):
    """The float32 trap: MACE's own ZBL builds 14.3996 * Z * Z in torch's
    default dtype, float32 in the driver; a float64 Python process shows no
    error, the harness's fresh default-dtype process must."""
    from kim_gnn.mace import convert_mace
    from kim_gnn.mace.convert import load_mace_model

    source = mace_models.model(**MACE_OPTIONS)
    original_zbl = load_mace_model(source).pair_repulsion_fn
    break_conversion(lambda staged, spec: replace_parts(
        staged, lambda n, m: n.rpartition(".")[2] == "pair_repulsion", lambda m: MacePairTerm(copy.deepcopy(original_zbl))) and staged)
    report = verify(source, convert_mace(source), properties=False)
    assert_rejected(report, caught_by={"forces"})
    # off by float32 rounding only: small, but far beyond the float64 tolerance
    worst = max(c.max_force_error for c in report.failures if c.max_force_error is not None)
    assert 1e-10 < worst < 1e-3


@pytest.mark.parametrize("wrapper, reason", [(TotalEnergyOnly, "not per-particle energies"),
                                             (ColumnOutput, "not per-particle energies")])
def test_verify_fails_without_per_atom_energies(wrapper, reason, nequip_models, break_conversion):
    """Right total energy and forces are not enough: the output must be the
    per-particle energies [N] of the contract; a missing or misshapen one
    fails every structure (it is not skipped)."""
    from kim_gnn.nequip import convert_nequip

    deployed = nequip_models.deployed(**NEQUIP_OPTIONS)
    break_conversion(wrapping(wrapper))
    report = verify(deployed, convert_nequip(deployed), properties=False)
    assert_rejected(report, reason)
    assert len(report.failures) == len(report.cases)


def test_unknown_model_dtype_is_an_error_not_float32_tolerances(nequip_models, tmp_path):
    with pytest.raises(KimGnnError, match="dtype 'float16' is unknown"):
        tolerances_for("float16")
    assert tolerances_for("float32") == TOLERANCES["float32"]
    # a converted file whose metadata names a dtype kim-gnn has no tolerances for
    converted = nequip_models.converted(**NEQUIP_OPTIONS)
    extra = contract.empty_extra_files()
    module = torch.jit.load(converted, _extra_files=extra)
    extra[contract.METADATA_PREFIX + "model_dtype"] = "float16"
    bad = tmp_path / "float16.pt"
    torch.jit.save(module, str(bad), _extra_files=extra)
    with pytest.raises(KimGnnError, match="dtype 'float16'"):
        verify(nequip_models.deployed(**NEQUIP_OPTIONS), bad, properties=False)


def test_stress_by_finite_differences_when_the_original_gives_none(nequip_models, monkeypatch):
    """An original without stress output (NequIP ForceOutput) still has its
    stress compared: from finite differences of its energy."""
    from kim_gnn.nequip.v06.reference import NequIPOriginal

    deployed = nequip_models.deployed(**NEQUIP_OPTIONS)
    converted = nequip_models.converted(**NEQUIP_OPTIONS)
    exact = verify(deployed, converted, properties=False)
    evaluate = NequIPOriginal.evaluate

    def without_stress(self, atoms):
        r = evaluate(self, atoms)
        r.stress = None
        return r

    monkeypatch.setattr(NequIPOriginal, "evaluate", without_stress)
    report = verify(deployed, converted, properties=False)
    assert report.passed, report.summary()
    periodic = [c for c in report.cases if "finite differences" in c.notes]
    assert {c.name for c in periodic} == {"rattled_bulk", "triclinic_alloy", "strained", "primitive_small_cell"}
    for case in periodic:
        assert case.max_stress_error < 1e-8
    assert [c.max_stress_error is None for c in exact.cases] == [c.max_stress_error is None for c in report.cases]


def test_finite_difference_stress_detects_a_wrong_stress(nequip_models, monkeypatch):
    """The finite-difference stress is a real check: a converted model whose
    executor-side stress is off fails."""
    from kim_gnn.nequip.v06.reference import NequIPOriginal

    deployed = nequip_models.deployed(**NEQUIP_OPTIONS)
    converted = nequip_models.converted(**NEQUIP_OPTIONS)
    evaluate = NequIPOriginal.evaluate

    def wrong_stress(self, atoms):
        r = evaluate(self, atoms)
        if r.stress is not None:
            r.stress = r.stress + 1e-6 * np.eye(3)
        return r

    monkeypatch.setattr(NequIPOriginal, "evaluate", wrong_stress)
    report = verify(deployed, converted, properties=False)
    assert_rejected(report, caught_by={"stress"})
    assert all(c.max_stress_error is not None for c in report.failures)
