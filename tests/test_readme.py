"""The README's Python block and command lines run as written (after its
example commands, whose outputs are stood in for by seeded fixture models)."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_block(section: str, language: str = "") -> str:
    """The first fenced block (of ``language``) after the heading ``section``."""
    text = open(README).read()
    start = text.index(section)
    match = re.compile(r"^```" + re.escape(language) + r"\n(.*?)^```", re.S | re.M).search(text, start)
    assert match, f"no ```{language} block after {section!r}"
    return match.group(1)


@pytest.fixture
def example_outputs(tmp_path, nequip_models, mace_models):
    """A directory as the README's two example commands leave it."""
    (tmp_path / "kim-gnn-example").mkdir()
    (tmp_path / "kim-gnn-example-mace").mkdir()
    shutil.copy(nequip_models.deployed(num_layers=2, species=("Si",)), tmp_path / "kim-gnn-example" / "deployed.pth")
    shutil.copy(mace_models.model(num_interactions=2, species=("Si",)),
                tmp_path / "kim-gnn-example-mace" / "example.model")
    return tmp_path


def test_python_block_runs_as_written(example_outputs):
    code = readme_block("## Python", "python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=example_outputs, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
    assert (example_outputs / "Si_NequIP__MO_000000000000_000" / "model.pt").exists()


def test_command_lines_run_as_written(example_outputs):
    for line in readme_block("## Command line").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line:
            continue
        args = shlex.split(line)
        assert args[0] == "kim-gnn", line
        proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args[1:]], cwd=example_outputs,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    assert (example_outputs / "parity.png").exists() and (example_outputs / "report.json").exists()
    assert (example_outputs / "Si_MACE__MO_000000000000_000" / "file.param").exists()


def test_the_readme_starts_with_the_two_commands():
    text = open(README).read()
    blocks = re.findall(r"^```\n(.*?)^```", text, re.S | re.M)
    assert blocks[0].strip() == "bash scripts/setup.sh && .venv/bin/kim-gnn example --out kim-gnn-example"
    assert blocks[1].strip() == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in open(os.path.join(os.path.dirname(README), ".ci", "run")).read()


def publishing_commands():
    """The command block of the README's publishing section (after its
    ```yaml block of metadata), one command a line."""
    text = open(README).read()
    start = text.index("## Publishing")
    match = re.compile(r"^```\n(kim-gnn .*?)^```", re.S | re.M).search(text, start)
    assert match, "no command block in the publishing section"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_publishing_kim_gnn_commands_run_as_written(example_outputs):
    """The kim-gnn lines of the publishing section, with its metadata.yaml:
    the item gets kimspec.edn with the metadata and both reports. (The
    kim-api-collections-management lines, which compile the driver, run in
    tests/kim_e2e/test_kim_items.py.)"""
    import json

    from kim_gnn import kimspec

    (example_outputs / "metadata.yaml").write_text(readme_block("## Publishing", "yaml"))
    commands = publishing_commands()
    kim_tools = [c for c in commands if not c.startswith("kim-gnn ")]
    assert kim_tools and all(c.startswith("kim-api-collections-management install user ") for c in kim_tools)
    for line in commands:
        if not line.startswith("kim-gnn "):
            continue
        args = shlex.split(line)
        proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args[1:]], cwd=example_outputs,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    for line in kim_tools:  # what they install exists
        assert (example_outputs / shlex.split(line)[-1] / "CMakeLists.txt").is_file(), line
    item = example_outputs / "Si_NequIP__MO_000000000001_000"
    spec = kimspec.read(str(item))
    assert spec["title"] == "NequIP potential for Si (kim-gnn example)" and spec["license"] == "CDDL-1.0"
    assert json.loads((item / "kim-gnn-verify.json").read_text())["passed"]
    assert json.loads((item / "kim-gnn-check.json").read_text())["passed"]
