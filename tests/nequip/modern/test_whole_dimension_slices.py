"""The converted nequip >= 0.7 model (compiled file, in-memory compiled and
eager models) holds fewer of TorchScript's whole-dimension slices
(``kim_gnn.torchscript_graphs``) than the original, in its saved code too,
with the same numbers as the conversion without their removal; the user's
model keeps its own."""

import pytest
import torch

from kim_gnn.nequip.modern import convert as modern_convert
from kim_gnn.nequip.modern.load import is_modern_version, nequip_version
from kim_gnn.torchscript_graphs import count_saved_code_slices, count_whole_dimension_slices, private_scripted_copies
from kim_gnn.verification.structures import battery

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)

MODEL = dict(species=("Si",), num_layers=3, l_max=2, model_dtype="float64", seed=7)


@pytest.mark.parametrize("form", ["compiled file", "in-memory compiled", "eager"])
def test_whole_dimension_slices_are_dropped_with_the_same_numbers(modern_models, staged_runs, tmp_path, monkeypatch,
                                                                  form):
    compiled = modern_models.compiled(**MODEL)
    source = {"compiled file": lambda: compiled, "in-memory compiled": lambda: torch.jit.load(compiled),
              "eager": lambda: modern_models.in_memory(**MODEL)}[form]()
    before = count_whole_dimension_slices(source) if form == "in-memory compiled" else None
    dropped, kept = tmp_path / "dropped.pt", tmp_path / "kept.pt"
    modern_convert.convert_nequip_modern(source).save(str(dropped))
    if before is not None:
        assert before > 0 and count_whole_dimension_slices(source) == before  # the user's model keeps its slices
    with monkeypatch.context() as patch:
        patch.setattr(modern_convert, "without_whole_dimension_slices", private_scripted_copies)
        modern_convert.convert_nequip_modern(source).save(str(kept))
    assert count_saved_code_slices(kept) > 0 and count_saved_code_slices(dropped) == 0
    assert count_whole_dimension_slices(torch.jit.load(str(dropped))) < count_whole_dimension_slices(
        torch.jit.load(str(kept)))
    staged_runs.assert_same_results(dropped, kept, battery(("Si",), 3.5)[:1], 1e-12)
