"""The suite's own policy (tests/conftest.py, tests/skip_policy.py), run on a
small suite in a fresh pytest: tests marked ``cuda`` are deselected, not
skipped, where torch sees no CUDA device (and their ``no_cuda`` twins where
it sees one), after ``-m``, with one summary line that counts them, also
under xdist (CI's workers); and in a required run (CI) any skip fails it."""

import os
import shutil
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))

SUITE = '''
import pytest
import torch


@pytest.mark.cuda
def test_on_the_device():
    assert torch.cuda.is_available()


@pytest.mark.cuda
@pytest.mark.slow
def test_slow_on_the_device():
    assert torch.cuda.is_available()


@pytest.mark.no_cuda
def test_the_error_without_a_device():
    assert not torch.cuda.is_available()


def test_anywhere():
    pass
'''

SKIPPING = '''
import pytest


def test_missing_component():
    pytest.skip("a missing component")
'''

#: Loaded with ``-p``: torch sees a CUDA device (on any machine).
FAKE_DEVICE = '''
import torch

torch.cuda.is_available = lambda: True
'''


def _run(tmp_path, files, *args, fake_device=False):
    suite = tmp_path / "tests"
    suite.mkdir()
    for name in ("conftest.py", "skip_policy.py"):
        shutil.copy(os.path.join(TESTS, name), suite / name)
    for name, text in files.items():
        (suite / name).write_text(text)
    (tmp_path / "fake_device.py").write_text(FAKE_DEVICE)
    env = {k: v for k, v in os.environ.items() if k not in ("KIM_GNN_E2E_REQUIRED", "PYTEST_ADDOPTS")}
    env.update(KIM_GNN_TESTS_REQUIRED="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(tmp_path))
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args, "tests"]
    if fake_device:
        command[3:3] = ["-p", "fake_device"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_cuda_tests_are_deselected_without_a_device_and_counted_in_one_line(tmp_path):
    """CI's way: no CUDA device, xdist workers, ``-m "not slow"`` from the
    user: the run passes with nothing skipped and says how many CUDA tests it
    left out (the slow one is -m's, not counted)."""
    code, out = _run(tmp_path, {"test_suite.py": SUITE}, "-n", "2", "-m", "not slow")
    assert code == 0, out
    assert "2 passed" in out and "skipped" not in out and "failed" not in out, out
    assert "1 CUDA test deselected: no CUDA device (they run on a GPU machine: scripts/device_check.sh)" in out, out
    assert "no_cuda" not in out, out


def test_with_a_device_the_cuda_tests_run_and_their_twins_are_deselected(tmp_path):
    code, out = _run(tmp_path, {"test_suite.py": SUITE}, fake_device=True)
    assert code == 0, out
    assert "3 passed" in out and "skipped" not in out, out
    assert "1 test marked no_cuda deselected: a CUDA device is present" in out, out
    assert "CUDA test" not in out, out


def test_any_skip_fails_a_required_run(tmp_path):
    code, out = _run(tmp_path, {"test_suite.py": SUITE, "test_skipping.py": SKIPPING})
    assert code == 1, out
    assert "SKIPPED [1]" in out and "test_skipping.py:" in out and "a missing component" in out, out
    assert "FAILED: tests skipped in a required run" in out and "test_missing_component" in out, out
    assert "2 CUDA tests deselected" in out, out
