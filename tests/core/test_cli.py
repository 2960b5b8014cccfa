"""``kim-gnn`` end to end: convert, verify, info, and one-line errors on bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from skip_policy import require_import
from ase import Atoms
from ase.build import bulk
from ase.io import write

from kim_gnn.cli import default_item_name, main

ITEM = "Si_Test__MO_000000000000_000"


def run_cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def deployed(nequip_models):
    return nequip_models.deployed(num_layers=2, species=("Si", "C"))


def assert_one_line_error(code, err, fragment):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("kim-gnn: error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_convert_verify_info(deployed, tmp_path):
    out = tmp_path / ITEM
    code, stdout, err = run_cli("convert", deployed, "-o", out, "--quiet")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["CMakeLists.txt", "file.param", "kimspec.edn", "model.pt"]
    assert "C Si" in stdout and "influence distance 7" in stdout

    code, stdout, err = run_cli("verify", deployed, out, "--json", tmp_path / "report.json", "--quiet")
    assert code == 0, stdout + err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and len(report["cases"]) == 13
    assert "PASSED: 13 passed, 0 failed" in stdout

    for target in (deployed, out, out / "model.pt"):
        code, stdout, err = run_cli("info", target, "--json")
        assert code == 0, err
        info = json.loads(stdout)
        assert info["layers"] == 2 and info["cutoff"] == 3.5 and info["influence_distance"] == 7.0
        assert info["species"] == ["C", "Si"] and info["parameters"] > 0


def test_verify_on_user_structures(deployed, tmp_path):
    out = tmp_path / ITEM
    assert run_cli("convert", deployed, "-o", out, "-q")[0] == 0
    frames = [bulk("Si", "diamond", a=5.3, cubic=True), bulk("C", "diamond", a=3.6) * (2, 2, 2)]
    frames[0].rattle(0.05, seed=4)
    write(tmp_path / "frames.extxyz", frames)
    code, stdout, err = run_cli("verify", deployed, out, "--structures", tmp_path / "frames.extxyz")
    assert code == 0, stdout + err
    assert "frames.extxyz[0]" in stdout and "frames.extxyz[1]" in stdout
    assert "2 passed, 0 failed" in stdout
    assert "converted [2/2]" in err  # progress


def test_existing_output_needs_force(deployed, tmp_path):
    out = tmp_path / ITEM
    assert run_cli("convert", deployed, "-o", out, "-q")[0] == 0
    code, _, err = run_cli("convert", deployed, "-o", out, "-q")
    assert_one_line_error(code, err, "already exists")
    assert run_cli("convert", deployed, "-o", out, "-q", "--force")[0] == 0


def test_default_output_name(deployed, tmp_path):
    assert default_item_name("/x/my-model.v2.pth") == "my_model__MO_000000000000_000"
    assert default_item_name("3body.pth") == "M_3body__MO_000000000000_000"
    code, stdout, err = run_cli("convert", deployed, "-q", cwd=tmp_path)
    assert code == 0, err
    assert len([d for d in os.listdir(tmp_path) if d.endswith("__MO_000000000000_000")]) == 1


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text("hello"), "not a model file kim-gnn knows"),
    (lambda p: p.mkdir(), "directory"),
])
def test_bad_model_files(tmp_path, setup, fragment):
    bad = tmp_path / "model.pth"
    setup(bad)
    code, _, err = run_cli("convert", bad, "-o", tmp_path / ITEM)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / ITEM).exists()
    code, _, err = run_cli("info", bad)
    assert_one_line_error(code, err, fragment)


def test_bad_item_name_leaves_nothing(deployed, tmp_path):
    code, _, err = run_cli("convert", deployed, "-o", tmp_path / "not-a-kim-name")
    assert_one_line_error(code, err, "invalid KIM portable model name")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("atoms, fragment", [
    (Atoms("SiO", positions=[[0, 0, 0], [1.6, 0, 0]]), "species O"),
    (Atoms("Si2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "non-finite"),
])
def test_bad_structures(deployed, tmp_path, atoms, fragment):
    out = tmp_path / ITEM
    assert run_cli("convert", deployed, "-o", out, "-q")[0] == 0
    write(tmp_path / "s.extxyz", atoms)
    code, _, err = run_cli("verify", deployed, out, "--structures", tmp_path / "s.extxyz", "-q")
    assert_one_line_error(code, err, fragment)


def test_empty_structure_file(deployed, tmp_path):
    out = tmp_path / ITEM
    assert run_cli("convert", deployed, "-o", out, "-q")[0] == 0
    write(tmp_path / "empty.extxyz", Atoms())
    code, _, err = run_cli("verify", deployed, out, "--structures", tmp_path / "empty.extxyz", "-q")
    assert_one_line_error(code, err, "empty")


def test_verify_fails_loudly_on_a_wrong_model(nequip_models, tmp_path):
    """A converted model of another network must fail verification with exit 1."""
    a = nequip_models.deployed(num_layers=2, species=("Si", "C"))
    b = nequip_models.converted(num_layers=2, species=("Si", "C"), seed=7)
    code, stdout, _ = run_cli("verify", a, b, "-q", "--no-properties")
    assert code == 1
    assert "FAILED" in stdout


def test_main_returns_codes_in_process(deployed, tmp_path, capsys):
    assert main(["info", str(deployed)]) == 0
    assert "nequip" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.pth")]) == 2


@pytest.mark.parametrize("architecture", ["nequip", "mace"])
def test_example_builds_converts_and_verifies(architecture, tmp_path, capsys):
    require_import(architecture)
    from kim_gnn.adapters import adapter_named

    assert main(["example", "--architecture", architecture, "--out", str(tmp_path), "--layers", "2", "-q"]) == 0
    out = capsys.readouterr().out
    item = tmp_path / adapter_named(architecture).example.item_name
    assert "PASSED: 13 passed" in out and str(item) in out
    assert sorted(os.listdir(item)) == ["CMakeLists.txt", "file.param", "kimspec.edn", "model.pt"]
    assert (tmp_path / "verify-report.json").exists()


def test_verify_prints_the_finite_difference_stress_limit_it_applies(nequip_models, tmp_path):
    """A model whose original gives no stress (ForceOutput): the stress is
    compared with the original's finite-difference stress under a looser,
    per-structure limit, and the table says which limit it applied (not
    only the JSON)."""
    original = nequip_models.deployed(num_layers=1, species=("Si",), forces_only=True, model_dtype="float32")
    item = tmp_path / ITEM
    code, out, err = run_cli("convert", original, "-o", item, "-q")
    assert code == 0, err
    code, out, err = run_cli("verify", original, item, "--no-properties", "--json", tmp_path / "r.json", "-q")
    assert code == 0, out + err
    report = json.loads((tmp_path / "r.json").read_text())
    fd = [c for c in report["cases"] if c["stress_limit_finite_difference"]]
    assert fd, "no structure was checked against a finite-difference stress"
    for case in fd:
        row = next(line for line in out.splitlines() if line.startswith(case["name"] + " "))
        assert f"stress limit {case['stress_limit']:.2e}" in row, row
        assert case["max_stress_error"] <= case["stress_limit"]
