"""kimspec.edn of the items kim-gnn writes: filled from the model and from
``convert --metadata`` (nothing invented), written and read back with
kim-edn, consistent with file.param and CMakeLists.txt; what loading a file
runs; a converted item holds only text and one TorchScript archive."""

import json
import os
import re
import zipfile

import pytest
from skip_policy import require_import

from kim_gnn import contract, kimspec
from kim_gnn.cli import loading_kind, main, verify_command
from kim_gnn.errors import KimGnnError

kim_edn = require_import("kim_edn", "kim-edn is installed by scripts/setup.sh (extras legacy/test)", module_level=True)

ITEM = "Si_Spec__MO_000000000000_000"

METADATA_YAML = """\
title: A NequIP potential for Si
description: |
  Two layers, seeded weights.
developers: [Ada Lovelace, Alan Turing]
citations:
  - https://doi.org/10.1038/s41467-022-29939-5
  - |
    @article{batzner2022,
      author = {Batzner, Simon and Musaelian, Albert},
      title = {{E(3)}-equivariant graph neural networks},
      journal = "Nat. Commun.", year = 2022, volume = {13},
    }
    @misc{data2024, title = {Si data}, year = {2024}}
license: CDDL-1.0
publication_year: 2024
training_data: doi:10.5281/zenodo.1
"""


@pytest.fixture(scope="module")
def deployed(nequip_models):
    return nequip_models.deployed(num_layers=2, species=("Si", "C"))


@pytest.fixture(scope="module")
def converted_item(deployed, tmp_path_factory):
    root = tmp_path_factory.mktemp("kimspec")
    (root / "metadata.yaml").write_text(METADATA_YAML)
    item = root / ITEM
    assert main(["convert", deployed, "-o", str(item), "--driver-name", contract.KIM_GNN_DRIVER_NAME,
                 "--metadata", str(root / "metadata.yaml"), "-q"]) == 0
    return item


def test_metadata_yaml_becomes_kimspec_entries(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(METADATA_YAML)
    entries = kimspec.load_metadata(str(path))
    assert entries["title"] == "A NequIP potential for Si"
    assert entries["description"] == "Two layers, seeded weights."
    assert entries["developer"] == ["Ada Lovelace", "Alan Turing"]
    assert entries["license"] == "CDDL-1.0" and entries["publication-year"] == "2024"
    citations = entries["source-citations"]
    assert citations[0] == {"doi": "10.1038/s41467-022-29939-5"}
    assert citations[1] == {"recordtype": "article", "recordkey": "batzner2022",
                            "author": "Batzner, Simon and Musaelian, Albert",
                            "title": "{E(3)}-equivariant graph neural networks", "journal": "Nat. Commun.",
                            "year": "2022", "volume": "13"}
    assert citations[2] == {"recordtype": "misc", "recordkey": "data2024", "title": "Si data", "year": "2024"}
    assert entries["kim-gnn"] == {"training-data": "doi:10.5281/zenodo.1"}


def test_metadata_json_and_fields_left_out(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"title": "T", "citations": "10.1000/xyz", "license": ""}))
    assert kimspec.load_metadata(str(path)) == {"title": "T", "source-citations": [{"doi": "10.1000/xyz"}]}


@pytest.mark.parametrize("text,message", [
    ("titel: x\n", "unknown field 'titel'"),
    ("publication_year: last year\n", "must be a year"),
    ("developers: {a: 1}\n", "developers must be"),
    ("citations: [not a citation]\n", "neither a DOI nor a BibTeX entry"),
    ("citations: ['@article{k, title = {open'] \n", "malformed BibTeX"),
    ("- a list\n", "must hold a map"),
    ("title: [unclosed\n", "neither valid JSON nor valid YAML"),
])
def test_bad_metadata_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(KimGnnError, match=re.escape(message)):
        kimspec.load_metadata(str(path))


def test_converted_item_kimspec_matches_param_and_cmakelists(converted_item, deployed):
    with open(converted_item / "kimspec.edn") as fh:
        spec = kim_edn.load(fh)
    param = contract.parse_param_file((converted_item / "file.param").read_text())
    cmake = (converted_item / "CMakeLists.txt").read_text()
    assert spec["extended-id"] == ITEM and f"project({ITEM})" in cmake
    assert spec["species"] == param["species"] and sorted(spec["species"]) == ["C", "Si"]  # the model's order
    assert spec["model-driver"] == contract.KIM_GNN_DRIVER_NAME
    assert re.search(r'DRIVER_NAME\s+"' + re.escape(spec["model-driver"]) + '"', cmake)
    assert re.search(r"KIM-API-ITEMS " + re.escape(spec["kim-api-version"]) + " ", cmake)
    assert spec["domain"] == "openkim.org" and spec["potential-type"] == "nequip"
    assert spec["kim-gnn"]["architecture-version"].startswith("0.6")
    assert spec["kim-gnn"]["source-sha256"] == contract.file_sha256(deployed)
    assert spec["kim-gnn"]["num-layers"] == param["num_layers"] and spec["kim-gnn"]["cutoff"] == param["cutoff"]
    assert spec["title"] == "A NequIP potential for Si" and spec["license"] == "CDDL-1.0"


def test_without_metadata_nothing_is_invented(deployed, tmp_path):
    item = tmp_path / ITEM
    assert main(["convert", deployed, "-o", str(item), "-q"]) == 0
    spec = kimspec.read(str(item))
    assert set(spec) == {"extended-id", "domain", "kim-api-version", "model-driver", "species", "potential-type",
                         "content-origin", "kim-gnn"}
    assert spec["model-driver"] == contract.DEFAULT_DRIVER_NAME


def test_bad_metadata_is_refused_before_converting(deployed, tmp_path, capsys):
    (tmp_path / "m.yaml").write_text("author: me\n")
    assert main(["convert", deployed, "-o", str(tmp_path / ITEM), "--metadata", str(tmp_path / "m.yaml")]) == 2
    assert "unknown field 'author'" in capsys.readouterr().err
    assert not (tmp_path / ITEM).exists()


def test_info_shows_the_kimspec_and_what_loading_runs(converted_item, capsys):
    assert main(["info", str(converted_item)]) == 0
    out = capsys.readouterr().out
    assert "kimspec.edn:" in out
    assert re.search(r"^\s+title\s+A NequIP potential for Si$", out, re.M)
    assert re.search(r"^\s+source-citations\s+10.1038/s41467-022-29939-5 \| batzner2022 \| data2024$", out, re.M)
    assert re.search(r"^loading\s+TorchScript archive: loading runs no Python code", out, re.M)
    assert main(["info", str(converted_item), "--json"]) == 0
    species = contract.parse_param_file((converted_item / "file.param").read_text())["species"]
    assert json.loads(capsys.readouterr().out)["kimspec"]["species"] == species


def test_loading_kind_of_the_inputs(deployed, mace_models, tmp_path):
    assert loading_kind(deployed) == "torchscript"  # NequIP 0.6 deployed.pth
    assert loading_kind(mace_models.model(num_interactions=1, species=("Si",))) == "pickle"  # MACE .model
    import torch

    torch.save({"state_dict": {}}, tmp_path / "best_model.pth")  # a training checkpoint
    assert loading_kind(str(tmp_path / "best_model.pth")) == "pickle"


def test_converted_item_holds_only_text_and_one_torchscript_archive(converted_item):
    """A published item runs no pickled Python when installed and loaded:
    every file is UTF-8 text except model.pt, a TorchScript archive (code/,
    constants.pkl, data.pkl: read by TorchScript's own loader)."""
    archives = []
    for name in sorted(os.listdir(converted_item)):
        data = (converted_item / name).read_bytes()
        if zipfile.is_zipfile(converted_item / name):
            archives.append(name)
            continue
        assert b"\0" not in data, name
        data.decode("utf-8")
    assert archives == ["model.pt"]
    with zipfile.ZipFile(converted_item / "model.pt") as zf:
        names = zf.namelist()
    assert any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names)
    assert loading_kind(str(converted_item / "model.pt")) == "torchscript"


def test_verify_command_names_the_environment_that_can_run_it(monkeypatch):
    import importlib.metadata as metadata

    spec = contract.StagedModelSpec(species=["Si"], cutoff=4.0, num_layers=2, architecture="nequip",
                                    architecture_version="0.6.2")
    monkeypatch.setattr(metadata, "version", lambda name: "0.19.1")
    command = verify_command("deployed.pth", "Si__MO_000000000000_000", spec)
    assert command.startswith(".venv/bin/kim-gnn verify deployed.pth Si__MO_000000000000_000  (")
    assert "nequip 0.19.1" in command
    monkeypatch.setattr(metadata, "version", lambda name: "0.6.2")
    assert verify_command("deployed.pth", "X", spec) == "kim-gnn verify deployed.pth X"
    spec.architecture = "mace"
    assert verify_command("m.model", "X", spec) == "kim-gnn verify m.model X"


def test_verify_table_prints_the_finite_difference_stress_limit():
    from kim_gnn.verification.harness import CaseReport, VerificationReport

    report = VerificationReport("o", "c", "nequip", "float32", {"stress": 1e-5})
    report.cases = [CaseReport("bulk", 8, True, max_stress_error=2.4e-5, stress_limit=3.1e-5,
                               stress_limit_finite_difference=True),
                    CaseReport("alloy", 8, True, max_stress_error=1e-6, stress_limit=1e-5)]
    lines = report.summary().splitlines()
    bulk = next(line for line in lines if line.startswith("bulk"))
    assert "stress limit 3.10e-05" in bulk and "finite differences" in bulk
    assert "stress limit" not in next(line for line in lines if line.startswith("alloy"))
