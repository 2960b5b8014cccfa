"""What a MACE conversion applied is what its spec says; an interaction
block ReceiverInteraction does not know runs whole, exactly, with one
warning line (Python API and CLI), and --kernels kim_gnn then records the
parts it reaches."""

import os
import subprocess
import sys
import warnings

import pytest
from skip_policy import missing
import torch

from kim_gnn.errors import OptimisationNotApplied
from kim_gnn.executor import read_spec
from kim_gnn.verification.structures import battery

SPECIES = ("Si", "C")
OPTIONS = dict(num_interactions=2, species=SPECIES, model_dtype="float64", zbl=True, seed=5)


def _with_unknown_part(mace_models):
    """The model with an extra (unused) part in its first interaction block:
    a layout ReceiverInteraction does not know, still exact when run whole."""
    from kim_gnn.mace.convert import load_mace_model

    model = load_mace_model(mace_models.model(**OPTIONS))
    model.interactions[0].extra_part = torch.nn.Identity()
    return model


def test_unknown_interaction_layout_runs_whole_with_one_warning(mace_models, staged_runs, tmp_path):
    from kim_gnn.mace import convert_mace

    model = _with_unknown_part(mace_models)
    with pytest.warns(OptimisationNotApplied) as record:
        staged = convert_mace(model)
    messages = [str(w.message) for w in record if issubclass(w.category, OptimisationNotApplied)]
    assert len(messages) == 1, messages
    assert messages[0].startswith("receiver-only interactions not applied to interaction(s) 1 of 2"), messages
    assert "extra: extra_part" in messages[0]
    details = staged.spec.details
    assert (details["receiver_only_interactions"], details["whole_interactions"]) == ("1", "1")
    assert "extra: extra_part" in details["whole_interactions_reason"]
    # still the model: the same numbers as the fully receiver-only conversion
    fallback = tmp_path / "fallback.pt"
    staged.save(str(fallback))
    staged_runs.assert_same_results(fallback, mace_models.converted(**OPTIONS), battery(SPECIES, 3.5)[:4], 1e-12)


def test_kernels_record_the_parts_they_reach(mace_models):
    from kim_gnn import kernels
    from kim_gnn.mace import convert_mace

    if not kernels.available():
        missing("the kim_gnn op library is not built")
    with pytest.warns(OptimisationNotApplied) as record:
        staged = convert_mace(_with_unknown_part(mace_models), kernels="kim_gnn")
    messages = [str(w.message) for w in record if issubclass(w.category, OptimisationNotApplied)]
    assert len(messages) == 2 and messages[1].startswith("--kernels kim_gnn not applied to interaction(s) 1"), messages
    details = staged.spec.details
    assert (details["kernels"], details["kernels_applied"]) == ("kim_gnn", "interactions 2; ZBL"), details
    assert details["kernels_not_applied"].startswith("interaction(s) 1"), details
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimisationNotApplied)
        details = convert_mace(mace_models.model(**OPTIONS), kernels="kim_gnn").spec.details
    assert (details["kernels"], details["kernels_applied"]) == ("kim_gnn", "interactions 1 2; ZBL"), details
    assert "kernels_not_applied" not in details


def test_cli_prints_the_warning_line(mace_models, tmp_path):
    model = _with_unknown_part(mace_models)
    source = tmp_path / "unknown-part.model"
    torch.save(model, str(source))
    out = tmp_path / "W__MO_000000000000_000"
    proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", "convert", str(source), "-o", str(out)],
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kim-gnn: warning:")]
    assert len(lines) == 1 and "receiver-only interactions not applied to interaction(s) 1 of 2" in lines[0], \
        proc.stderr
    assert read_spec(out).details["whole_interactions"] == "1"
