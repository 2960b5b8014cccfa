"""ASE calculator that runs a converted model exactly as the TorchML driver would."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .executor import StagedExecutor


class StagedCalculator(Calculator):
    """``atoms.calc = StagedCalculator("model.pt")`` (or a portable model directory).

    Energy, forces, per-atom energies and, for cells periodic in all three
    directions, stress and per-atom stresses (``atoms.get_stresses()``). Padding
    atoms are built out to the model's influence distance plus ``skin``;
    results do not depend on ``skin``.

    Per-atom stresses follow ASE's convention (as its LennardJones
    calculator): Voigt xx yy zz yz xz xy in eV/A^3, each atom's virial by the
    edge-force decomposition divided by the cell volume, so that they sum to
    ``stress``; padding particles' shares folded onto their atoms
    (``docs/per-atom-virials.md``). They are computed only when asked for
    (one extra output of the same backward pass) and need a model converted
    with ``energy_and_edge_vectors`` (re-convert older ones).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(self, model, device: str = "cpu", skin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.executor = StagedExecutor(model, device=device, skin=skin)

    @property
    def spec(self):
        return self.executor.spec

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stresses = "stresses" in properties
        if want_stresses:
            from ase.calculators.calculator import PropertyNotImplementedError

            if not self.executor.provides_virials:
                raise PropertyNotImplementedError(
                    f"{self.executor.path} does not provide per-atom virials (no energy_and_edge_vectors: converted "
                    "by an older kim-gnn); re-convert it to get per-atom stresses"
                )
            if not all(self.atoms.pbc):
                raise PropertyNotImplementedError("per-atom stresses need a cell that is periodic in all three directions")
        result = self.executor.run(self.atoms, virials=want_stresses)
        self.results = {
            "energy": result.energy,
            "free_energy": result.energy,
            "energies": result.energies,
            "forces": result.forces,
        }
        if result.stresses is not None:
            self.results["stresses"] = result.stresses
        if result.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(result.stress)
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
