"""A third architecture, from outside kim_gnn: a Lennard-Jones "model" in a
JSON file (``*.toylj``), its staged TorchScript form, and ASE's own
LennardJones calculator as the original periodic model.

Used by tests/test_adapters.py to show that an adapter registers itself
(an entry point in the group ``kim_gnn.adapters``, or ``register_adapter``)
without any edit of kim_gnn's core.
"""

import json
from typing import List

import numpy as np
import torch

from kim_gnn.adapters import Adapter, ExampleModel
from kim_gnn.contract import StagedModelSpec, script_staged
from kim_gnn.errors import KimGnnError
from kim_gnn.reference import OriginalResult


def _read(path):
    try:
        with open(path) as fh:
            return json.load(fh)["toy_lj"]
    except (OSError, ValueError, KeyError) as exc:
        raise KimGnnError(f"{path} is not a toy LJ model ({exc})") from None


def is_toy_file(path: str) -> bool:
    return str(path).endswith(".toylj")


class StagedToyLJ(torch.nn.Module):
    def __init__(self, sigma: float, epsilon: float, cutoff: float):
        super().__init__()
        self.sigma = sigma
        self.epsilon = epsilon
        self.shift = 4 * epsilon * ((sigma / cutoff) ** 12 - (sigma / cutoff) ** 6)

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor) -> torch.Tensor:
        edges = graphs[0]
        d = coordinates[edges[1]] - coordinates[edges[0]]
        c6 = (self.sigma * self.sigma / (d * d).sum(-1)) ** 3
        pair = 4 * self.epsilon * (c6 * c6 - c6) - self.shift
        energy = torch.zeros(coordinates.shape[0], dtype=torch.float64, device=coordinates.device)
        energy = energy.index_add(0, edges[0], 0.5 * pair)
        return torch.where(contributions == 0, energy, torch.zeros_like(energy))


def convert_toy(path, **options):
    p = _read(path)
    spec = StagedModelSpec(species=[p["species"]], cutoff=p["cutoff"], num_layers=1, model_dtype="float64",
                           architecture="toy", architecture_version="1", source_file=str(path))
    return script_staged(StagedToyLJ(p["sigma"], p["epsilon"], p["cutoff"]), spec, "toy LJ")


def describe(path, **options):
    p = _read(path)
    return {"architecture": "toy", "layers": 1, "cutoff": p["cutoff"], "species": [p["species"]]}


class ToyOriginal:
    def __init__(self, path):
        from ase.calculators.lj import LennardJones

        p = _read(path)
        self.calc = LennardJones(sigma=p["sigma"], epsilon=p["epsilon"], rc=p["cutoff"])

    def evaluate(self, atoms):
        from ase.stress import voigt_6_to_full_3x3_stress

        atoms = atoms.copy()
        atoms.calc = self.calc
        stress = voigt_6_to_full_3x3_stress(atoms.get_stress()) if np.all(atoms.pbc) else None
        return OriginalResult(energy=atoms.get_potential_energy(), energies=atoms.get_potential_energies(),
                              forces=atoms.get_forces(), stress=stress)


def write_example(path, num_layers=1, model_dtype="float64"):
    with open(path, "w") as fh:
        json.dump({"toy_lj": {"species": "Si", "sigma": 2.1, "epsilon": 0.05, "cutoff": 4.0}}, fh)
    return path


ADAPTER = Adapter(
    name="toy",
    detect=is_toy_file,
    convert=convert_toy,
    describe=describe,
    original=lambda path, spec=None: ToyOriginal(path),
    summary="toy Lennard-Jones .toylj",
    exports={"convert_toy": "toy_kim_adapter:convert_toy"},
    example=ExampleModel(build=write_example, file_name="model.toylj", item_name="Toy__MO_000000000000_000",
                         description="a toy Lennard-Jones model"),
)
