import inspect

import pytest
import torch

from kim_gnn import contract
from kim_gnn.contract import StagedModelSpec
from kim_gnn.errors import KimGnnError


def test_param_file_round_trip():
    spec = StagedModelSpec(species=["Si", "C"], cutoff=4.25, num_layers=3)
    text = contract.render_param_file(spec)
    parsed = contract.parse_param_file(text)
    assert parsed == {
        "species": ["Si", "C"], "cutoff": 4.25, "num_layers": 3, "model_file": "model.pt",
        "returns_forces": False, "num_inputs": 6,
    }
    # The driver consumes one line after each value unconditionally: each value
    # is followed by a blank line (or the next value of a two-value block).
    lines = text.splitlines()
    assert lines[lines.index("Graph") + 1] == ""
    assert lines[lines.index("False") + 1] == ""


@pytest.mark.parametrize("name", ["Si_NequIP__MO_000000000000_000", "A__MO_123456789012_001"])
def test_valid_item_names(name):
    assert contract.validate_item_name(name) == name


@pytest.mark.parametrize("name", ["model", "Si__MO_1_000", "1Si__MO_000000000000_000", "Si-x__MO_000000000000_000",
                                  "Si__MD_000000000000_000"])
def test_invalid_item_names(name):
    with pytest.raises(KimGnnError, match="invalid KIM portable model name"):
        contract.validate_item_name(name)


def test_cmakelists_names_driver_and_files():
    text = contract.render_cmakelists("X__MO_000000000000_000", "Other__MD_000000000000_000")
    assert 'DRIVER_NAME     "Other__MD_000000000000_000"' in text
    assert 'PARAMETER_FILES "file.param" "model.pt"' in text
    assert "project(X__MO_000000000000_000)" in text


@pytest.mark.parametrize("num_layers", [1, 2, 5])
def test_positional_entry_has_driver_signature(num_layers, tmp_path):
    class Inner(torch.nn.Module):
        def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: list[torch.Tensor],
                    contributions: torch.Tensor) -> torch.Tensor:
            return coordinates.sum(1) * (contributions == 0).to(coordinates.dtype) + float(len(graphs))

    scripted = torch.jit.script(contract.positional_entry_class(num_layers)(Inner()))
    names = [a.name for a in scripted.forward.schema.arguments][1:]
    assert names == contract.input_names(num_layers)
    scripted.save(str(tmp_path / "m.pt"))
    loaded = torch.jit.freeze(torch.jit.load(str(tmp_path / "m.pt")).eval())
    edges = [torch.zeros(2, 0, dtype=torch.int64)] * num_layers
    out = loaded(torch.zeros(2, dtype=torch.int64), torch.ones(2, 3, dtype=torch.float64), *edges,
                 torch.tensor([0, 1]))
    assert out.tolist() == [3.0 + num_layers, float(num_layers)]


def test_spec_extra_files_round_trip():
    spec = StagedModelSpec(species=["H", "O"], cutoff=5.0, num_layers=2, model_dtype="float32",
                           architecture="nequip", details={"a": "b"})
    files = {k: v.encode() for k, v in spec.to_extra_files().items()}
    back = StagedModelSpec.from_extra_files(files)
    assert back == spec
    assert back.influence_distance == 10.0


def test_missing_metadata_is_a_clear_error():
    with pytest.raises(KimGnnError, match="not a kim-gnn converted model"):
        StagedModelSpec.from_extra_files(contract.empty_extra_files())


def test_contract_module_does_not_restate_itself():
    # one source of truth: the default driver name appears once in the package
    import kim_gnn

    root = inspect.getfile(kim_gnn).rsplit("/", 1)[0]
    import pathlib

    hits = [p for p in pathlib.Path(root).rglob("*.py") if "TorchML__MD_173118614730_000" in p.read_text()]
    assert [p.name for p in hits] == ["driver_facts.py"]
