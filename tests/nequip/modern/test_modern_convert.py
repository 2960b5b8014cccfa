"""The nequip >= 0.7 adapter: detection, what it refuses (by name), species
and type maps, provenance, and what the emitted TorchScript contains."""

import copy
import re
import zipfile

import pytest
import torch

from kim_gnn import convert_nequip
from kim_gnn.adapters import detect_adapter
from kim_gnn.errors import KimGnnError, UnsupportedModelError
from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)

SMALL = dict(species=("Si",), num_layers=1, seed=7)


def test_every_artifact_is_detected_as_nequip_modern(modern_models):
    options = dict(species=("Si", "C"), num_layers=2, pair_potential="ZBL", model_dtype="float64", seed=1)
    for source in (modern_models.checkpoint(**options), modern_models.package(**options),
                   modern_models.compiled(**options), modern_models.in_memory(**options)):
        assert detect_adapter(source).name == "nequip-modern"


def test_aot_inductor_file_is_refused_naming_what_to_give(tmp_path):
    path = tmp_path / "model.nequip.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/data/aotinductor/model/model.wrapper.cpp", "// compiled")
    with pytest.raises(UnsupportedModelError, match=r"AOT Inductor.*\.nequip\.zip"):
        convert_nequip(path)
    with pytest.raises(UnsupportedModelError, match=r"\.nequip\.zip"):
        from kim_gnn import convert

        convert(path)


def test_charge_embedding_is_refused_by_name():
    model = _charge_model()
    with pytest.raises(UnsupportedModelError, match=r"charge.*(per-structure|not local)"):
        convert_nequip(model)


def _charge_model():
    """A NequIP model with a total-charge embedding, built with nequip's own builder."""
    import warnings

    from hydra.utils import get_method

    from kim_gnn.nequip.modern.example import model_config
    from kim_gnn.nequip.modern.load import restore_torch_state

    with restore_torch_state(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nequip.utils.global_state import set_global_state

        set_global_state()
        config = model_config(**SMALL)
        builder = get_method(config.pop("_target_"))
        config["categorical_graph_field_embed"] = [{"field": "charge", "num_features": 2, "min": -1, "max": 1}]
        return builder(**config).eval()


class _Unknown(torch.nn.Module):
    def forward(self, data):
        return data


def test_unknown_module_is_refused_by_name(modern_models):
    model = copy.deepcopy(modern_models.in_memory(**SMALL))
    func = model.model.func
    func.per_type_energy_scale_shift = _Unknown()
    with pytest.raises(UnsupportedModelError, match=r"per_type_energy_scale_shift.*_Unknown"):
        convert_nequip(model)


def test_mean_energy_reduction_is_refused(modern_models):
    model = copy.deepcopy(modern_models.in_memory(**SMALL))
    model.model.func.total_energy_sum.reduce = "mean"
    with pytest.raises(UnsupportedModelError, match=r"total_energy_sum.*mean"):
        convert_nequip(model)


def test_conversion_leaves_the_in_memory_model_untouched(modern_models):
    model = modern_models.in_memory(**SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m).__name__ for m in model.modules()]
    convert_nequip(model)
    assert kinds == [type(m).__name__ for m in model.modules()]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.get_default_dtype() == torch.float32


def test_emitted_model_has_no_nequip_code_or_custom_ops(modern_models, tmp_path):
    staged = convert_nequip(modern_models.in_memory(architecture="allegro", **SMALL))
    staged.save(tmp_path / "model.pt")
    ops = set()
    with zipfile.ZipFile(tmp_path / "model.pt") as zf:
        for name in zf.namelist():
            if name.endswith(".py"):
                ops |= set(re.findall(r"\bops\.(\w+)\.", zf.read(name).decode()))
    assert ops <= {"aten", "prim"}, ops


def test_several_types_for_one_element_need_a_type_map(modern_models):
    """Types Si, Ca, Cb where the model's ZBL term says Ca and Cb are carbon."""
    options = dict(species=("Si", "C"), type_names=("Si", "Ca", "Cb"), chemical_species=("Si", "C", "C"),
                   pair_potential="ZBL", num_layers=1, seed=8)
    model = modern_models.in_memory(**options)
    with pytest.raises(UnsupportedModelError, match=r"C: Ca or Cb.*--type-map"):
        convert_nequip(model)
    with pytest.raises(KimGnnError, match=r"model's types are Si Ca Cb"):
        convert_nequip(model, type_map="Si=Si,C=Cx")
    staged = convert_nequip(model, type_map="Si=Si,C=Cb")
    spec = staged.spec
    assert spec.species == ["Si", "C"] and spec.details["type_map"] == "Si=Si,C=Cb"
    from kim_gnn.verification.harness import verify

    report = verify(model, staged)
    assert report.passed, report.summary()


def test_type_names_that_are_not_symbols_use_the_training_data_map(modern_models):
    """A checkpoint trained with types SiX, CX (chemical_species_to_atom_type_map
    in its data config): the map comes from there, on both sides of verify."""
    options = dict(species=("Si", "C"), type_names=("SiX", "CX"), chemical_species=("Si", "C"), num_layers=1, seed=9)
    ckpt = modern_models.checkpoint(**options)
    staged = convert_nequip(ckpt)
    spec = staged.spec
    assert spec.species == ["Si", "C"] and spec.details["type_map_source"] == "training config"
    from kim_gnn.verification.harness import verify

    report = verify(ckpt, staged, properties=False)
    assert report.passed, report.summary()
    # in memory, nothing says what SiX is
    with pytest.raises(UnsupportedModelError, match=r"not chemical symbols.*--type-map"):
        convert_nequip(modern_models.in_memory(**{k: v for k, v in options.items() if k != "chemical_species"}))


def test_a_renamed_package_is_still_a_package(modern_models, tmp_path):
    import shutil

    renamed = tmp_path / "my_model.zip"
    shutil.copy(modern_models.package(**SMALL), renamed)
    staged = convert_nequip(renamed)
    assert staged.spec.details["artifact"] == "package"
