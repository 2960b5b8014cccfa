"""The two environments: a model converted in either loads and runs in the
other (and, through verify's fresh worker, in a process where neither nequip
nor e3nn can be imported); each environment's CLI names the other for the
files only the other converts.

Needs the legacy interpreter: $KIM_GNN_LEGACY_PYTHON, else .venv/bin/python
of this checkout (scripts/setup.sh)."""

import os
import subprocess
import sys
import textwrap

import pytest
from ase.build import bulk

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _legacy_python():
    path = os.environ.get("KIM_GNN_LEGACY_PYTHON") or os.path.join(REPO, ".venv", "bin", "python")
    return path if os.path.isfile(path) else None


LEGACY = _legacy_python()
pytestmark = [
    pytest.mark.skipif(not is_modern_version(nequip_version()), reason="needs nequip >= 0.7 (the modern environment)"),
    pytest.mark.skipif(LEGACY is None, reason="needs the legacy environment (.venv or $KIM_GNN_LEGACY_PYTHON)"),
]


def _run(python, code, *args):
    env = dict(os.environ, PYTHONPATH=REPO, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    return subprocess.run([python, "-W", "ignore", "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO)


def _atoms():
    atoms = bulk("Si", "diamond", a=5.2, cubic=True)
    atoms.symbols[1] = "C"
    atoms.rattle(0.05, seed=3)
    return atoms


RUN_STAGED = """
    import pickle, sys
    from kim_gnn.executor import StagedExecutor
    atoms = pickle.load(open(sys.argv[2], "rb"))
    r = StagedExecutor(sys.argv[1]).run(atoms)
    print(repr(r.energy)); print(repr(float(abs(r.forces).max())))
"""


def test_modern_conversion_runs_in_the_legacy_environment(modern_models, tmp_path):
    import pickle

    from kim_gnn import convert_nequip
    from kim_gnn.executor import StagedExecutor
    from kim_gnn.nequip.modern.reference import NequIPModernOriginal

    package = modern_models.package(species=("Si", "C"), num_layers=2, pair_potential="ZBL", model_dtype="float64", seed=1)
    model_file = tmp_path / "model.pt"
    convert_nequip(package).save(model_file)
    atoms = _atoms()
    (tmp_path / "atoms.pkl").write_bytes(pickle.dumps(atoms))
    out = _run(LEGACY, RUN_STAGED, model_file, tmp_path / "atoms.pkl")
    assert out.returncode == 0, out.stderr
    energy = float(out.stdout.split()[0])
    here = StagedExecutor(model_file).run(atoms).energy
    expected = NequIPModernOriginal(package).evaluate(atoms).energy
    assert energy == here
    assert abs(energy - expected) < 1e-10 * max(1.0, abs(expected))


BUILD_LEGACY = """
    import pickle, sys
    from kim_gnn.nequip.v06.example import build_example_nequip
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.nequip.v06.reference import NequIPOriginal
    from kim_gnn.mace.example import build_example_mace
    from kim_gnn.mace import convert_mace
    from kim_gnn.mace.reference import MACEOriginal
    out = sys.argv[1]
    atoms = pickle.load(open(sys.argv[2], "rb"))
    deployed = build_example_nequip(out + "/deployed.pth", species=("Si", "C"), num_layers=2, r_max=3.5)
    convert_nequip(deployed).save(out + "/nequip06.pt")
    mace = build_example_mace(out + "/mace.model", species=("Si", "C"), num_interactions=2)
    convert_mace(mace).save(out + "/mace.pt")
    print(repr(NequIPOriginal(deployed).evaluate(atoms).energy))
    print(repr(MACEOriginal(mace).evaluate(atoms).energy))
"""


def test_legacy_conversions_run_in_the_modern_environment(tmp_path):
    import pickle

    from kim_gnn.executor import StagedExecutor

    atoms = _atoms()
    (tmp_path / "atoms.pkl").write_bytes(pickle.dumps(atoms))
    out = _run(LEGACY, BUILD_LEGACY, tmp_path, tmp_path / "atoms.pkl")
    assert out.returncode == 0, out.stderr[-2000:]
    expected_nequip, expected_mace = (float(x) for x in out.stdout.split()[-2:])
    for name, expected in (("nequip06.pt", expected_nequip), ("mace.pt", expected_mace)):
        energy = StagedExecutor(tmp_path / name).run(atoms).energy
        assert abs(energy - expected) < 1e-10 * max(1.0, abs(expected)), name

    from kim_gnn import convert_nequip

    # converting the 0.6 file here keeps its whole last layer (its structure
    # is read with nequip 0.6, not installed here), says so, same numbers
    from kim_gnn.executor import read_spec

    assert read_spec(tmp_path / "nequip06.pt").details["scalar_only_last_layer"] == "true"
    convert_nequip(tmp_path / "deployed.pth").save(tmp_path / "nequip06-modern.pt")
    details = read_spec(tmp_path / "nequip06-modern.pt").details
    assert details["scalar_only_last_layer"] == "false"
    assert "is installed here, not 0.5/0.6" in details["scalar_only_last_layer_reason"]
    energy = StagedExecutor(tmp_path / "nequip06-modern.pt").run(atoms).energy
    assert abs(energy - expected_nequip) < 1e-10 * max(1.0, abs(expected_nequip))

    # verifying a 0.6 model needs nequip 0.6's own type mapping: the legacy environment
    from kim_gnn.errors import KimGnnError
    from kim_gnn.nequip.v06.reference import NequIPOriginal

    with pytest.raises(KimGnnError, match=r"legacy environment.*scripts/setup\.sh"):
        NequIPOriginal(tmp_path / "deployed.pth")

    # convert here suggests the verify command that works: the legacy environment's
    item = tmp_path / "N__MO_000000000000_000"
    cli = subprocess.run([sys.executable, "-m", "kim_gnn.cli", "convert", str(tmp_path / "deployed.pth"),
                          "-o", str(item), "-q"], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    assert f"check it with: .venv/bin/kim-gnn verify {tmp_path / 'deployed.pth'} {item}  (in the legacy" in cli.stdout

    # and the modern CLI names the legacy environment for the MACE file
    cli = subprocess.run([sys.executable, "-m", "kim_gnn.cli", "convert", str(tmp_path / "mace.model"),
                          "-o", str(tmp_path / "M__MO_000000000000_000")], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 2
    assert "legacy environment" in cli.stderr and "scripts/setup.sh" in cli.stderr


def test_legacy_cli_names_the_modern_environment(modern_models, tmp_path):
    options = dict(species=("Si",), num_layers=1, seed=7)
    for source in (modern_models.package(**options), modern_models.checkpoint(**options)):
        out = _run(LEGACY, "import sys; from kim_gnn.cli import main; sys.exit(main(sys.argv[1:]))",
                   "convert", source, "-o", tmp_path / "X__MO_000000000000_000")
        assert out.returncode == 2, out.stderr
        assert "nequip >= 0.7" in out.stderr and "setup_modern.sh" in out.stderr and ".venv-modern" in out.stderr
        assert "Traceback" not in out.stderr
        info = _run(LEGACY, "import sys; from kim_gnn.cli import main; sys.exit(main(sys.argv[1:]))", "info", source)
        assert info.returncode == 2 and "setup_modern.sh" in info.stderr
