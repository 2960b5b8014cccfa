"""The fresh processes of the verification (kim_gnn/verification/fresh.py):
forked from a zygote interpreter, each is as fresh as a new interpreter
where it matters (torch's defaults, whatever the parent changed; the
parent's environment and working directory of that call; blocked packages
blocked), gives the same numbers as a new interpreter, and can be killed."""

import os
import subprocess

import numpy as np
import pytest
import torch

from kim_gnn.verification import fresh
from kim_gnn.verification.fresh import run_fresh


def _describe(**payload):
    run = run_fresh("describe", payload, blocked=("nequip", "mace"), timeout=payload.get("timeout"))
    assert run.returncode == 0 and run.result is not None, run.stderr
    return run.result


def test_each_job_is_a_new_child_of_one_zygote_with_torch_defaults(monkeypatch):
    monkeypatch.setenv("KIM_GNN_FRESH_ZYGOTE", "1")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the parent's settings never reach a job
    try:
        first, second = _describe(), _describe()
    finally:
        torch.set_default_dtype(before)
    assert first["default_dtype"] == second["default_dtype"] == "torch.float32"
    assert first["pid"] != second["pid"] != os.getpid()
    assert first["parent_pid"] == second["parent_pid"] == fresh._Zygote._current.proc.pid
    assert first["blocked_imported"] == []


def test_a_job_gets_the_working_directory_and_environment_of_its_call(monkeypatch, tmp_path):
    monkeypatch.setenv("KIM_GNN_FRESH_ZYGOTE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = _describe()
    zygote = fresh._Zygote._current
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # torch reads it at import: a new zygote
    monkeypatch.chdir(tmp_path)
    two = _describe()
    assert (one["num_threads"], two["num_threads"]) == (1, 2)
    assert two["cwd"] == str(tmp_path)
    assert fresh._Zygote._current is not zygote and not zygote.alive()
    # any other variable reaches the job as it is at the call, from the same zygote
    zygote = fresh._Zygote._current
    for value in ("a", "b"):
        monkeypatch.setenv("KIM_GNN_TEST_VARIABLE", value)
        assert _describe(variable="KIM_GNN_TEST_VARIABLE")["variable"] == value
    monkeypatch.delenv("KIM_GNN_TEST_VARIABLE")
    assert _describe(variable="KIM_GNN_TEST_VARIABLE")["variable"] is None
    assert fresh._Zygote._current is zygote


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["forked", "new-interpreter"])
def test_a_job_past_its_timeout_is_killed_and_the_next_one_runs(monkeypatch, zygote):
    monkeypatch.setenv("KIM_GNN_FRESH_ZYGOTE", zygote)
    with pytest.raises(subprocess.TimeoutExpired):
        _describe(sleep=60, timeout=2)
    assert _describe()["default_dtype"] == "torch.float32"


def test_a_job_that_blocks_what_the_zygote_imported_runs_in_a_new_interpreter(monkeypatch):
    monkeypatch.setenv("KIM_GNN_FRESH_ZYGOTE", "1")
    run = run_fresh("describe", {}, blocked=("ase",))  # the zygote imports ase; a new interpreter does not
    assert run.returncode == 0 and run.result["blocked_imported"] == [], run.stderr
    assert run.result["parent_pid"] == os.getpid()


def test_zygote_and_new_interpreter_give_the_same_numbers(toy_source, monkeypatch):
    """The toy model through verify's worker: bit for bit the same from a
    forked child as from a new interpreter."""
    from ase import Atoms

    import kim_gnn
    from kim_gnn.verification.harness import run_converted_in_fresh_process

    staged = kim_gnn.convert(toy_source)
    model = os.path.join(os.path.dirname(toy_source), "toy.pt")
    staged.save(model)
    atoms = Atoms("Si3", positions=[(0, 0, 0), (0, 0, 2.3), (0.4, 2.0, 1.0)], cell=[5.0, 5.5, 6.0], pbc=True)
    job = {"name": "trimer", "numbers": atoms.numbers, "positions": atoms.positions, "cell": atoms.cell.array,
           "pbc": atoms.pbc, "skin": 0.0}
    results = {}
    for zygote in ("1", "0"):
        monkeypatch.setenv("KIM_GNN_FRESH_ZYGOTE", zygote)
        [results[zygote]] = run_converted_in_fresh_process(model, [job])
    assert results["1"]["energy"] == results["0"]["energy"]
    assert np.array_equal(results["1"]["forces"], results["0"]["forces"])
