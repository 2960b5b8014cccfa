"""``kim-gnn install-driver`` without building anything: the checks that
come before the build, and the one-line diagnoses of failed build steps.
(The build itself and the driver are tested in tests/kim_e2e.)"""

import os
import subprocess
import sys
import types

import pytest
from skip_policy import missing

from kim_gnn import contract, kim_driver
from kim_gnn.errors import KimGnnError


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120)


def test_driver_name_is_a_valid_kim_driver_name():
    assert contract.validate_driver_name(contract.KIM_GNN_DRIVER_NAME) == "KimGnn__MD_000000000000_000"


def test_driver_item_names_the_contracts_driver():
    """csrc/driver is a plain KIM item, so its CMakeLists.txt carries the
    name itself (the KIM tools pass no variables): it must be the contract's,
    and so must its kimspec.edn's extended-id."""
    import re

    from kim_gnn import kimspec

    cmake = open(os.path.join(kim_driver.driver_source_dir(), "CMakeLists.txt")).read()
    assert "project(${KIM_GNN_DRIVER_NAME}" in cmake
    names = set(re.findall(r"[A-Za-z][A-Za-z0-9_]*__MD_[0-9]{12}_[0-9]{3}", cmake))
    assert names == {contract.KIM_GNN_DRIVER_NAME}, names
    assert re.search(r'set\(KIM_GNN_DRIVER_NAME "' + contract.KIM_GNN_DRIVER_NAME + r'"\)', cmake)
    spec = kimspec.read(kim_driver.driver_source_dir())
    assert spec["extended-id"] == contract.KIM_GNN_DRIVER_NAME
    # The file in the repository is what kim-gnn writes (kim-gnn's version aside).
    fresh = kimspec.driver_kimspec()
    drop = ("content-origin", "kim-gnn")
    assert {k: v for k, v in spec.items() if k not in drop} == {k: v for k, v in fresh.items() if k not in drop}


def test_missing_cmake_is_one_error_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    proc = _cli("install-driver", "--collection", "user", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["kim-gnn: error: 'cmake' is not installed: building the driver needs it "
                     "(Debian: apt-get install cmake)"], proc.stderr


def test_environment_collection_needs_its_variable(monkeypatch):
    if not all(map(__import__("shutil").which, ("cmake", "make"))):
        missing("cmake/make not installed: the tool check comes first")
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

    # a kim_gnn without the kernels module: no default (the branch runs, on a
    # module made unimportable, rather than only where kernels.py is absent)
    monkeypatch.setitem(sys.modules, "kim_gnn.kernels", None)
    monkeypatch.delattr(kim_gnn, "kernels", raising=False)
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


# --- the driver as a plain KIM item (install-driver --export, csrc/driver) --------

def test_export_writes_a_complete_driver_item(tmp_path, capsys):
    from kim_gnn import kimspec
    from kim_gnn.cli import main

    out = tmp_path / contract.KIM_GNN_DRIVER_NAME
    assert main(["install-driver", "--export", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"kim-api-collections-management install user {out}" in printed
    source = kim_driver.driver_source_dir()
    assert sorted(os.listdir(out)) == sorted(n for n in os.listdir(source) if n.endswith(kim_driver.DRIVER_ITEM_SUFFIXES))
    for name in ("CMakeLists.txt", "kim_gnn_driver.cpp", "staged_graphs.hpp", "elements.hpp", "kimspec.edn"):
        assert (out / name).is_file(), name
    assert kimspec.read(str(out))["extended-id"] == contract.KIM_GNN_DRIVER_NAME
    assert main(["install-driver", "--export", str(out)]) == 2  # exists: --force replaces it
    assert "already exists" in capsys.readouterr().err
    assert main(["install-driver", "--export", str(out), "--force"]) == 0
    assert main(["install-driver", "--force"]) == 2  # --force without --export
    assert "--export" in capsys.readouterr().err


def _configure(item, build, env):
    return subprocess.run(["cmake", "-S", str(item), "-B", str(build)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)


def _plain_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("Torch_DIR", "CMAKE_PREFIX_PATH", "VIRTUAL_ENV", "CMAKE_BUILD_TYPE", "KIM_GNN_PYTHON")}
    env.update(extra)
    return env


@pytest.fixture
def kim_cmake():
    import shutil

    if shutil.which("cmake") is None or subprocess.run(["pkg-config", "--exists", "libkim-api"]).returncode != 0:
        missing("cmake or the KIM API (libkim-api-dev) is not installed")


def test_driver_item_configures_with_no_variables_in_the_active_python(kim_cmake, tmp_path):
    """As kim-api-collections-management runs it (`cmake ..`, no -D), with the
    environment that has torch active: libtorch comes from that Python's
    torch wheel, and the item is the contract's driver."""
    item = kim_driver.export_driver_item(tmp_path / "item")
    proc = _configure(item, tmp_path / "build", _plain_env(VIRTUAL_ENV=sys.prefix))
    assert proc.returncode == 0, proc.stdout[-3000:]
    info = (tmp_path / "build" / "item-info.txt").read_text()
    assert f'item-name:"{contract.KIM_GNN_DRIVER_NAME}"' in info and "item-type:modelDriver" in info
    assert f"Torch {__import__('torch').__version__.split('+')[0]}" in proc.stdout


def test_driver_item_without_libtorch_says_what_to_set(kim_cmake, tmp_path):
    proc = _configure(kim_driver.driver_source_dir(), tmp_path / "build",
                      _plain_env(PATH="/usr/bin:/bin", KIM_GNN_PYTHON=str(tmp_path / "no-python")))
    if "(no torch)" not in proc.stdout and proc.returncode == 0:
        pytest.skip("the system Python has torch: nothing to refuse")
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert "kim-gnn driver: libtorch was not found" in text
    assert "Torch_DIR" in text and "CMAKE_PREFIX_PATH" in text and "source .venv/bin/activate" in text
