"""Per-atom virials of nequip >= 0.7 NequIP GNN and Allegro conversions
(docs/per-atom-virials.md): energy_and_edge_vectors through the NequIP
family's staged loop (kim_gnn/nequip/graph_stages.py on the core runtime),
folded by the executor, against the original's own edge forces (nequip's
ForceStressOutput given periodic edge vectors; kim_gnn/verification/atomic_virials_reference.py)."""

import os
import sys

import pytest

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from virial_checks import assert_same_virials, cases, check_against_original, check_calculator_stresses  # noqa: E402

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)

VARIANTS = [dict(prune=True), dict(prune=False), dict(prune=True, kernels="kim_gnn")]
MODELS = {
    "nequip": dict(species=("Si", "C"), num_layers=2, pair_potential="ZBL", model_dtype="float64", seed=1),
    "allegro": dict(architecture="allegro", species=("Si", "C"), num_layers=1, model_dtype="float64", seed=1),
}


def _convert(modern_models, tmp_path, name, options, **changes):
    from kim_gnn import convert_nequip
    from kim_gnn.nequip.modern.reference import NequIPModernOriginal

    model = modern_models.in_memory(**dict(MODELS[name], **changes))
    out = str(tmp_path / f"{name}-{len(os.listdir(tmp_path))}.pt")
    convert_nequip(model, **options).save(out)
    original = NequIPModernOriginal(model)
    return out, original


@pytest.mark.parametrize("name", sorted(MODELS))
def test_per_atom_virials_equal_the_originals_edge_forces(modern_models, tmp_path, name):
    model, original = _convert(modern_models, tmp_path, name, VARIANTS[0])
    check_against_original(model, original, ["Si", "C"], original.r_max)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_calculator_stresses_follow_ase_and_sum_to_the_stress(modern_models, tmp_path, name):
    model, original = _convert(modern_models, tmp_path, name, VARIANTS[0])
    check_calculator_stresses(model, original, ["Si", "C"], original.r_max)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_pruned_unpruned_and_kernels_give_the_same_per_atom_virials(modern_models, tmp_path, name):
    results = []
    for options in VARIANTS:
        model, original = _convert(modern_models, tmp_path, name, options)
        results.append(check_against_original(model, original, ["Si", "C"], original.r_max))
    assert_same_virials(results[1], results[0])
    assert_same_virials(results[2], results[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_per_atom_virials_to_their_precision(modern_models, tmp_path, name):
    model, original = _convert(modern_models, tmp_path, name, VARIANTS[0], model_dtype="float32")
    check_against_original(model, original, ["Si", "C"], original.r_max, rel=2e-5, sum_rel=2e-5)


def test_compiled_artifact_per_atom_virials(modern_models, tmp_path):
    """The compiled .nequip.pth (TorchScript children): the same loop records its edge vectors."""
    from kim_gnn import convert_nequip
    from kim_gnn.nequip.modern.reference import NequIPModernOriginal

    source = modern_models.compiled(**MODELS["nequip"])
    out = str(tmp_path / "compiled.pt")
    convert_nequip(source).save(out)
    original = NequIPModernOriginal(source)
    assert cases(["Si", "C"], original.r_max)
    check_against_original(out, original, ["Si", "C"], original.r_max)
