"""The converted NequIP 0.6 model holds fewer of TorchScript's
whole-dimension slices (``kim_gnn.torchscript_graphs``) than the deployed
model, in its saved code too, with the same numbers as the conversion
without their removal."""

import torch

from kim_gnn.nequip import convert_nequip
from kim_gnn.nequip.v06 import convert as nequip_convert
from kim_gnn.torchscript_graphs import count_saved_code_slices, count_whole_dimension_slices, private_scripted_copies
from kim_gnn.verification.structures import battery


def test_whole_dimension_slices_are_dropped_with_the_same_numbers(nequip_models, staged_runs, tmp_path, monkeypatch):
    deployed = nequip_models.deployed(num_layers=3, species=("Si",), model_dtype="float64", l_max=2, seed=5)
    user = torch.jit.load(deployed)
    assert count_whole_dimension_slices(user) > 0
    dropped, kept = tmp_path / "dropped.pt", tmp_path / "kept.pt"
    convert_nequip(deployed).save(str(dropped))
    with monkeypatch.context() as patch:
        patch.setattr(nequip_convert, "without_whole_dimension_slices", private_scripted_copies)
        convert_nequip(deployed).save(str(kept))
    assert count_saved_code_slices(kept) > 0 and count_saved_code_slices(dropped) == 0
    assert count_whole_dimension_slices(torch.jit.load(str(dropped))) < count_whole_dimension_slices(
        torch.jit.load(str(kept)))
    staged_runs.assert_same_results(dropped, kept, battery(("Si",), 3.5)[:1], 1e-12)
