"""ASE calculator that runs a converted model exactly as the TorchML driver would."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .executor import StagedExecutor


class StagedCalculator(Calculator):
    """``atoms.calc = StagedCalculator("model.pt")`` (or a portable model directory).

    Energy, forces, per-atom energies and, for cells periodic in all three
    directions, stress. Padding atoms are built out to the model's influence
    distance plus ``skin``; results do not depend on ``skin``.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device: str = "cpu", skin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.executor = StagedExecutor(model, device=device, skin=skin)

    @property
    def spec(self):
        return self.executor.spec

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = self.executor.run(self.atoms)
        self.results = {
            "energy": result.energy,
            "free_energy": result.energy,
            "energies": result.energies,
            "forces": result.forces,
        }
        if result.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(result.stress)
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
