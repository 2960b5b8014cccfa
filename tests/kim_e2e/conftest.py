"""Shared fixtures of the end-to-end tests through the real KIM API.

``kim_collection`` (session): a temporary KIM collection (environment
collection, own configuration file and HOME) with kim-gnn's driver built
and installed once per session by ``kim_gnn.kim_driver.install_driver``. Its
``install_model(model, item_name)`` converts nothing: it writes a converted
model (a scripted module from ``convert_*``, or a ``.pt`` file) as a
portable model naming kim-gnn's driver and installs it with
``kim-api-collections-management``; ``env`` is the environment for
subprocesses (LAMMPS, mpirun, a fresh Python). While the session runs,
``os.environ`` points the KIM API at the collection, so kimpy / ASE's
``KIM`` calculator in the test process find the items too.

``installed_models("nequip" | "mace")`` (session): a seeded two-species,
two-layer float64 model converted and installed in that collection, with
``.item`` (the KIM name), ``.original`` (the original model file),
``.spec`` and ``.reference(atoms)`` (the original periodic model's result).

Building the driver compiles against libtorch's headers (1-3 minutes), once
per test run: pytest-xdist workers share one build directory (under a file
lock). ``KIM_GNN_TEST_DRIVER_BUILD_DIR`` names a build directory kept
between runs, so that only changed sources are recompiled.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lammps_e2e import unavailable

from kim_gnn import contract

NO_NETWORK_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
TIMEOUT = 600  # seconds, for any one external command


def _require_kim_build_tools():
    for tool, package in (("cmake", "cmake"), ("make", "make"), ("kim-api-collections-management", "libkim-api-dev"),
                          ("pkg-config", "pkg-config")):
        if shutil.which(tool) is None:
            unavailable(f"'{tool}' is not installed (Debian: {package}; run scripts/install_kim_stack.sh)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        unavailable("no C++ compiler (c++/g++) is installed (run scripts/install_kim_stack.sh)")
    if shutil.which("wget") is None and shutil.which("curl") is None:
        unavailable("kim-api-collections-management needs wget or curl, and neither is installed")
    if subprocess.run(["pkg-config", "--exists", "libkim-api"]).returncode != 0:
        unavailable("the KIM API is not installed (Debian: apt-get install libkim-api-dev)")


class KimCollection:
    """A temporary KIM API collection holding kim-gnn's driver."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs = {}
        for kind in ("md", "pm", "sm", "user-md", "user-pm", "user-sm", "tmp", "home", "items"):
            self.dirs[kind] = root / kind
            self.dirs[kind].mkdir(parents=True, exist_ok=True)
        config = root / "kim-api-config"
        config.write_text(
            f"model-drivers-dir = {self.dirs['user-md']}\n"
            f"portable-models-dir = {self.dirs['user-pm']}\n"
            f"simulator-models-dir = {self.dirs['user-sm']}\n"
        )
        #: What the KIM API and its tools need to see this collection (and no other user collection).
        self.kim_env = {
            "KIM_API_MODEL_DRIVERS_DIR": str(self.dirs["md"]),
            "KIM_API_PORTABLE_MODELS_DIR": str(self.dirs["pm"]),
            "KIM_API_SIMULATOR_MODELS_DIR": str(self.dirs["sm"]),
            "KIM_API_CONFIGURATION_FILE": str(config),
        }
        self.driver_path = None
        self._installed = {}

    @property
    def env(self):
        """Environment for subprocesses: the collection, no network, no build type."""
        env = dict(os.environ)
        for name in ("CMAKE_BUILD_TYPE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "no_proxy", "NO_PROXY"):
            env.pop(name, None)
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ftp_proxy", "all_proxy", "ALL_PROXY"):
            env[name] = NO_NETWORK_PROXY
        env.update(self.kim_env)
        env["TMPDIR"] = str(self.dirs["tmp"])
        env["HOME"] = str(self.dirs["home"])
        return env

    def write_item(self, model, item_name: str, driver_name: str = contract.KIM_GNN_DRIVER_NAME,
                   param_text: str = None) -> Path:
        """A portable model directory for ``model`` (a converted scripted
        module, or the path of a converted ``.pt`` or any TorchScript file
        with ``param_text`` given)."""
        from kim_gnn.export import write_portable_model

        out = self.dirs["items"] / item_name
        if isinstance(model, (str, os.PathLike)):
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model, out / contract.MODEL_FILE_NAME)
            if param_text is None:
                from kim_gnn.executor import read_spec

                param_text = contract.render_param_file(read_spec(model))
            (out / contract.PARAM_FILE_NAME).write_text(param_text)
            (out / "CMakeLists.txt").write_text(contract.render_cmakelists(item_name, driver_name))
            return out
        return Path(write_portable_model(model, out, driver_name=driver_name, force=True))

    def install_item(self, item_dir: Path) -> str:
        """Install a portable model directory with kim-api-collections-management."""
        shutil.rmtree(self.dirs["pm"] / item_dir.name, ignore_errors=True)  # replaced, not refused
        proc = subprocess.run(["kim-api-collections-management", "install", "environment", str(item_dir)],
                              cwd=self.dirs["tmp"], env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        name = item_dir.name
        if proc.returncode != 0 or not (self.dirs["pm"] / name / "libkim-api-portable-model.so").is_file():
            pytest.fail(f"installing {name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
        return name

    def install_model(self, model, item_name: str, **kwargs) -> str:
        """Write and install ``model`` as ``item_name`` (once per session and name)."""
        if item_name not in self._installed:
            self._installed[item_name] = self.install_item(self.write_item(model, item_name, **kwargs))
        return self._installed[item_name]


def _driver_build_dir(tmp_path_factory) -> str:
    """One build directory per test run, shared by pytest-xdist workers (the
    first compiles, the others find it built), or KIM_GNN_TEST_DRIVER_BUILD_DIR."""
    explicit = os.environ.get("KIM_GNN_TEST_DRIVER_BUILD_DIR")
    if explicit:
        return explicit
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return str(base / "kim-gnn-driver-build")


@pytest.fixture(scope="session")
def kim_collection(tmp_path_factory):
    _require_kim_build_tools()
    from filelock import FileLock

    from kim_gnn.kim_driver import install_driver

    collection = KimCollection(tmp_path_factory.mktemp("kim-collection"))
    build_dir = _driver_build_dir(tmp_path_factory)
    os.makedirs(os.path.dirname(os.path.abspath(build_dir)), exist_ok=True)
    patch = pytest.MonkeyPatch()
    for name, value in collection.kim_env.items():
        patch.setenv(name, value)
    collection.driver_build_dir = build_dir
    collection.driver_build_lock = FileLock(os.path.abspath(build_dir) + ".lock")
    try:
        with collection.driver_build_lock:
            collection.driver_path = install_driver("environment", build_dir)
    except BaseException:
        patch.undo()
        raise
    yield collection
    patch.undo()


@pytest.fixture
def kim_log_dir(tmp_path, monkeypatch):
    """Run in a temporary directory: the KIM API writes kim.log into the
    current directory; returns the path of that log. The test's KIM objects
    are released before the directory changes back (their destruction is
    logged too)."""
    import gc

    monkeypatch.chdir(tmp_path)
    yield tmp_path / "kim.log"
    gc.collect()


class InstalledModel:
    """A seeded original model, its conversion, installed for kim-gnn's driver."""

    def __init__(self, item, original, converted, spec):
        self.item, self.original, self.converted, self.spec = item, original, converted, spec
        self._reference = None

    def reference(self, atoms):
        """The original periodic model on ``atoms``: (OriginalResult, stress
        tolerance or None for the default), with a finite-difference stress
        where the original gives none (kim_gnn.verification.harness)."""
        from kim_gnn.adapters import detect_adapter
        from kim_gnn.verification.harness import _original_with_stress, tolerances_for

        if self._reference is None:
            self._reference = detect_adapter(self.original).original(self.original, self.spec)
        return _original_with_stress(self._reference, atoms, self.spec.model_dtype,
                                     tolerances_for(self.spec.model_dtype))


#: The seeded models of the end-to-end tests: two species, two layers, float64.
E2E_SPECIES = ("Si", "C")


@pytest.fixture(scope="session")
def installed_models(kim_collection, request):
    """``installed_models("nequip" | "mace")``: a seeded two-species, two-layer
    float64 model (NequIP 0.6; MACE with ZBL), converted and installed once
    per session as ``SiC_<architecture>_KimGnnDriver__MO_000000000000_000``.
    ``installed_models("nequip", kernels=True)``: the same model converted
    with ``--kernels kim_gnn`` (its aggregation in the op library's ops,
    which the driver loads from the path baked in at its install)."""
    cache = {}

    def get(architecture, kernels=False):
        key = (architecture, kernels)
        if key not in cache:
            from kim_gnn.executor import read_spec

            if architecture == "nequip":
                models = request.getfixturevalue("nequip_models")
                options = dict(species=E2E_SPECIES, num_layers=2, r_max=4.0)
                original, converted = models.deployed(**options), models.converted(**options)
            elif architecture == "mace":
                models = request.getfixturevalue("mace_models")
                options = dict(species=E2E_SPECIES, num_interactions=2, r_max=3.5, zbl=True)
                original, converted = models.model(**options), models.converted(**options)
            else:
                raise ValueError(f"no end-to-end model for {architecture!r}")
            name = architecture
            if kernels:
                from kim_gnn import convert, kernels as ops

                if not ops.available():
                    unavailable("the kim-gnn op library is not built (scripts/setup.sh builds it; csrc/build_ops.py)")
                converted = converted[: -len(".staged.pt")] + ".kernels.staged.pt"
                if not os.path.exists(converted):
                    convert(original, kernels="kim_gnn").save(converted)
                name += "_kernels"
            item = kim_collection.install_model(converted, f"SiC_{name}_KimGnnDriver__MO_000000000000_000")
            cache[key] = InstalledModel(item, original, converted, read_spec(converted))
        return cache[key]

    return get
