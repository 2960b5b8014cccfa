"""Every combination of the model matrix passes the whole verification battery
against the original periodic model (fresh process, default torch settings)."""

import itertools

import pytest

from kim_gnn.executor import read_spec
from kim_gnn.verification.harness import verify

MATRIX = list(itertools.product(
    [1, 2, 3, 5],  # message-passing layers
    [("Si",), ("Si", "C", "Ge")],  # species
    ["float32", "float64"],  # model dtype
    [1, 2],  # l_max
    [False, True],  # ZBL pair potential
))


def _id(combo):
    layers, species, dtype, l_max, zbl = combo
    return f"L{layers}-{len(species)}sp-{dtype}-lmax{l_max}{'-zbl' if zbl else ''}"


@pytest.mark.slow
@pytest.mark.parametrize("combo", MATRIX, ids=[_id(c) for c in MATRIX])
def test_converted_model_equals_original(nequip_models, combo):
    layers, species, dtype, l_max, zbl = combo
    options = dict(num_layers=layers, species=species, model_dtype=dtype, l_max=l_max, zbl=zbl, seed=layers)
    converted = nequip_models.converted(**options)
    # every optimisation applied: pruned, every layer on receivers only, the scalar-only last layer
    details = read_spec(converted).details
    assert details["pruned"] == "true", details
    assert (details["receiver_only_layers"], details["whole_layers"]) == (str(layers), "0"), details
    assert details["scalar_only_last_layer"] == "true", details
    assert details["kernels"] == "aten" and details["kernels_applied"] == "none", details
    report = verify(nequip_models.deployed(**options), converted)
    assert report.passed, "\n" + report.summary()
    assert len(report.cases) == 13
