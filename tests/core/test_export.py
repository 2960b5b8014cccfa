"""The portable model directory appears complete or not at all."""

import os

import pytest

from kim_gnn import contract
from kim_gnn.errors import KimGnnError
from kim_gnn.export import write_portable_model

ITEM = "Si_Test__MO_000000000000_000"


@pytest.fixture(scope="module")
def staged(nequip_models):
    from kim_gnn.nequip import convert_nequip

    return convert_nequip(nequip_models.deployed(num_layers=1))


def test_writes_the_four_files(staged, tmp_path):
    out = write_portable_model(staged, tmp_path / ITEM)
    assert sorted(os.listdir(out)) == ["CMakeLists.txt", "file.param", "kimspec.edn", "model.pt"]
    parsed = contract.parse_param_file((tmp_path / ITEM / "file.param").read_text())
    assert parsed["num_layers"] == 1 and parsed["model_file"] == "model.pt"
    assert os.stat(out).st_mode & 0o755 == 0o755


def test_existing_directory_is_kept_without_force(staged, tmp_path):
    (tmp_path / ITEM).mkdir()
    (tmp_path / ITEM / "mine.txt").write_text("keep")
    with pytest.raises(KimGnnError, match="already exists"):
        write_portable_model(staged, tmp_path / ITEM)
    assert os.listdir(tmp_path / ITEM) == ["mine.txt"]
    write_portable_model(staged, tmp_path / ITEM, force=True)
    assert sorted(os.listdir(tmp_path / ITEM)) == ["CMakeLists.txt", "file.param", "kimspec.edn", "model.pt"]
    assert sorted(os.listdir(tmp_path)) == [ITEM]


def test_failure_midway_leaves_no_directory(staged, tmp_path, monkeypatch):
    def broken(spec, model_file="model.pt"):
        raise OSError("disk full")

    monkeypatch.setattr(contract, "render_param_file", broken)
    with pytest.raises(OSError, match="disk full"):
        write_portable_model(staged, tmp_path / ITEM)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(out="bad_name"), "invalid KIM portable model name"),
    (dict(out=ITEM, driver_name="TorchML"), "invalid KIM model driver name"),
])
def test_invalid_names(staged, tmp_path, kwargs, message):
    with pytest.raises(KimGnnError, match=message):
        write_portable_model(staged, tmp_path / kwargs["out"], **{k: v for k, v in kwargs.items() if k != "out"})
    assert os.listdir(tmp_path) == []


def test_unconverted_module_is_refused(tmp_path):
    import torch

    with pytest.raises(KimGnnError, match="no kim-gnn spec"):
        write_portable_model(torch.jit.script(torch.nn.Linear(1, 1)), tmp_path / ITEM)
