"""Per-atom virials (docs/per-atom-virials.md): every emitted model's
``energy_and_edge_vectors`` (kim_gnn/entry.py, edge vectors recorded by the
core runtime), folded by kim_gnn/virials.py in the executor and
StagedCalculator, against the original periodic model's own edge-force
decomposition (kim_gnn/verification/atomic_virials_reference.py). nequip >= 0.7 NequIP
and Allegro: tests/nequip/modern/test_modern_virials.py."""

import os
import sys
from typing import List, Tuple

import numpy as np
import pytest
import torch

from kim_gnn.errors import KimGnnError

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path.insert(0, os.path.join(TESTS, "plugins"))
from virial_checks import assert_same_virials, cases, check_against_original, check_calculator_stresses  # noqa: E402

DATA = os.path.join(TESTS, "data", "forward_before_virials")
VARIANTS = [dict(prune=True), dict(prune=False), dict(prune=True, kernels="kim_gnn")]
NEQUIP = dict(species=("Si", "C"), num_layers=2, r_max=3.5, zbl=True)
MACE = dict(species=("Si", "C"))


def _variant_id(options):
    return ("pruned" if options["prune"] else "unpruned") + ("-kernels" if options.get("kernels") else "")


# --- the toy plug-in: every variant, quick ------------------------------------------

@pytest.mark.parametrize("options", VARIANTS, ids=_variant_id)
def test_toy_per_atom_virials_equal_the_originals(tmp_path, options):
    import toy_kim_adapter as toy

    source = toy.write_example(str(tmp_path / "m.toygnn"))
    toy.convert_toy(source, **options).save(str(tmp_path / "m.pt"))
    check_against_original(str(tmp_path / "m.pt"), toy.ToyOriginal(source), ["Si"], 4.0)


# --- NequIP 0.6 and MACE --------------------------------------------------------------

def _nequip(nequip_models, tmp_path, options, **model):
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.nequip.v06.reference import NequIPOriginal

    source = nequip_models.deployed(**dict(NEQUIP, **model))
    out = str(tmp_path / f"nequip-{_variant_id(options)}.pt")
    convert_nequip(source, **options).save(out)
    return out, NequIPOriginal(source)


def _mace(mace_models, tmp_path, options, **model):
    from kim_gnn.mace import convert_mace
    from kim_gnn.mace.reference import MACEOriginal

    source = mace_models.model(**dict(MACE, **model))
    out = str(tmp_path / f"mace-{_variant_id(options)}.pt")
    convert_mace(source, **options).save(out)
    original = MACEOriginal(source)
    return out, original


def test_nequip06_per_atom_virials_equal_the_originals(nequip_models, tmp_path):
    model, original = _nequip(nequip_models, tmp_path, VARIANTS[0])
    check_against_original(model, original, NEQUIP["species"], original.r_max)


def test_mace_per_atom_virials_equal_the_originals(mace_models, tmp_path):
    model, original = _mace(mace_models, tmp_path, VARIANTS[0])
    check_against_original(model, original, MACE["species"], original.r_max)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["nequip", "mace"])
def test_pruned_unpruned_and_kernels_give_the_same_per_atom_virials(adapter, nequip_models, mace_models, tmp_path):
    results = []
    for options in VARIANTS:
        if adapter == "nequip":
            model, original = _nequip(nequip_models, tmp_path, options)
        else:
            model, original = _mace(mace_models, tmp_path, options)
        results.append(check_against_original(model, original, ["Si", "C"], original.r_max))
    assert_same_virials(results[1], results[0])
    assert_same_virials(results[2], results[0])


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["nequip", "mace"])
def test_float32_per_atom_virials_to_their_precision(adapter, nequip_models, mace_models, tmp_path):
    if adapter == "nequip":
        model, original = _nequip(nequip_models, tmp_path, VARIANTS[0], model_dtype="float32")
    else:
        model, original = _mace(mace_models, tmp_path, VARIANTS[0], model_dtype="float32")
    check_against_original(model, original, ["Si", "C"], original.r_max, rel=2e-5, sum_rel=2e-5)


# --- only torch and the op library loaded (a driver) ----------------------------------

@pytest.mark.parametrize("adapter", ["toy", "nequip", "mace"])
def test_method_runs_with_only_torch_and_the_op_library(adapter, nequip_models, mace_models, tmp_path,
                                                         driver_emulation):
    from kim_gnn.executor import StagedExecutor

    options = VARIANTS[2]
    if adapter == "toy":
        import toy_kim_adapter as toy

        source = toy.write_example(str(tmp_path / "m.toygnn"))
        model = str(tmp_path / "toy.pt")
        toy.convert_toy(source, **options).save(model)
        species, cutoff = ["Si"], 4.0
    elif adapter == "nequip":
        model, original = _nequip(nequip_models, tmp_path, options)
        species, cutoff = ["Si", "C"], original.r_max
    else:
        model, original = _mace(mace_models, tmp_path, options)
        species, cutoff = ["Si", "C"], original.r_max
    executor = StagedExecutor(model)
    structures = cases(species, cutoff)
    graphs = [executor.build_graphs(c.atoms) for c in structures]
    out = driver_emulation(tmp_path, model, graphs, 1, calls=1, virials=True)
    for k, (case, g) in enumerate(zip(structures, graphs)):
        from kim_gnn.executor import run_on_graphs

        mine = run_on_graphs(executor.module, g, len(case.atoms), virials=True)
        assert np.array_equal(out[f"{k}_virial_energies"], out[f"{k}_energies"]), case.name
        scale = max(1.0, float(np.abs(mine.particle_virials).max()))
        assert np.abs(out[f"{k}_virials"] - mine.particle_virials).max() <= 1e-13 * scale, case.name


# --- forward unchanged, models without the method -----------------------------------

def _saved_before(name):
    return os.path.join(DATA, name)


@pytest.mark.parametrize("adapter", ["toy", "nequip", "mace"])
def test_forward_is_bit_for_bit_what_it_was_before_the_method(adapter, tmp_path):
    """tests/data/forward_before_virials: sources and their conversions saved
    by kim-gnn before energy_and_edge_vectors existed; the same source
    converted now gives the same forward, bit for bit."""
    from kim_gnn.executor import StagedExecutor

    if adapter == "toy":
        import toy_kim_adapter as toy

        new = toy.convert_toy(_saved_before("toy.toygnn"))
        species, cutoff = ["Si"], 4.0
    elif adapter == "nequip":
        pytest.importorskip("nequip")
        from kim_gnn.nequip import convert_nequip

        new = convert_nequip(_saved_before("nequip.pth"))
        species, cutoff = ["Si", "C"], 3.5
    else:
        pytest.importorskip("mace")
        from kim_gnn.mace import convert_mace

        new = convert_mace(_saved_before("mace.model"))
        species, cutoff = ["Si", "C"], 3.5
    new.save(str(tmp_path / "new.pt"))
    before, now = StagedExecutor(_saved_before(f"{adapter}.staged.pt")), StagedExecutor(str(tmp_path / "new.pt"))
    assert not before.provides_virials and now.provides_virials
    for case in cases(species, cutoff):
        a, b = before.run(case.atoms), now.run(case.atoms)
        assert a.energy == b.energy and np.array_equal(a.energies, b.energies), case.name
        assert np.array_equal(a.forces, b.forces), case.name
    with pytest.raises(KimGnnError, match="does not provide per-atom virials"):
        before.run(cases(species, cutoff)[0].atoms, virials=True)


def test_calculator_refuses_stresses_from_a_model_without_the_method():
    from ase.build import bulk
    from ase.calculators.calculator import PropertyNotImplementedError

    from kim_gnn.calculator import StagedCalculator

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.calc = StagedCalculator(_saved_before("toy.staged.pt"))
    atoms.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError, match="does not provide per-atom virials"):
        atoms.get_stresses()


# --- StagedCalculator: ASE's per-atom stresses ---------------------------------------

@pytest.mark.parametrize("adapter", ["nequip", "mace"])
def test_calculator_stresses_follow_ase_and_sum_to_the_stress(adapter, nequip_models, mace_models, tmp_path):
    """ASE's convention (its LennardJones calculator): per-atom stresses in
    eV/A^3, Voigt xx yy zz yz xz xy, the atom's virial over the cell volume,
    summing to get_stress(); here the original's decomposition over V."""
    if adapter == "nequip":
        model, original = _nequip(nequip_models, tmp_path, VARIANTS[0])
    else:
        model, original = _mace(mace_models, tmp_path, VARIANTS[0])
    check_calculator_stresses(model, original, ["Si", "C"], original.r_max)


# --- bad cases ----------------------------------------------------------------------

class _Staged(torch.nn.Module):
    """A staged stand-in: pair energies over edge_index_0 plus, when
    ``field``, a term in the coordinates themselves (an external field),
    which the edge vectors cannot carry."""

    field: float

    def __init__(self, field: float, nan: bool):
        super().__init__()
        self.field = field
        self.nan = nan

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return self.energy_and_edge_vectors(species, coordinates, graphs, contributions)[0]

    @torch.jit.export
    def energy_and_edge_vectors(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                                contributions: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        edges = graphs[0]
        vectors = coordinates[edges[1]] - coordinates[edges[0]]
        pair = torch.exp(-torch.linalg.vector_norm(vectors, dim=1))
        if self.nan:
            pair = torch.sqrt(torch.linalg.vector_norm(vectors, dim=1) - 100.0)
        energies = torch.zeros_like(coordinates[:, 0]).index_add(0, edges[0], 0.5 * pair)
        energies = energies + self.field * coordinates[:, 0]
        energies = torch.where(contributions == 0, energies, torch.zeros_like(energies))
        return energies, [vectors], [edges]


def _entry(field=0.0, nan=False):
    from kim_gnn import contract

    return torch.jit.script(contract.positional_entry_class(1)(_Staged(field, nan), num_species=1,
                                                               species_names="Si").eval())


def _graphs():
    from ase import Atoms

    from kim_gnn.graphs import build_staged_graphs

    atoms = Atoms("Si3", positions=[[0, 0, 0], [2.0, 0, 0], [0, 2.1, 0.3]])
    return atoms, build_staged_graphs(atoms, ["Si"], 3.0, 1, 0.0)


def test_a_model_whose_energy_depends_on_coordinates_otherwise_is_refused():
    from kim_gnn.executor import run_on_graphs

    atoms, g = _graphs()
    run_on_graphs(_entry(), g, len(atoms), virials=True)  # pair energies only: fine
    with pytest.raises(KimGnnError, match="other than through the edge vectors"):
        run_on_graphs(_entry(field=0.3), g, len(atoms), virials=True)


def test_nan_edge_forces_are_refused():
    from kim_gnn.executor import run_on_graphs

    atoms, g = _graphs()
    with pytest.raises(KimGnnError, match="edge forces dE/dr are not finite"):
        run_on_graphs(_entry(nan=True), g, len(atoms), virials=True)


def test_energy_and_edge_vectors_checks_its_inputs_like_forward():
    atoms, g = _graphs()
    module = _entry()
    species = torch.tensor([0, 0, 5])
    coordinates = torch.tensor(g.positions, dtype=torch.float64)
    edges = [torch.as_tensor(e) for e in g.edge_index]
    contributions = torch.as_tensor(g.contributions, dtype=torch.int64)
    for call in (lambda: module(species, coordinates, *edges, contributions),
                 lambda: module.energy_and_edge_vectors(species, coordinates, edges, contributions)):
        with pytest.raises(Exception, match="species index 5 is out of range"):
            call()
    with pytest.raises(Exception, match="takes 1 edge lists"):
        module.energy_and_edge_vectors(torch.zeros(3, dtype=torch.int64), coordinates, edges * 2, contributions)


def test_several_frozen_models_raise_cleanly_from_both_methods(tmp_path):
    """Every generated entry class shares the checked code; frozen copies of
    several models in one process raise their one-line error from forward
    and from energy_and_edge_vectors (an inherited method called from the
    generated forward once crashed the interpreter here)."""
    import toy_kim_adapter as toy

    from kim_gnn.executor import load_staged_model

    source = toy.write_example(str(tmp_path / "m.toygnn"))
    modules = []
    for k, prune in enumerate((True, False, True)):
        toy.convert_toy(source, prune=prune).save(str(tmp_path / f"{k}.pt"))
        modules.append(load_staged_model(str(tmp_path / f"{k}.pt"))[0])
    species = torch.tensor([0, 3, 0])
    coordinates = torch.zeros((3, 3), dtype=torch.float64)
    edges = [torch.zeros((2, 0), dtype=torch.int64)] * 2
    contributions = torch.zeros(3, dtype=torch.int64)
    for module in modules[::-1]:
        with pytest.raises(Exception, match="species index 3 is out of range"):
            module(species, coordinates, *edges, contributions)
        with pytest.raises(Exception, match="species index 3 is out of range"):
            module.energy_and_edge_vectors(species, coordinates, edges, contributions)
