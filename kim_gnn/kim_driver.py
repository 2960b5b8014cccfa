"""Build and install kim-gnn's own KIM model driver (``csrc/driver``).

The driver runs the portable-model directories ``kim-gnn convert`` writes
(the TorchML format, ``contract.py``), so a model converted with
``--driver-name KimGnn__MD_000000000000_000`` runs through the KIM API with
nothing but kim-api and the libtorch of the installed torch wheel.

``install_driver`` configures ``csrc/driver`` with CMake against the KIM
API's item macros and the torch wheel's libtorch, builds it, runs the KIM
API's own shared-library test and installs it into a KIM collection. The
library records libtorch's directory as its RUNPATH, so simulators load it
without ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, Dict, Optional

from . import contract
from .errors import KimGnnError

COLLECTIONS = ("user", "system", "environment")

#: Environment variables of the KIM API's environment collection.
COLLECTION_VARIABLES = {
    "model_drivers": "KIM_API_MODEL_DRIVERS_DIR",
    "portable_models": "KIM_API_PORTABLE_MODELS_DIR",
    "simulator_models": "KIM_API_SIMULATOR_MODELS_DIR",
}

#: Environment variables the installed driver reads (docs/cli.md: "kim-gnn's own KIM driver").
DRIVER_ENVIRONMENT = {
    "KIM_MODEL_EXECUTION_DEVICE": "cpu (default) or cuda[:N]",
    "KIM_MODEL_ELEMENTS_MAP": "if set, models other than kim-gnn's get atomic numbers instead of species indices",
    "KIM_GNN_OPS_LIBRARY": "path of the kim-gnn op library to load before the model (empty: none)",
    "KIM_GNN_DRIVER_TIMING": "1: one JSON line of timings per compute on stderr; a path: appended to that file",
}

_TIMEOUT = 1800  # seconds for any one build step


def driver_source_dir() -> str:
    """``csrc/driver`` of this kim-gnn checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(os.path.dirname(here), "csrc", "driver")
    if not os.path.isfile(os.path.join(source, "CMakeLists.txt")):
        raise KimGnnError(
            f"the driver sources are not where kim-gnn expects them ({source}): install-driver needs kim-gnn "
            "installed from a source checkout (pip install -e .)"
        )
    return source


def torch_cmake_dir() -> str:
    """``<site-packages>/torch/share/cmake/Torch`` of the torch that kim-gnn imports."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise KimGnnError("torch is not installed: the driver is built against the libtorch of the torch wheel") from None
    path = os.path.join(os.path.realpath(os.path.dirname(torch.__file__)), "share", "cmake", "Torch")
    if not os.path.isfile(os.path.join(path, "TorchConfig.cmake")):
        raise KimGnnError(f"this torch installation has no CMake config for libtorch ({path} is missing)")
    return path


def torch_library_dir() -> str:
    """The directory holding ``libtorch.so`` (the driver's RUNPATH)."""
    return os.path.normpath(os.path.join(torch_cmake_dir(), "..", "..", "..", "lib"))


def default_ops_library() -> str:
    """The kim-gnn op library to bake into the driver as its default: what
    ``kim_gnn.kernels.library_path()`` gives when that module exists and the
    library is built, else '' (none)."""
    try:
        from . import kernels  # noqa: F401  (present once the kernels are merged)
    except ImportError:
        return ""
    try:
        path = kernels.library_path()
    except Exception:  # not built: the driver then loads no op library by default
        return ""
    if not path or not os.path.isfile(path):
        return ""
    return os.path.realpath(path)


def _require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KimGnnError(f"'{name}' is not installed: building the driver needs it (Debian: apt-get install {package})")
    return path


def _build_env(collection: str) -> Dict[str, str]:
    env = dict(os.environ)
    # Debian's kim-api exports its CMake targets for the None build type only.
    for name in ("CMAKE_BUILD_TYPE", "CMAKE_GENERATOR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    flags = env.get("CXXFLAGS", "")
    if not re.search(r"(^|\s)-O\d?", flags):
        env["CXXFLAGS"] = (flags + " -O2").strip()
    if collection == "environment" and not env.get(COLLECTION_VARIABLES["model_drivers"]):
        raise KimGnnError(
            f"--collection environment needs {COLLECTION_VARIABLES['model_drivers']} set to the directory of the "
            "KIM API's environment collection of model drivers"
        )
    return env


def _run_step(cmd, env, log, what: str, cwd: Optional[str] = None) -> str:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise KimGnnError(f"{what} did not finish within {_TIMEOUT} s (log: {log.name})") from None
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        raise KimGnnError(f"{what} failed: {_diagnosis(proc.stdout)} (full log: {log.name})")
    return proc.stdout


def _diagnosis(output: str) -> str:
    """One line saying why a build step failed."""
    if "KIM-API-ITEMS" in output and ("Could not find" in output or "not find a package" in output):
        return ("the KIM API was not found (its CMake config KIM-API-ITEMS; Debian: apt-get install libkim-api-dev, "
                "or set KIM_API_CMAKE_PREFIX_DIR)")
    if "No CMAKE_CXX_COMPILER could be found" in output or "CMAKE_CXX_COMPILER-NOTFOUND" in output:
        return "no C++ compiler was found (Debian: apt-get install g++)"
    if "Could not find a package configuration file provided by \"Torch\"" in output:
        return "libtorch's CMake config was not found"
    if "Unable to determine KIM API item install prefix" in output:
        return "the KIM API could not say where the collection is (for --collection environment set KIM_API_MODEL_DRIVERS_DIR)"
    for line in output.splitlines():
        if re.search(r"\berror\b", line, re.I):
            return line.strip()[:300]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def install_driver(collection: str = "user", build_dir: Optional[str] = None, *,
                   driver_name: str = contract.KIM_GNN_DRIVER_NAME, jobs: Optional[int] = None,
                   ops_library: Optional[str] = None,
                   progress: Optional[Callable[[str], None]] = None) -> str:
    """Build ``csrc/driver`` and install it into a KIM collection; returns
    the path of the installed driver library.

    ``collection``: ``user`` (the KIM API's user collection), ``system``, or
    ``environment`` (the directory in ``KIM_API_MODEL_DRIVERS_DIR``).
    ``build_dir``: where to build (kept, so that a second install rebuilds
    only what changed); by default a temporary directory removed on success
    (kept on failure, with its log). ``ops_library``: the op library the
    driver loads by default (default: ``kim_gnn.kernels.library_path()`` when
    built; '' for none).
    """
    if collection not in COLLECTIONS:
        raise KimGnnError(f"unknown KIM collection {collection!r} (one of {', '.join(COLLECTIONS)})")
    contract.validate_driver_name(driver_name)
    source = driver_source_dir()
    cmake = _require_tool("cmake", "cmake")
    if shutil.which("make") is None and shutil.which("ninja") is None:
        raise KimGnnError("neither 'make' nor 'ninja' is installed (Debian: apt-get install make)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        raise KimGnnError("no C++ compiler (c++/g++) is installed (Debian: apt-get install g++)")
    env = _build_env(collection)
    torch_dir = torch_cmake_dir()
    ops = default_ops_library() if ops_library is None else ops_library

    temporary = build_dir is None
    if temporary:
        build_dir = tempfile.mkdtemp(prefix="kim-gnn-driver-build.")
    else:
        build_dir = os.path.abspath(os.fspath(build_dir))
        if os.path.exists(build_dir) and not os.path.isdir(build_dir):
            raise KimGnnError(f"--build-dir {build_dir} exists and is not a directory")
        os.makedirs(build_dir, exist_ok=True)
    log_path = os.path.join(build_dir, "kim-gnn-install-driver.log")
    show = progress or (lambda message: None)
    with open(log_path, "w") as log:
        show(f"configuring {driver_name} (libtorch {torch_dir}) in {build_dir}")
        _run_step([cmake, "-S", source, "-B", build_dir,
                   f"-DKIM_GNN_DRIVER_NAME={driver_name}",
                   f"-DTorch_DIR={torch_dir}",
                   f"-DKIM_API_INSTALL_COLLECTION={collection.upper()}",
                   f"-DKIM_GNN_DEFAULT_OPS_LIBRARY={ops}"],
                  env, log, "configuring the driver (cmake)")
        show("compiling the driver (about 1-3 minutes: libtorch headers are large)")
        jobs = jobs or max(1, min(4, os.cpu_count() or 1))
        _run_step([cmake, "--build", build_dir, "--", f"-j{jobs}"] if shutil.which("make") else
                  [cmake, "--build", build_dir], env, log, "compiling the driver")
        ctest = shutil.which("ctest")
        if ctest:
            _run_step([ctest, "--output-on-failure"], env, log, "the KIM API's shared-library test of the driver",
                      cwd=build_dir)
        show(f"installing into the {collection} collection")
        out = _run_step([cmake, "--install", build_dir], env, log, f"installing the driver into the {collection} collection")
    installed = re.findall(r"-- (?:Installing|Up-to-date): (\S+libkim-api-model-driver\.so)", out)
    if not installed:
        raise KimGnnError(f"the driver was built but cmake installed no library (log: {log_path})")
    if temporary:
        shutil.rmtree(build_dir, ignore_errors=True)
    return installed[-1]


#: The files of the driver item (csrc/driver), as ``export_driver_item`` copies them.
DRIVER_ITEM_SUFFIXES = (".cpp", ".hpp", ".txt", ".edn")


def export_driver_item(out_dir, force: bool = False, metadata=None) -> str:
    """Write the driver as a complete KIM item directory ``out_dir``: its
    sources, ``CMakeLists.txt`` (which finds the KIM API and libtorch by
    itself) and ``kimspec.edn``. ``kim-api-collections-management install
    user|system|environment out_dir`` builds and installs it with no other
    variable. The directory appears complete or not at all."""
    from . import kimspec
    from .export import check_new_directory, write_directory

    source = driver_source_dir()
    out_dir = check_new_directory(out_dir, force, "--export", "", "--force")
    text = kimspec.render(kimspec.driver_kimspec(contract.KIM_GNN_DRIVER_NAME, metadata))

    def fill(tmp: str) -> None:
        for name in sorted(os.listdir(source)):
            if name.endswith(DRIVER_ITEM_SUFFIXES) and name != kimspec.KIMSPEC_FILE_NAME:
                shutil.copyfile(os.path.join(source, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, kimspec.KIMSPEC_FILE_NAME), "w", encoding="utf-8") as fh:
            fh.write(text)

    return write_directory(out_dir, "kim-gnn-driver", fill)


def main_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
