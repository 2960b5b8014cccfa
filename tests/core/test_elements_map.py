"""Converted models under KIM_MODEL_ELEMENTS_MAP: the TorchML driver then
passes atomic numbers instead of species indices. The model's entry maps
them to indices when that is unambiguous (every value beyond the indices
and an atomic number of one of its elements) and refuses anything else with
one message; kim-gnn's own driver passes indices to kim-gnn models in any
case (tests/kim_e2e)."""

from typing import List

import pytest
import torch

from kim_gnn import contract


class SpeciesEcho(torch.nn.Module):
    """A staged stand-in whose energies are the species indices it gets."""

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        return species.to(torch.float64) + 0.0 * coordinates[:, 0]


def _entry(species, numbers):
    cls = contract.positional_entry_class(1)
    module = cls(SpeciesEcho(), num_species=len(species), species_names=" ".join(species), atomic_numbers=numbers)
    return torch.jit.freeze(torch.jit.script(module.eval()))


def _call(module, values):
    n = len(values)
    coords = torch.zeros((n, 3), dtype=torch.float64)
    coords[:, 0] = torch.arange(n, dtype=torch.float64) * 2.0
    return module(torch.tensor(values), coords, torch.zeros((2, 0), dtype=torch.int64),
                  torch.zeros(n, dtype=torch.int64)).tolist()


def test_atomic_numbers_map_to_indices_when_unambiguous():
    module = _entry(["C", "Si"], [6, 14])
    assert _call(module, [1, 0, 1]) == [1.0, 0.0, 1.0]  # indices, as always
    assert _call(module, [14, 6, 14]) == [1.0, 0.0, 1.0]  # atomic numbers
    assert _call(module, [6]) == [0.0]


@pytest.mark.parametrize("values,message", [
    ([0, 14], "species index 14 is out of range: this model has 2 species (indices 0 to 1: C Si)"),
    ([14, 7], "species index 7 is out of range: this model has 2 species (C Si); read as atomic numbers "
              "(KIM_MODEL_ELEMENTS_MAP), 7 is not one of its elements (C=6 Si=14)"),
    ([-1, 0], "species index -1 is out of range"),
    ([2, 2], "2 is not one of its elements (C=6 Si=14)"),
])
def test_anything_else_is_refused_with_one_message(values, message):
    module = _entry(["C", "Si"], [6, 14])
    with pytest.raises(Exception) as info:
        _call(module, values)
    assert message in str(info.value)


def test_elements_with_atomic_numbers_among_the_indices():
    """H (Z=1) in a two-species model: 1 is also an index, so H's atomic
    number is read as an index (which is why kim-gnn's own driver passes
    indices whatever KIM_MODEL_ELEMENTS_MAP says); structures without H map."""
    module = _entry(["H", "C"], [1, 6])
    assert _call(module, [6, 6]) == [1.0, 1.0]
    assert _call(module, [1, 0]) == [1.0, 0.0]  # indices
    with pytest.raises(Exception, match="species index 6 is out of range"):
        _call(module, [1, 6])


def test_converted_model_gives_the_same_energies_for_atomic_numbers(nequip_models):
    from kim_gnn.executor import load_staged_model

    module, spec = load_staged_model(nequip_models.converted(species=("Si", "C"), num_layers=2, r_max=4.0))
    from ase.data import atomic_numbers

    order = [spec.species.index(s) for s in ("Si", "C", "Si")]
    numbers = [atomic_numbers[s] for s in ("Si", "C", "Si")]
    coords = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    edges = [torch.tensor([[0, 1, 0, 2], [1, 0, 2, 0]])] * 2
    contributions = torch.zeros(3, dtype=torch.int64)
    by_index = module(torch.tensor(order), coords, *edges, contributions)
    by_number = module(torch.tensor(numbers), coords, *edges, contributions)
    assert torch.equal(by_index, by_number)
