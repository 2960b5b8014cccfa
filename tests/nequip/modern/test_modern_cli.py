"""``kim-gnn`` on nequip >= 0.7 files: info says which framework, convert
takes --type-map, verify passes, errors are one line."""

import json
import subprocess
import sys

import pytest

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_info_convert_verify_with_a_type_map(modern_models, tmp_path):
    options = dict(species=("Si", "C"), type_names=("Si", "Ca", "Cb"), chemical_species=("Si", "C", "C"),
                   pair_potential="ZBL", num_layers=1, seed=8)
    compiled = modern_models.compiled(**options)
    code, out, err = run_cli("info", compiled, "--json", "--type-map", "Si=Si,C=Ca")
    assert code == 0, err
    info = json.loads(out)
    assert info["architecture"] == "nequip-modern" and info["model"] == "NequIP" and info["artifact"] == "compiled"
    assert "not a 0.5/0.6" in info["framework"] and info["species"] == ["Si", "C"]

    item = tmp_path / "SiC_Test__MO_000000000000_000"
    code, out, err = run_cli("convert", compiled, "-o", item, "-q")
    assert code == 2 and "--type-map" in err and "Traceback" not in err
    code, out, err = run_cli("convert", compiled, "-o", item, "--type-map", "Si=Si,C=Ca", "-q")
    assert code == 0, err
    code, out, err = run_cli("verify", item.parent / "missing.nequip.zip", item, "-q")
    assert code == 2 and "no such file" in err
    code, out, err = run_cli("verify", compiled, item, "-q", "--no-properties")
    assert code == 0, out + err
    assert "PASSED" in out

    code, out, err = run_cli("info", item, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["architecture"] == "nequip-modern" and info["detail.type_map"] == "Si=Si,C=Ca"

    code, out, err = run_cli("convert", compiled, "-o", tmp_path / "X__MO_000000000000_000", "--head", "default")
    assert code == 2 and "--head" in err


def test_prune_and_kernels_flow_from_the_cli(modern_models, tmp_path):
    """--no-prune and --kernels reach the nequip >= 0.7 converter and are
    recorded: the default is pruned and aten-only; --kernels kim_gnn (where
    the op library is built) is recorded and names kim_gnn ops; --no-prune
    with --kernels kim_gnn is one clear error and writes nothing."""
    from kim_gnn import kernels
    from kim_gnn.executor import read_spec

    compiled = modern_models.compiled(species=("Si",), num_layers=1, seed=3)
    runs = {"A": ["--kernels", "aten"], "U": ["--no-prune"]}
    if kernels.available():
        runs["K"] = ["--kernels", "kim_gnn"]
    for name, flags in runs.items():
        item = tmp_path / f"{name}__MO_000000000000_000"
        code, out, err = run_cli("convert", compiled, "-o", item, *flags)
        assert code == 0, err
        details = read_spec(item).details
        assert details["pruned"] == ("false" if name == "U" else "true"), details
        assert details["kernels"] == ("kim_gnn" if name == "K" else "aten"), details
        assert kernels.archive_uses_ops(str(item / "model.pt")) == (name == "K")
        if name == "K":
            assert "kernels kim_gnn" in out
    item = tmp_path / "X__MO_000000000000_000"
    code, out, err = run_cli("convert", compiled, "-o", item, "--no-prune", "--kernels", "kim_gnn")
    assert code == 2 and "--no-prune" in err and "Traceback" not in err, err
    assert not item.exists()
