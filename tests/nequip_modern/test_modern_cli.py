"""``kim-gnn`` on nequip >= 0.7 files: info says which framework, convert
takes --type-map, verify passes, errors are one line."""

import json
import subprocess
import sys

import pytest

from kim_gnn.nequip_modern.load import is_modern_version, nequip_version

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


def test_kernels_are_refused_for_modern_models(modern_models, tmp_path):
    """--kernels kim_gnn applies to NequIP 0.5/0.6 and MACE; --kernels aten is the default and accepted."""
    compiled = modern_models.compiled(species=("Si",), num_layers=1, seed=3)
    code, out, err = run_cli("convert", compiled, "-o", tmp_path / "K__MO_000000000000_000", "--kernels", "kim_gnn")
    assert code == 2 and "--kernels" in err and "nequip-modern" in err and "Traceback" not in err
    assert not (tmp_path / "K__MO_000000000000_000").exists()
    code, out, err = run_cli("convert", compiled, "-o", tmp_path / "A__MO_000000000000_000", "--kernels", "aten", "-q")
    assert code == 0, err
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.errors import KimGnnError

    with pytest.raises(KimGnnError, match="nequip >= 0.7 models are converted aten-only"):
        convert_nequip(compiled, kernels="kim_gnn")
