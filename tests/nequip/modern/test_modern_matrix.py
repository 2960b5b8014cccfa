"""nequip 0.19 NequIP and Allegro models, in each artifact format, pass the
whole verification battery (original: nequip's own periodic evaluation;
converted: the driver's way, in a fresh process with float32 as torch's
default dtype where nequip and e3nn cannot be imported)."""

import pytest
from skip_policy import missing

from kim_gnn.verification.harness import verify

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)

# Two species, two layers, per-type avg_num_neighbors (the builder's default
# is a dict per type), ZBL, float64: in every artifact format.
BASE = dict(species=("Si", "C"), num_layers=2, pair_potential="ZBL", model_dtype="float64", seed=1)
CUTOFFS3 = {"Si": 4.0, "C": {"Si": 3.5, "C": 3.1, "O": 2.9}, "O": 3.4}


def _check(original, converted):
    report = verify(original, converted)
    assert report.passed, report.summary()
    return report


def _convert(source, **options):
    from kim_gnn import convert_nequip

    return convert_nequip(source, **options)


@pytest.mark.parametrize("artifact", ["in_memory", "checkpoint", "package", "compiled"])
def test_nequip_two_species_zbl_float64_every_artifact(modern_models, artifact):
    source = getattr(modern_models, artifact)(**BASE)
    staged = _convert(source)
    spec = staged.spec
    assert spec.architecture == "nequip-modern" and spec.num_layers == 2 and spec.cutoff == 4.0
    assert spec.species == ["Si", "C"] and spec.details["pair_potentials"] == "ZBL"
    assert spec.details["artifact"] == artifact.replace("_", "-")
    _check(source, staged)


def test_nequip_three_species_float32_per_edge_type_cutoffs(modern_models):
    options = dict(species=("Si", "C", "O"), num_layers=2, model_dtype="float32", per_edge_type_cutoff=CUTOFFS3, seed=2)
    source = modern_models.compiled(**options)
    staged = _convert(source)
    assert staged.spec.model_dtype == "float32" and staged.spec.cutoff == 4.0
    assert staged.spec.details["per_edge_type_cutoff"]
    _check(source, staged)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nequip_one_species_three_layers_global_avg_num_neighbors(modern_models, dtype):
    model = modern_models.in_memory(species=("Si",), num_layers=3, avg_num_neighbors=9.5, r_max=3.6, seed=3,
                                    model_dtype=dtype)
    staged = _convert(model)
    assert staged.spec.num_layers == 3 and staged.spec.model_dtype == dtype
    _check(model, staged)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_allegro_one_species(modern_models, dtype):
    source = modern_models.package(architecture="allegro", species=("Si",), num_layers=2, seed=4, model_dtype=dtype)
    staged = _convert(source)
    spec = staged.spec
    assert spec.num_layers == 1 and spec.details["model"] == "Allegro" and spec.model_dtype == dtype
    _check(source, staged)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_allegro_three_species_zbl_per_edge_type_cutoffs(modern_models, dtype):
    model = modern_models.in_memory(architecture="allegro", species=("Si", "C", "O"), num_layers=1, model_dtype=dtype,
                                    pair_potential="ZBL", per_edge_type_cutoff=CUTOFFS3, seed=5)
    staged = _convert(model)
    assert staged.spec.num_layers == 1 and staged.spec.model_dtype == dtype
    _check(model, staged)


@pytest.mark.parametrize("artifact", ["checkpoint", "compiled"])
def test_allegro_two_species_float32_other_artifacts(modern_models, artifact):
    source = getattr(modern_models, artifact)(architecture="allegro", species=("Si", "C"), num_layers=2,
                                              model_dtype="float32", pair_potential="ZBL", seed=6)
    staged = _convert(source)
    assert staged.spec.details["artifact"] == artifact and staged.spec.details["model"] == "Allegro"
    _check(source, staged)


def test_allegro_spline_scalar_embedding(modern_models):
    model = modern_models.in_memory(architecture="allegro", species=("Si", "C"), num_layers=2, scalar_embed="spline", seed=10)
    _check(model, _convert(model))


# Every model kind pruned (the default), unpruned (the identity plan) and with
# the kim_gnn kernels, in both dtypes: the battery against the original, and
# the spec records what was applied.
MODES = {"pruned": {}, "unpruned": {"prune": False}, "kernels": {"kernels": "kim_gnn"}}
KINDS = {
    "nequip": dict(species=("Si", "C"), num_layers=3, l_max=2, pair_potential="ZBL", seed=31),
    "allegro": dict(architecture="allegro", species=("Si", "C"), num_layers=2, pair_potential="ZBL", seed=32),
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_model_kind_pruned_unpruned_and_with_kernels(modern_models, kind, mode, dtype):
    from kim_gnn import kernels

    if mode == "kernels" and not kernels.available():
        missing(f"the kim_gnn op library is not built ({kernels.BUILD_COMMAND})")
    source = modern_models.compiled(**KINDS[kind], model_dtype=dtype) if dtype == "float32" else \
        modern_models.in_memory(**KINDS[kind], model_dtype=dtype)
    staged = _convert(source, **MODES[mode])
    details = staged.spec.details
    assert details["pruned"] == ("false" if mode == "unpruned" else "true"), details
    assert details["kernels"] == ("kim_gnn" if mode == "kernels" else "aten"), details
    # every layer of these models has exactly the parts the receiver-only forms reimplement
    assert details["receiver_only_layers"] == ("3" if kind == "nequip" else "1") and details["whole_layers"] == "0"
    if mode == "kernels":
        assert details["kernels_applied"] == (
            "layers 1 2 3" if kind == "nequip" else "Allegro's environment sums; EdgewiseReduce"), details
        # the ZBL term sums with nequip's own scatter
        assert "pair potential ZBL" in details["kernels_not_applied"], details
        if kind == "allegro":
            assert "inside Allegro's tensor products" in details["kernels_not_applied"], details
    else:
        assert details["kernels_applied"] == "none" and "kernels_not_applied" not in details, details
    _check(source, staged)
