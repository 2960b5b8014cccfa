"""Pruned and unpruned converted MACE models give the same numbers on the
whole battery (and its property cases); the switch is recorded."""

import numpy as np
import pytest

from kim_gnn.executor import read_spec
from kim_gnn.mace import convert_mace
from kim_gnn.verification.structures import battery, property_cases

SPECIES = ("Si", "C")
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}
RESIDUAL = "RealAgnosticResidualInteractionBlock"
DENSITY = "RealAgnosticDensityInteractionBlock"


def _pair(mace_models, tmp_path, **options):
    source = mace_models.model(**options)
    paths = []
    for prune in (True, False):
        path = tmp_path / f"prune-{prune}.pt"
        convert_mace(source, prune=prune).save(str(path))
        paths.append(path)
    return paths


@pytest.mark.parametrize("num_layers,dtype,interaction,extra", [
    (1, "float64", RESIDUAL, dict(zbl=True)),
    (2, "float32", DENSITY, dict(zbl=True, distance_transform="Agnesi")),
    (3, "float64", DENSITY, dict(scale_shift=False)),
    (2, "float64", RESIDUAL, dict(use_last_readout_only=True, correlation=3)),
    (3, "float32", RESIDUAL, dict()),
])
def test_pruned_equals_unpruned_on_the_battery(mace_models, staged_runs, tmp_path, num_layers, dtype, interaction,
                                                extra):
    pruned, unpruned = _pair(mace_models, tmp_path, num_interactions=num_layers, species=SPECIES, model_dtype=dtype,
                             interaction=interaction, seed=num_layers, **extra)
    assert read_spec(pruned).details["pruned"] == "true"
    assert read_spec(unpruned).details["pruned"] == "false"
    staged_runs.assert_same_results(pruned, unpruned, battery(SPECIES, 3.5) + property_cases(SPECIES, 3.5),
                                    TOLERANCE[dtype])


def test_pruned_model_under_default_float32_and_without_mace(mace_models, staged_runs):
    options = dict(num_interactions=3, species=SPECIES, model_dtype="float64", zbl=True)
    path = mace_models.converted(**options)
    assert read_spec(path).details["pruned"] == "true"
    atoms = battery(SPECIES, 3.5)[1].atoms
    as_float32, as_float64 = staged_runs.under_default_dtypes(path, atoms)
    assert as_float32.energy == as_float64.energy
    np.testing.assert_array_equal(as_float32.forces, as_float64.forces)
    assert staged_runs.energy_without_architecture_packages(path, atoms) == pytest.approx(as_float64.energy, abs=1e-12)
