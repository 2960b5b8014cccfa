"""An exported directory is a valid KIM portable model item for the real KIM API.

The OpenKIM TorchML driver is not available here, so these tests check the
item itself, with the KIM API's own tools (Debian ``libkim-api-dev``, see
``scripts/install_kim_stack.sh``):

* ``file.param`` and ``CMakeLists.txt`` follow ``docs/contract.md`` (no KIM
  API needed);
* the directory configures and builds out of source with plain ``cmake`` and
  ``make`` against the KIM API, without the driver installed, and the built
  library embeds ``file.param`` and ``model.pt`` byte for byte and names the
  driver given;
* ``kim-api-collections-management`` installs it into a temporary collection
  (with the driver missing: after a refused download attempt; and with a
  stub driver of our own, written from the KIM API's public driver headers,
  that only reports the parameter files the KIM API hands it), and
  ``KIM::Model::Create`` makes the KIM API load the driver the model names and
  hand it both parameter files unchanged.

Tests that need the KIM API skip with the reason when it is not installed.
Every external command runs under a timeout, and no test can reach the
network: installation runs with its proxies pointed at a closed local port.
"""

import ctypes
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from skip_policy import missing

from kim_gnn import contract
from kim_gnn.export import write_portable_model

SPECIES = ("Si", "C")
NUM_LAYERS = 2
R_MAX = 4.0
ITEM_NAME = "SiC_KimGnnTest__MO_000000000000_000"
# A driver name other than the default, so that the tests see it plumbed through.
STUB_DRIVER = "KimGnnStub__MD_000000000000_000"
TIMEOUT = 120  # seconds, for any one external command
NO_NETWORK_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there

STUB_DRIVER_CMAKELISTS = f"""\
cmake_minimum_required(VERSION 3.10)

list(APPEND CMAKE_PREFIX_PATH $ENV{{KIM_API_CMAKE_PREFIX_DIR}})
find_package(KIM-API-ITEMS 2.2 REQUIRED CONFIG)

kim_api_items_setup_before_project(ITEM_TYPE "modelDriver")
project({STUB_DRIVER} LANGUAGES CXX)
kim_api_items_setup_after_project(ITEM_TYPE "modelDriver")

add_kim_api_model_driver_library(
  NAME                    ${{PROJECT_NAME}}
  CREATE_ROUTINE_NAME     "kim_gnn_stub_driver_create"
  CREATE_ROUTINE_LANGUAGE "cpp"
  )
target_sources(${{PROJECT_NAME}} PRIVATE stub_driver.cpp)
"""

# C++98 (the standard the KIM API items macros select).
STUB_DRIVER_SOURCE = r"""
// kim-gnn test stub model driver. It reports the parameter files the KIM API
// hands it (index, name, size, 32-bit FNV-1a hash) on stdout, then refuses to
// create a model. It computes nothing.
#include <cstdio>
#include <string>

#include "KIM_ModelDriverHeaders.hpp"

extern "C" int kim_gnn_stub_driver_create(
    KIM::ModelDriverCreate * const modelDriverCreate,
    KIM::LengthUnit const, KIM::EnergyUnit const, KIM::ChargeUnit const,
    KIM::TemperatureUnit const, KIM::TimeUnit const)
{
  std::string const * directory = NULL;
  int count = 0;
  modelDriverCreate->GetParameterFileDirectoryName(&directory);
  modelDriverCreate->GetNumberOfParameterFiles(&count);
  std::printf("KIM_GNN_STUB files %d\n", count);
  for (int i = 0; i < count; ++i)
  {
    std::string const * basename = NULL;
    if (modelDriverCreate->GetParameterFileBasename(i, &basename)) return true;
    std::string const path = *directory + "/" + *basename;
    std::FILE * const file = std::fopen(path.c_str(), "rb");
    if (file == NULL) return true;
    unsigned long hash = 2166136261UL;
    long size = 0;
    int c;
    while ((c = std::fgetc(file)) != EOF)
    {
      hash = ((hash ^ static_cast<unsigned long>(c)) * 16777619UL) & 0xffffffffUL;
      ++size;
    }
    std::fclose(file);
    std::printf("KIM_GNN_STUB file %d %s %ld %08lx\n", i, basename->c_str(), size, hash);
  }
  std::fflush(stdout);
  return true;  // a stub: no model is created
}
"""

# A minimal simulator: asks the KIM API to create the named model.
PROBE_SOURCE = r"""
#include <cstdio>

#include "KIM_SimulatorHeaders.hpp"

int main(int argc, char * argv[])
{
  if (argc != 2) return 2;
  int accepted = 0;
  KIM::Model * model = NULL;
  int const error = KIM::Model::Create(
      KIM::NUMBERING::zeroBased, KIM::LENGTH_UNIT::A, KIM::ENERGY_UNIT::eV,
      KIM::CHARGE_UNIT::e, KIM::TEMPERATURE_UNIT::K, KIM::TIME_UNIT::ps,
      argv[1], &accepted, &model);
  std::printf("KIM_GNN_PROBE create_error %d\n", error);
  std::fflush(stdout);
  if (!error) KIM::Model::Destroy(&model);
  return 0;
}
"""


# --- helpers ---------------------------------------------------------------

def _clean_env(**extra):
    """The environment for the KIM tools: nothing that changes how cmake or
    make behave (CMAKE_BUILD_TYPE=Release breaks Debian's kim-api), and no way
    out to openkim.org."""
    env = dict(os.environ)
    for name in ("CMAKE_BUILD_TYPE", "CMAKE_GENERATOR", "MAKE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                 "no_proxy", "NO_PROXY"):
        env.pop(name, None)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ftp_proxy", "all_proxy", "ALL_PROXY"):
        env[name] = NO_NETWORK_PROXY
    env.update({k: os.fspath(v) for k, v in extra.items()})
    return env


def _run(cmd, cwd, env=None, check=True):
    try:
        proc = subprocess.run([os.fspath(c) for c in cmd], cwd=os.fspath(cwd), env=env or _clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        pytest.fail(f"{' '.join(map(str, cmd))} did not finish within {TIMEOUT} s:\n{out[-4000:]}")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} (in {cwd}) exited with {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc


def _fnv1a32(data: bytes) -> int:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _param_values(text):
    """The lines of a .param file that are not comments, blank ones included."""
    return [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]


# --- fixtures --------------------------------------------------------------

@pytest.fixture(scope="session", params=["nequip", "mace"])
def kim_item_staged(request):
    """A converted 2-layer, two-species example model of each architecture
    (shared session builds)."""
    if request.param == "mace":
        from kim_gnn.mace import convert_mace

        models = request.getfixturevalue("mace_models")
        return convert_mace(models.model(species=SPECIES, num_interactions=NUM_LAYERS, r_max=R_MAX, zbl=True))
    from kim_gnn.nequip import convert_nequip

    models = request.getfixturevalue("nequip_models")
    return convert_nequip(models.deployed(species=SPECIES, num_layers=NUM_LAYERS, r_max=R_MAX))


@pytest.fixture(scope="session")
def kim_item_dir(kim_item_staged, tmp_path_factory):
    """The exported portable model directory, naming the stub driver."""
    root = tmp_path_factory.mktemp("kim-item-export")
    return Path(write_portable_model(kim_item_staged, root / ITEM_NAME, driver_name=STUB_DRIVER))


@pytest.fixture(scope="session")
def kim_api(tmp_path_factory):
    """Skip unless cmake, make, a C++ compiler and the KIM API CMake config
    (``KIM-API-ITEMS``) are present; returns the KIM API version found."""
    for tool in ("cmake", "make"):
        if shutil.which(tool) is None:
            missing(f"'{tool}' is not installed (run scripts/install_kim_stack.sh)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        missing("no C++ compiler (c++/g++) is installed (run scripts/install_kim_stack.sh)")
    probe = tmp_path_factory.mktemp("kim-api-probe")
    (probe / "CMakeLists.txt").write_text(textwrap.dedent("""\
        cmake_minimum_required(VERSION 3.10)
        project(kim_gnn_kim_api_probe NONE)
        list(APPEND CMAKE_PREFIX_PATH $ENV{KIM_API_CMAKE_PREFIX_DIR})
        find_package(KIM-API-ITEMS 2.2 CONFIG)
        if(NOT KIM-API-ITEMS_FOUND)
          message(FATAL_ERROR "KIM-API-ITEMS CMake config not found")
        endif()
        message(STATUS "KIM_GNN_KIM_API ${KIM-API-ITEMS_VERSION} ${KIM-API-ITEMS_DIR}")
        """))
    (probe / "build").mkdir()
    proc = _run(["cmake", "-G", "Unix Makefiles", ".."], probe / "build", check=False)
    found = re.search(r"KIM_GNN_KIM_API (\S+) (\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        missing("the KIM API CMake config (KIM-API-ITEMS >= 2.2) was not found "
                    "(Debian: apt-get install libkim-api-dev, or run scripts/install_kim_stack.sh)")
    return found.group(1)


@pytest.fixture(scope="session")
def kim_collections_tool(kim_api):
    tool = shutil.which("kim-api-collections-management")
    if tool is None:
        missing("kim-api-collections-management is not installed (Debian libkim-api-dev)")
    if shutil.which("wget") is None and shutil.which("curl") is None:
        missing("kim-api-collections-management needs wget or curl, and neither is installed")
    return tool


def _temporary_collection(root: Path):
    """Environment for the KIM API tools that confines every collection they
    write to (environment and user) and its configuration file to ``root``."""
    dirs = {}
    for kind in ("md", "pm", "sm", "user-md", "user-pm", "user-sm", "tmp", "home", "cwd"):
        dirs[kind] = root / kind
        dirs[kind].mkdir(parents=True)
    config = root / "kim-api-config"
    config.write_text(
        f"model-drivers-dir = {dirs['user-md']}\n"
        f"portable-models-dir = {dirs['user-pm']}\n"
        f"simulator-models-dir = {dirs['user-sm']}\n"
    )
    env = _clean_env(
        KIM_API_MODEL_DRIVERS_DIR=dirs["md"],
        KIM_API_PORTABLE_MODELS_DIR=dirs["pm"],
        KIM_API_SIMULATOR_MODELS_DIR=dirs["sm"],
        KIM_API_CONFIGURATION_FILE=config,
        TMPDIR=dirs["tmp"],
        HOME=dirs["home"],
    )
    return env, dirs


@pytest.fixture(scope="session")
def stub_collection(kim_collections_tool, kim_item_dir, tmp_path_factory):
    """A temporary environment collection with the stub driver, then the
    exported model, installed by kim-api-collections-management."""
    root = tmp_path_factory.mktemp("kim-collection-stub")
    env, dirs = _temporary_collection(root)
    driver_src = root / STUB_DRIVER
    driver_src.mkdir()
    (driver_src / "CMakeLists.txt").write_text(STUB_DRIVER_CMAKELISTS)
    (driver_src / "stub_driver.cpp").write_text(STUB_DRIVER_SOURCE)
    driver_install = _run([kim_collections_tool, "install", "environment", driver_src], dirs["cwd"], env)
    model_install = _run([kim_collections_tool, "install", "environment", kim_item_dir], dirs["cwd"], env)
    return {"env": env, "dirs": dirs, "tool": kim_collections_tool,
            "driver_install": driver_install.stdout, "model_install": model_install.stdout}


# --- the item's files (no KIM API needed) ----------------------------------

def test_param_file_parses_and_matches_the_contract(kim_item_staged, kim_item_dir):
    text = (kim_item_dir / contract.PARAM_FILE_NAME).read_text()
    spec = kim_item_staged.spec
    species = list(spec.species)  # nequip orders the types (here by atomic number)
    assert sorted(species) == sorted(SPECIES)
    assert spec.num_layers == NUM_LAYERS and spec.cutoff == R_MAX

    parsed = contract.parse_param_file(text)
    assert parsed == {
        "species": species,
        "cutoff": R_MAX,
        "num_layers": NUM_LAYERS,
        "model_file": contract.MODEL_FILE_NAME,
        "returns_forces": False,
        "num_inputs": NUM_LAYERS + 3,
    }
    # The layout of docs/contract.md, blank lines included (the driver's
    # parser consumes one line after each value unconditionally).
    assert _param_values(text) == [
        str(len(species)), " ".join(species), "",
        "Graph", "",
        repr(R_MAX), str(NUM_LAYERS), "",
        contract.MODEL_FILE_NAME, "",
        "False", "",
        str(NUM_LAYERS + 3), "",
        "None",
    ]
    assert text == contract.render_param_file(spec, contract.MODEL_FILE_NAME)
    # The model file it names is the .pt file the item ships.
    assert (kim_item_dir / parsed["model_file"]).is_file()
    assert sorted(p.name for p in kim_item_dir.iterdir()) == ["CMakeLists.txt", "file.param", "kimspec.edn", "model.pt"]


def test_cmakelists_names_the_driver_given(kim_item_staged, kim_item_dir, tmp_path):
    text = (kim_item_dir / "CMakeLists.txt").read_text()
    assert re.search(r'^\s*DRIVER_NAME\s+"([^"]+)"', text, re.M).group(1) == STUB_DRIVER
    assert contract.DEFAULT_DRIVER_NAME not in text
    assert re.search(r"^project\((\S+)\)", text, re.M).group(1) == ITEM_NAME
    assert text.count('ITEM_TYPE "portableModel"') == 2
    assert "find_package(KIM-API-ITEMS 2.2 REQUIRED CONFIG)" in text
    assert re.search(r"PARAMETER_FILES\s+(.*)$", text, re.M).group(1).split() == ['"file.param"', '"model.pt"']
    assert "CMAKE_BUILD_TYPE" not in text  # Debian's kim-api has targets only for the None build type

    default = Path(write_portable_model(kim_item_staged, tmp_path / ITEM_NAME))
    default_text = (default / "CMakeLists.txt").read_text()
    assert f'DRIVER_NAME     "{contract.DEFAULT_DRIVER_NAME}"' in default_text
    assert default_text == text.replace(STUB_DRIVER, contract.DEFAULT_DRIVER_NAME)


# --- building against the KIM API ------------------------------------------

def test_item_builds_with_cmake_and_make_against_the_kim_api(kim_api, kim_item_dir, tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    # No CMAKE_BUILD_TYPE: the KIM items macros set the KIM API's own (None on Debian).
    _run(["cmake", "-G", "Unix Makefiles", kim_item_dir], build)
    _run(["make"], build)

    library = build / "libkim-api-portable-model.so"
    assert library.is_file(), sorted(p.name for p in build.iterdir())
    assert not (kim_item_dir / "CMakeCache.txt").exists()  # out of source

    info = (build / "item-info.txt").read_text()
    assert "item-type:portableModel" in info
    assert f'item-name:"{ITEM_NAME}"' in info
    assert f'item-driver-name:"{STUB_DRIVER}"' in info

    # KIM's own check that the library opens with no undefined symbols.
    ctest = _run(["ctest", "--output-on-failure"], build)
    assert "100% tests passed" in ctest.stdout

    # The parameter files are embedded byte for byte (kim-api 2.x embeds each
    # file as a C array named after it: file.param -> file_param[], file_param_len).
    lib = ctypes.CDLL(os.fspath(library))
    data = library.read_bytes()
    for name in (contract.PARAM_FILE_NAME, contract.MODEL_FILE_NAME):
        symbol = re.sub(r"[^A-Za-z0-9_]", "_", name)
        length = ctypes.c_uint.in_dll(lib, symbol + "_len").value
        embedded = ctypes.string_at(ctypes.addressof(ctypes.c_ubyte.in_dll(lib, symbol)), length)
        assert embedded == (kim_item_dir / name).read_bytes(), name
    assert STUB_DRIVER.encode() in data and ITEM_NAME.encode() in data


# --- installing into a temporary KIM API collection ------------------------

def test_item_installs_without_its_driver(kim_collections_tool, kim_item_dir, tmp_path):
    """With the driver missing, kim-api-collections-management tries openkim.org
    (refused here at once), warns, and installs the model anyway."""
    env, dirs = _temporary_collection(tmp_path)
    out = _run([kim_collections_tool, "install", "environment", kim_item_dir], dirs["cwd"], env).stdout
    assert f"needs its driver '{STUB_DRIVER}', but it is not currently installed" in out, out
    assert "Continuing with installation of the item anyway" in out, out
    assert (dirs["pm"] / ITEM_NAME / "libkim-api-portable-model.so").is_file(), out
    assert not any(dirs["md"].iterdir())
    assert not any(dirs["home"].iterdir())  # nothing written to the user's ~/.kim-api


def _environment_collection_section(listing):
    start = listing.index("Environment Variable Collection")
    end = listing.index("User Collection", start)
    return listing[start:end]


def test_item_installs_with_a_stub_driver_and_is_listed(stub_collection):
    assert f"Found installed driver... {STUB_DRIVER}" in stub_collection["model_install"], stub_collection["model_install"]
    dirs = stub_collection["dirs"]
    assert (dirs["md"] / STUB_DRIVER / "libkim-api-model-driver.so").is_file()
    assert (dirs["pm"] / ITEM_NAME / "libkim-api-portable-model.so").is_file()

    listing = _run([stub_collection["tool"], "list"], dirs["cwd"], stub_collection["env"]).stdout
    section = _environment_collection_section(listing)
    drivers, models = section.split("Portable Models:")[0], section.split("Portable Models:")[1]
    assert STUB_DRIVER in drivers.split(), listing
    assert ITEM_NAME in models.split("Simulator Models:")[0].split(), listing
    assert not any(dirs["home"].iterdir())


def test_kim_api_hands_the_parameter_files_to_the_named_driver(stub_collection, kim_item_dir, tmp_path):
    """KIM::Model::Create on the installed model loads the driver the model
    names and hands it file.param and model.pt unchanged."""
    if shutil.which("pkg-config") is None:
        missing("pkg-config is not installed (needed to compile the KIM API probe)")
    env = stub_collection["env"]
    flags = _run(["pkg-config", "--cflags", "--libs", "libkim-api"], tmp_path, env, check=False)
    if flags.returncode != 0:
        missing("pkg-config does not know libkim-api")
    compiler = shutil.which("c++") or shutil.which("g++")
    (tmp_path / "probe.cpp").write_text(PROBE_SOURCE)
    _run([compiler, "-o", "probe", "probe.cpp", *flags.stdout.split()], tmp_path, env)

    out = _run([tmp_path / "probe", ITEM_NAME], stub_collection["dirs"]["cwd"], env).stdout
    assert "KIM_GNN_PROBE create_error 1" in out, out  # the stub refuses, after reporting
    reported = re.findall(r"^KIM_GNN_STUB file (\d+) (\S+) (\d+) ([0-9a-f]{8})$", out, re.M)
    assert "KIM_GNN_STUB files 2" in out, out
    expected = []
    for index, name in enumerate((contract.PARAM_FILE_NAME, contract.MODEL_FILE_NAME)):
        data = (kim_item_dir / name).read_bytes()
        expected.append((str(index), name, str(len(data)), f"{_fnv1a32(data):08x}"))
    assert reported == expected, out
