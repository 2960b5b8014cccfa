"""The MACE adapter: what it carries over, what it refuses, where it runs."""

import copy
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from ase.build import bulk

from kim_gnn import contract
from kim_gnn.adapters import detect_adapter
from kim_gnn.cli import main
from kim_gnn.errors import KimGnnError, UnsupportedModelError
from kim_gnn.executor import StagedExecutor, read_spec
from kim_gnn.mace import convert_mace, inspect_mace
from kim_gnn.mace.example import build_example_mace
from kim_gnn.mace.reference import MACEOriginal
from kim_gnn.verification.harness import verify

ZBL64 = dict(species=("Si", "C"), zbl=True, num_interactions=2, model_dtype="float64")
HEADS = ("pt_head", "Default", "dft")
MULTIHEAD32 = dict(species=("Si", "C"), heads=HEADS, num_interactions=2, model_dtype="float32", zbl=True)


def _alloy():
    atoms = bulk("Si", "diamond", a=5.2, cubic=True)
    atoms.symbols[[0, 5]] = "C"
    atoms.rattle(0.05, seed=3)
    return atoms


def test_provenance_is_recorded(mace_models):
    spec = read_spec(mace_models.converted(**ZBL64))
    info = inspect_mace(mace_models.model(**ZBL64))
    assert spec.architecture == "mace" and spec.architecture_version == info.mace_version != ""
    assert spec.species == ["Si", "C"]  # the model's own order
    assert spec.cutoff == 3.5 and spec.num_layers == 2 and spec.model_dtype == "float64"
    assert spec.source_sha256 == info.sha256 and len(info.sha256) == 64
    assert spec.details["model_class"] == "ScaleShiftMACE" and spec.details["head"] == "Default"
    assert spec.details["pair_repulsion"] == "ZBL"
    assert spec.details["interactions"].split() == ["RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock"]


def test_forward_signature_and_outputs_follow_the_contract(mace_models):
    path = mace_models.converted(num_interactions=3)
    module = torch.jit.load(path)
    assert [a.name for a in module.forward.schema.arguments][1:] == contract.input_names(3)
    executor = StagedExecutor(path)
    graphs = executor.build_graphs(bulk("Si", "diamond", a=5.43))
    out = executor.module(torch.tensor(graphs.species), torch.tensor(graphs.positions, requires_grad=True),
                          *[torch.tensor(e) for e in graphs.edge_index], torch.tensor(graphs.contributions))
    assert out.dtype == torch.float64 and out.shape == (graphs.num_particles,)
    assert torch.all(out[graphs.num_contributing:] == 0) and torch.all(out[: graphs.num_contributing] != 0)


@pytest.mark.parametrize("options", [ZBL64, MULTIHEAD32], ids=["zbl-float64", "multihead-float32"])
def test_same_numbers_whatever_the_default_dtype(mace_models, options, staged_runs):
    """The C++ driver runs with float32 as torch's default dtype; MACE's ZBL
    and mask_head build tensors in the default dtype."""
    results = staged_runs.under_default_dtypes(mace_models.converted(**options), _alloy())
    assert results[0].energy == results[1].energy
    assert np.array_equal(results[0].forces, results[1].forces)


def test_runs_where_mace_and_e3nn_cannot_be_imported(mace_models, staged_runs):
    energy = staged_runs.energy_without_architecture_packages(mace_models.converted(**ZBL64), _alloy())
    expected = MACEOriginal(mace_models.model(**ZBL64)).evaluate(_alloy()).energy
    assert abs(energy - expected) < 1e-10 * max(1.0, abs(expected))


def test_in_memory_module_converts_and_verifies_and_is_left_unchanged():
    model = build_example_mace(None, species=("Si", "O"), num_interactions=2, zbl=True, distance_transform="Agnesi")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    staged = convert_mace(model)
    assert read_spec_of(staged).source_file == "<in-memory model>"
    report = verify(model, staged, properties=False)
    assert report.passed, report.summary()
    assert report.original == "<in-memory ScaleShiftMACE>"
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not isinstance(model.interactions[0], torch.jit.ScriptModule)


def read_spec_of(staged):
    return staged.spec


# --- multi-head models -------------------------------------------------------

def test_default_head_is_the_one_named_default(mace_models):
    spec = read_spec(mace_models.converted(**MULTIHEAD32))
    assert spec.details["head"] == "Default" and spec.details["heads"].split() == list(HEADS)


@pytest.mark.parametrize("head", ["pt_head", "dft"])
def test_chosen_head_is_converted_recorded_and_verified(mace_models, head):
    options = dict(MULTIHEAD32, model_dtype="float64")
    converted = mace_models.converted(head=head, **options)
    assert read_spec(converted).details["head"] == head
    report = verify(mace_models.model(**options), converted)
    assert report.passed, report.summary()


def test_heads_give_different_models(mace_models):
    options = dict(MULTIHEAD32, model_dtype="float64")
    energies = {h: StagedExecutor(mace_models.converted(head=h, **options)).run(_alloy()).energy for h in HEADS}
    assert len({round(e, 6) for e in energies.values()}) == 3
    # and each equals MACE's own evaluation of that head
    for h, e in energies.items():
        assert abs(MACEOriginal(mace_models.model(**options), head=h).evaluate(_alloy()).energy - e) < 1e-9


def test_unknown_head_and_no_default_head_are_refused(mace_models):
    with pytest.raises(KimGnnError, match="no head 'nope'; its heads are: pt_head, Default, dft"):
        convert_mace(mace_models.model(**MULTIHEAD32), head="nope")
    model = build_example_mace(None, heads=("a", "b"), num_interactions=1)
    with pytest.raises(KimGnnError, match=r"several heads \(a, b\).*--head"):
        convert_mace(model)


# --- refusals ----------------------------------------------------------------

@pytest.mark.parametrize("block", ["RealAgnosticAttResidualInteractionBlock",
                                   "RealAgnosticResidualNonLinearInteractionBlock"])
def test_unscriptable_interaction_blocks_are_refused_by_name(block):
    model = build_example_mace(None, interaction=block, interaction_first=block, num_interactions=2)
    with pytest.raises(UnsupportedModelError, match=f"interaction 0 is a {block}, which TorchScript cannot compile"):
        convert_mace(model)


def test_other_model_classes_are_refused_by_name():
    from mace.modules import ScaleShiftMACE

    class ChargedMACE(ScaleShiftMACE):
        pass

    model = build_example_mace(None, num_interactions=1)
    model.__class__ = ChargedMACE
    with pytest.raises(UnsupportedModelError, match="unsupported model class 'ChargedMACE'"):
        convert_mace(model)


def test_per_structure_embeddings_are_refused():
    model = build_example_mace(None, num_interactions=1)
    model.embedding_specs = {"total_charge": {}}
    model.joint_embedding = torch.nn.Linear(1, 1)
    with pytest.raises(UnsupportedModelError, match="per-structure inputs \\(total_charge\\)"):
        convert_mace(model)


def test_cuequivariance_configured_module_is_refused_with_the_way_back():
    model = build_example_mace(None, num_interactions=1)
    model.interactions[0].cueq_config = types.SimpleNamespace(enabled=True)
    with pytest.raises(UnsupportedModelError, match="cuEquivariance.*mace.cli.convert_cueq_e3nn import run"):
        convert_mace(model)


def test_cuequivariance_file_is_refused_with_the_command(tmp_path, monkeypatch):
    """A .model whose pickle refers to cuequivariance_torch layers (faked here:
    the real package is not installed) is refused before unpickling."""
    package = tmp_path / "fakepkgs" / "cuequivariance_torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import torch\nclass Linear(torch.nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fakepkgs"))
    import cuequivariance_torch

    model = build_example_mace(None, num_interactions=1)
    model.node_embedding.linear = cuequivariance_torch.Linear()
    torch.save(model, tmp_path / "cueq.model")
    monkeypatch.delitem(sys.modules, "cuequivariance_torch")
    assert detect_adapter(str(tmp_path / "cueq.model")).name == "mace"
    with pytest.raises(UnsupportedModelError, match="cuEquivariance layers; convert it back to e3nn first") as err:
        convert_mace(tmp_path / "cueq.model")
    assert "from mace.cli.convert_cueq_e3nn import run" in str(err.value) and "cueq_e3nn.model" in str(err.value)


def test_state_dict_checkpoint_is_refused(tmp_path):
    model = build_example_mace(None, num_interactions=1)
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.model")
    with pytest.raises(UnsupportedModelError, match="training checkpoint or state dict"):
        convert_mace(tmp_path / "ckpt.model")


def test_compiled_torchscript_mace_is_refused(tmp_path):
    from e3nn.util import jit

    model = build_example_mace(None, num_interactions=1)
    torch.jit.save(jit.compile(copy.deepcopy(model)), str(tmp_path / "compiled.model"))
    assert detect_adapter(str(tmp_path / "compiled.model")).name == "mace"
    with pytest.raises(UnsupportedModelError, match="compiled \\(TorchScript\\) MACE model"):
        convert_mace(tmp_path / "compiled.model")


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.model").write_text("garbage")
    with pytest.raises(KimGnnError, match="not a PyTorch archive"):
        convert_mace(tmp_path / "x.model")


def test_mixed_dtypes_are_refused():
    model = build_example_mace(None, num_interactions=1)
    model.readouts[0].linear.weight.data = model.readouts[0].linear.weight.data.float()
    with pytest.raises(UnsupportedModelError, match="float32, float64"):
        convert_mace(model)


# --- command line ------------------------------------------------------------

def test_cli_recognises_mace_converts_chosen_head_and_verifies(mace_models, tmp_path, capsys):
    options = dict(MULTIHEAD32, model_dtype="float64")
    source = mace_models.model(**options)
    out = tmp_path / "Multi__MO_000000000000_000"
    assert main(["convert", source, "-o", str(out), "--head", "dft", "-q"]) == 0
    text = capsys.readouterr().out
    assert "head dft" in text and "species Si C" in text
    assert read_spec(out).details["head"] == "dft"
    assert main(["verify", source, str(out), "-q", "--no-properties"]) == 0
    assert main(["info", str(out)]) == 0
    assert "detail.head" in capsys.readouterr().out


def test_cli_info_of_a_mace_file_is_clean_json(mace_models, tmp_path):
    import json

    source = mace_models.model(**ZBL64)
    proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", "info", source, "--json"],
                          capture_output=True, text=True, check=True)
    info = json.loads(proc.stdout)
    assert info["architecture"] == "mace" and info["species"] == ["Si", "C"] and info["head"] == "Default"


def test_cli_head_option_errors(mace_models, nequip_models, tmp_path, capsys):
    assert main(["convert", mace_models.model(**MULTIHEAD32), "-o", str(tmp_path / "A__MO_000000000000_000"),
                 "--head", "nope", "-q"]) == 2
    assert "no head 'nope'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "A__MO_000000000000_000")
    assert main(["convert", nequip_models.deployed(num_layers=1), "-o", str(tmp_path / "B__MO_000000000000_000"),
                 "--head", "x", "-q"]) == 2
    assert "--head do not apply to nequip models" in capsys.readouterr().err


def test_verify_rejects_a_converted_model_of_another_architecture(mace_models, nequip_models):
    with pytest.raises(KimGnnError, match="converted model is a nequip model but the original is a mace model"):
        verify(mace_models.model(**ZBL64), nequip_models.converted(num_layers=1))
