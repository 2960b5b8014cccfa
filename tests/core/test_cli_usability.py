"""What a new user meets first: paths checked before work, one-line errors,
quiet stderr, fast help, readable reports (issue 7)."""

import json
import os
import subprocess
import sys

import pytest
from skip_policy import require_import

from kim_gnn.cli import default_example_dir

ITEM = "Si_Usability__MO_000000000000_000"


def run_cli(*args, cwd=None, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(code, err, fragment):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("kim-gnn: error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def nequip_pair(nequip_models):
    options = dict(num_layers=2, species=("Si",))
    return nequip_models.deployed(**options), nequip_models.converted(**options)


@pytest.fixture(scope="module")
def mace_pair(mace_models):
    options = dict(num_interactions=2, species=("Si",))
    return mace_models.model(**options), mace_models.converted(**options)


# --- paths are checked before any work ------------------------------------------

def test_verify_json_into_missing_directory_fails_before_work(nequip_pair, tmp_path):
    original, converted = nequip_pair
    code, _, err = run_cli("verify", original, converted, "--json", tmp_path / "no" / "such" / "r.json")
    line = assert_one_line_error(code, err, "does not exist")
    assert "JSON report" in line
    assert "original  [" not in err and "converted [" not in err  # the battery never started


def test_verify_plot_into_missing_directory_fails_before_work(nequip_pair, tmp_path):
    original, converted = nequip_pair
    code, _, err = run_cli("verify", original, converted, "--plot", tmp_path / "nope" / "p.png")
    assert_one_line_error(code, err, "does not exist")
    assert "original  [" not in err


def test_convert_into_missing_directory_fails_before_converting(nequip_pair, tmp_path):
    original, _ = nequip_pair
    code, _, err = run_cli("convert", original, "-o", tmp_path / "no" / "such" / ITEM)
    assert_one_line_error(code, err, "does not exist")
    assert "converting" not in err


def test_convert_onto_a_file_is_refused(nequip_pair, tmp_path):
    original, _ = nequip_pair
    target = tmp_path / ITEM
    target.write_text("not a directory")
    code, _, err = run_cli("convert", original, "-o", target, "--force")
    assert_one_line_error(code, err, "not a directory")
    assert target.read_text() == "not a directory"


def test_example_out_is_an_existing_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    code, _, err = run_cli("example", "--out", target)
    assert_one_line_error(code, err, "not a directory")
    assert os.listdir(tmp_path) == ["afile"]


def test_example_rejects_zero_layers_and_leaves_nothing(tmp_path):
    code, _, err = run_cli("example", "--layers", "0", "--out", tmp_path / "ex")
    assert code == 2
    assert "--layers" in err and "at least 1" in err and "Traceback" not in err
    assert not (tmp_path / "ex").exists()


def test_examples_have_their_own_default_directories():
    assert default_example_dir("nequip") != default_example_dir("mace")


# --- messages ---------------------------------------------------------------------

def test_text_file_as_converted_model_gives_a_whole_message(nequip_pair, tmp_path):
    original, _ = nequip_pair
    text = tmp_path / "model.pt"
    text.write_text("this is a text file, not a model\n" * 20)
    code, _, err = run_cli("verify", original, text)
    line = assert_one_line_error(code, err, "not a loadable TorchScript file")
    assert line.rstrip().endswith("directory")  # the message ends where it was written to end


def test_first_line_cuts_at_a_word_boundary():
    from kim_gnn.errors import first_line

    message = "word " * 100
    cut = first_line(ValueError(message), limit=50)
    assert cut.endswith(" ...") and len(cut) <= 54
    assert all(w == "word" for w in cut[:-4].split())


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand_keeps_exit_code_2(tmp_path, where):
    missing = tmp_path / "missing.pth"
    args = ["--debug", "info", missing] if where == "before" else ["info", missing, "--debug"]
    code, _, err = run_cli(*args)
    assert code == 2
    assert "Traceback" in err and "kim-gnn: error: no such file" in err


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from kim_gnn.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "try:\n"
        "    main(['convert'])\n"  # an argument error
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_mace_head_option_ignores_case(mace_pair, tmp_path):
    original, _ = mace_pair
    out = tmp_path / ITEM
    code, stdout, err = run_cli("convert", original, "-o", out, "--head", "default", "-q")
    assert code == 0, err
    assert "head Default" in stdout


# --- stderr is what kim-gnn says, nothing else ---------------------------------------

PROGRESS_PREFIXES = ("building ", "converting", "verifying ", "original  [", "converted [")


def test_mace_example_stderr_has_only_kim_gnn_lines(tmp_path):
    """The whole stderr of a MACE run: no e3nn/torch warnings (run in a fresh
    process, so pytest's warning filters cannot hide anything)."""
    # As a user runs it: Python's default warning filters, the variable e3nn 0.4.4 needs.
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    code, stdout, err = run_cli("example", "--architecture", "mace", "--layers", "1", "--out", tmp_path / "ex",
                                env=env)
    assert code == 0, err
    unexpected = [line for line in err.splitlines() if not line.startswith(PROGRESS_PREFIXES)]
    assert unexpected == [], "\n".join(unexpected)

    model = tmp_path / "ex" / "example.model"
    for args in (("info", model), ("convert", model, "-o", tmp_path / ITEM, "-q")):
        code, _, err = run_cli(*args, env=env)
        assert code == 0, err
        unexpected = [line for line in err.splitlines() if not line.startswith(PROGRESS_PREFIXES)]
        assert unexpected == [], "\n".join(unexpected)


# --- reports ----------------------------------------------------------------------

def test_report_has_units_versions_time_machine_and_a_plot(nequip_pair, tmp_path):
    require_import("matplotlib", "the test extra installs it (scripts/setup.sh)")
    original, converted = nequip_pair
    report_file, plot_file = tmp_path / "r.json", tmp_path / "parity.png"
    code, stdout, err = run_cli("verify", original, converted, "--no-properties", "-q",
                                "--json", report_file, "--plot", plot_file)
    assert code == 0, stdout + err
    assert "eV/A" in stdout and "eV/A^3" in stdout
    report = json.loads(report_file.read_text())
    env = report["environment"]
    for key in ("kim_gnn_version", "torch_version", "architecture_package_version", "timestamp_utc", "machine",
                "hostname", "python_version"):
        assert env[key], key
    assert env["architecture_package"] == "nequip"
    assert report["units"]["max_force_error"] == "eV/A"
    assert plot_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot_file.stat().st_size > 10000


def test_info_on_a_converted_model_says_none_not_blank(nequip_pair):
    _, converted = nequip_pair
    code, stdout, err = run_cli("info", converted)
    assert code == 0, err
    for line in stdout.splitlines():
        assert len(line.split(None, 1)) == 2, f"blank value: {line!r}"
    code, stdout, _ = run_cli("info", converted, "--json")
    assert all(v != "" for v in json.loads(stdout).values())
