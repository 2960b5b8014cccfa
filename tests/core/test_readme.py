"""The README's and the docs pages' commands run as written (after the
README's example commands, whose outputs are stood in for by seeded fixture
models).

The extraction rule, the same for README.md and every docs/*.md page
(docs/testing.md states it): in every plain (```) or ``sh`` fenced block,
each line that starts with ``kim-gnn `` is a command, run with this
interpreter's ``python -m kim_gnn.cli`` in one working directory shared by
all pages (README first, then the pages by name; a command already run by an
earlier page is not run again); every ``python`` block is a program run in
that kind of directory. A block whose previous non-blank line is a
``<!-- not run ... -->`` comment is left out (the comment says why and what
runs it instead); lines of other programs (setup scripts, pip, the KIM
tools, LAMMPS, ``.venv-modern/bin/...``) are not run here.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
SHELL_LANGUAGES = ("", "sh")


def pages():
    """README.md, then the docs pages by name."""
    return [README] + sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))


def blocks(path):
    """(language, text, skipped) of every fenced block of a page, in order."""
    text = open(path).read()
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip().startswith("<!-- not run")
        out.append((match.group(1), match.group(2), skipped))
    return out


def kim_gnn_commands(path):
    """The ``kim-gnn`` command lines of a page's run blocks (comments stripped)."""
    commands = []
    for language, text, skipped in blocks(path):
        if language not in SHELL_LANGUAGES or skipped:
            continue
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("kim-gnn "):
                commands.append(line)
    return commands


def python_programs(path):
    return [text for language, text, skipped in blocks(path) if language == "python" and not skipped]


def readme_block(section: str, language: str = "") -> str:
    """The first fenced block (of ``language``) after the heading ``section``,
    in the README or else in the first docs page that has that heading."""
    for path in pages():
        text = open(path).read()
        if section not in text:
            continue
        match = re.compile(r"^```" + re.escape(language) + r"\n(.*?)^```", re.S | re.M).search(
            text, text.index(section))
        assert match, f"no ```{language} block after {section!r} in {path}"
        return match.group(1)
    raise AssertionError(f"no page has the heading {section!r}")


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
    code = readme_block("# Python API", "python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=example_outputs, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
    assert (example_outputs / "Si_NequIP__MO_000000000000_000" / "model.pt").exists()


def test_every_python_block_of_the_docs_is_the_python_api_page_or_marked():
    """The only python program of the pages is the one the test above runs;
    excerpts are marked not run."""
    programs = [(path, code) for path in pages() for code in python_programs(path)]
    assert [os.path.basename(path) for path, _ in programs] == ["python.md"]
    assert programs[0][1] == readme_block("# Python API", "python")


def test_command_lines_run_as_written(example_outputs):
    done = set()
    for path in pages():
        for line in kim_gnn_commands(path):
            args = shlex.split(line)
            if tuple(args) in done:
                continue
            done.add(tuple(args))
            proc = subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args[1:]], cwd=example_outputs,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f"{os.path.basename(path)}: {line}\n{proc.stdout}\n{proc.stderr}"
    assert (example_outputs / "parity.png").exists() and (example_outputs / "report.json").exists()
    assert (example_outputs / "Si_MACE__MO_000000000000_000" / "file.param").exists()


def test_the_tour_runs_convert_verify_check():
    commands = [shlex.split(line)[1] for line in kim_gnn_commands(README)]
    assert commands[:4] == ["convert", "info", "verify", "check"], commands


def test_the_readme_starts_with_the_two_commands():
    text = open(README).read()
    blocks = re.findall(r"^```\n(.*?)^```", text, re.S | re.M)
    assert blocks[0].strip() == "bash scripts/setup.sh && .venv/bin/kim-gnn example --out kim-gnn-example"
    assert blocks[1].strip() == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in open(os.path.join(os.path.dirname(README), ".ci", "run")).read()


def test_the_readme_is_a_guide_and_links_the_docs():
    text = open(README).read()
    assert len(text.splitlines()) <= 250
    for page in ("contract", "cli", "kernels", "testing", "adding-an-adapter", "driver", "per-atom-virials"):
        assert f"(docs/{page}.md)" in text, page


def test_no_file_cites_a_path_outside_the_repository():
    cited = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "__pycache__", "lib", "results")]
        for name in files:
            if not name.endswith((".py", ".md", ".cpp", ".hpp", ".h", ".cu", ".sh", ".txt", ".toml", ".edn")):
                continue
            path = os.path.join(folder, name)
            if path == os.path.abspath(__file__):
                continue
            text = open(path, errors="replace").read()
            if "shared/docs" in text or "../shared" in text or "torchml-contract.md" in text:
                cited.append(os.path.relpath(path, ROOT))
    assert not cited, cited


def test_cited_test_files_exist():
    """Every test file the repository names (`tests/...py`, in code, docs and
    scripts) exists: the tests live in folders like the package's, and a
    move must take its citations along."""
    cited = re.compile(r"\btests/[\w/]*\w\.py\b")
    missing = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "__pycache__", "lib", "results")]
        for name in files:
            if name.endswith((".py", ".md", ".cpp", ".hpp", ".h", ".cu", ".sh", ".txt", ".toml", ".edn")):
                path = os.path.join(folder, name)
                for test in cited.findall(open(path, errors="replace").read()):
                    if not os.path.isfile(os.path.join(ROOT, test)):
                        missing.append(f"{os.path.relpath(path, ROOT)}: {test}")
    assert not missing, missing


def test_the_command_line_page_lists_every_option():
    """docs/cli.md names every command and every option of the parser
    (what ``kim-gnn --help`` and ``kim-gnn COMMAND --help`` print)."""
    import argparse

    from kim_gnn.cli import build_parser

    text = open(os.path.join(DOCS, "cli.md")).read()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for option in (s for a in parser._actions for s in a.option_strings):
        if f"`{option}" not in text and f"{option}`" not in text and f"/ `{option}`" not in text:
            missing.append(option)
    for command, command_parser in sub.choices.items():
        if f"## `kim-gnn {command}" not in text:
            missing.append(command)
        for action in command_parser._actions:
            for option in action.option_strings:
                if f"`{option}" not in text:
                    missing.append(f"{command} {option}")
    assert not missing, missing


def publishing_commands():
    """The command block of the publishing section (docs/publishing.md, after
    its ```yaml block of metadata), one command a line."""
    text = open(os.path.join(DOCS, "publishing.md")).read()
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
