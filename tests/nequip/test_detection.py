"""Recognising nequip >= 0.7 files needs no nequip: both environments
detect them, the legacy one says which environment converts them, and an
AOT Inductor .nequip.pt2 is refused everywhere with the file to give instead.
(Runs in both environments; the conversions themselves are in tests/nequip/modern.)"""

import zipfile

import pytest
import torch

from kim_gnn.adapters import detect_adapter
from kim_gnn.errors import KimGnnError, UnsupportedModelError
from kim_gnn.nequip.modern.load import artifact_kind, is_modern_version, nequip_version

LEGACY_ENV = not is_modern_version(nequip_version())


def _fake_package(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.nequip/model/package_metadata.txt", "package_version_id: 2\n")
        zf.writestr("model.nequip/.data/version", "6\n")
    return path


def _fake_checkpoint(path):
    torch.save({"state_dict": {}, "hyper_parameters": {"info_dict": {"training_module": {
        "_target_": "nequip.train.NequIPLightningModule"}}}}, path)
    return path


def _fake_compiled(path):
    module = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(module, path, _extra_files={"type_names": "Si", "r_max": "4.0", "model_dtype": "float64"})
    return path


def test_artifact_kinds(tmp_path):
    assert artifact_kind(_fake_package(tmp_path / "m.nequip.zip")) == "package"
    assert artifact_kind(_fake_checkpoint(tmp_path / "best.ckpt")) == "checkpoint"
    assert artifact_kind(_fake_compiled(tmp_path / "m.nequip.pth")) == "compiled"
    (tmp_path / "m.nequip.pt2").write_bytes(b"PK")
    assert artifact_kind(tmp_path / "m.nequip.pt2") == "aotinductor"
    (tmp_path / "other.txt").write_text("hello")
    assert artifact_kind(tmp_path / "other.txt") is None
    for name in ("m.nequip.zip", "best.ckpt", "m.nequip.pth"):
        assert detect_adapter(str(tmp_path / name)).name == "nequip-modern"


@pytest.mark.legacy_env
@pytest.mark.skipif(not LEGACY_ENV, reason="the message for environments without nequip >= 0.7")
@pytest.mark.parametrize("make", [_fake_package, _fake_checkpoint])
def test_legacy_environment_names_the_modern_one(tmp_path, make):
    from kim_gnn import convert_nequip

    source = make(tmp_path / ("m.nequip.zip" if make is _fake_package else "best.ckpt"))
    with pytest.raises(KimGnnError, match=r"nequip >= 0\.7.*setup_modern\.sh.*\.venv-modern"):
        convert_nequip(source)


def test_aot_inductor_is_refused_in_every_environment(tmp_path):
    from kim_gnn import convert

    path = tmp_path / "model.nequip.pt2"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(UnsupportedModelError, match=r"AOT Inductor.*\.nequip\.zip"):
        convert(path)
