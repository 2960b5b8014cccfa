"""``kim-gnn install-driver`` without building anything: the checks that
come before the build, and the one-line diagnoses of failed build steps.
(The build itself and the driver are tested in tests/kim_e2e.)"""

import os
import subprocess
import sys
import types

import pytest

from kim_gnn import contract, kim_driver
from kim_gnn.errors import KimGnnError


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120)


def test_driver_name_is_a_valid_kim_driver_name():
    assert contract.validate_driver_name(contract.KIM_GNN_DRIVER_NAME) == "KimGnn__MD_000000000000_000"
    cmake = open(os.path.join(kim_driver.driver_source_dir(), "CMakeLists.txt")).read()
    assert "project(${KIM_GNN_DRIVER_NAME}" in cmake  # the name comes from contract.py only
    assert "KimGnn__MD_" not in cmake.replace("-DKIM_GNN_DRIVER_NAME=KimGnn__MD_000000000000_000", "")


def test_missing_cmake_is_one_error_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    proc = _cli("install-driver", "--collection", "user", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["kim-gnn: error: 'cmake' is not installed: building the driver needs it "
                     "(Debian: apt-get install cmake)"], proc.stderr


def test_environment_collection_needs_its_variable(monkeypatch):
    if not all(map(__import__("shutil").which, ("cmake", "make"))):
        pytest.skip("cmake/make not installed: the tool check comes first")
    monkeypatch.delenv("KIM_API_MODEL_DRIVERS_DIR", raising=False)
    with pytest.raises(KimGnnError, match="--collection environment needs KIM_API_MODEL_DRIVERS_DIR"):
        kim_driver.install_driver("environment")


def test_unknown_collection_is_refused():
    with pytest.raises(KimGnnError, match="unknown KIM collection 'site'"):
        kim_driver.install_driver("site")
    proc = _cli("install-driver", "--collection", "site")
    assert proc.returncode == 2 and "invalid choice: 'site'" in proc.stderr


def test_build_step_diagnoses():
    kim_missing = ('CMake Error at CMakeLists.txt:17 (find_package):\n  Could not find a package configuration file '
                   'provided by "KIM-API-ITEMS"\n  (requested version 2.2) with any of the following names:')
    assert "the KIM API was not found" in kim_driver._diagnosis(kim_missing)
    assert "apt-get install libkim-api-dev" in kim_driver._diagnosis(kim_missing)
    assert "no C++ compiler" in kim_driver._diagnosis("-- Check for working CXX compiler: CMAKE_CXX_COMPILER-NOTFOUND")
    assert kim_driver._diagnosis("x.cpp:3:1: error: 'foo' was not declared") == "x.cpp:3:1: error: 'foo' was not declared"


def test_default_ops_library_comes_from_kim_gnn_kernels(monkeypatch, tmp_path):
    import kim_gnn

    monkeypatch.delitem(sys.modules, "kim_gnn.kernels", raising=False)
    if not os.path.exists(os.path.join(os.path.dirname(kim_gnn.__file__), "kernels.py")):
        assert kim_driver.default_ops_library() == ""
    library = tmp_path / "libkim_gnn_ops.so"
    fake = types.ModuleType("kim_gnn.kernels")
    fake.library_path = lambda: str(library)
    monkeypatch.setitem(sys.modules, "kim_gnn.kernels", fake)
    monkeypatch.setattr(kim_gnn, "kernels", fake, raising=False)
    assert kim_driver.default_ops_library() == ""  # not built: no default
    library.write_bytes(b"")
    assert kim_driver.default_ops_library() == os.path.realpath(library)

    def not_built():
        raise KimGnnError("the kernels are not built")

    fake.library_path = not_built
    assert kim_driver.default_ops_library() == ""


def test_help_names_the_command():
    proc = _cli("install-driver", "--help")
    assert proc.returncode == 0
    assert contract.KIM_GNN_DRIVER_NAME in proc.stdout and "--collection" in proc.stdout and "--build-dir" in proc.stdout
