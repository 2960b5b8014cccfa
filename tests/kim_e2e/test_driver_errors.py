"""kim-gnn's driver's error branches through the real KIM API: every one is
a KIM error (model creation or compute returns an error, the Python
process lives on) with the driver's one-line message in kim.log. Each
test looks only at the kim.log lines written during the failing call.

Creation: the .param file (too few values, a bad number, the wrong number
of inputs, an unknown element), the model-file checks (no .param file, two,
a model file the .param file names but the item lacks, a file that is not
TorchScript), an op library that cannot be loaded, a CUDA device where
there is none. Compute: "Return Forces: True" without a forces tensor, an
output that is not a tensor, an energy without grad when forces are asked
for, and no particles (n == 0: zero outputs, no error).

The .param parsing itself is unit-tested in tests/csrc/test_driver_parts.py."""

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kim_gnn import contract
from lammps_e2e import unavailable
from pair_virial_model import param_text, write_pair_model

try:
    import kimpy  # noqa: F401
except ImportError:
    unavailable("kimpy is not installed (scripts/install_kimpy.sh; needs libkim-api-dev)", module_level=True)
from ase import Atoms  # noqa: E402
from ase.calculators.kim import KIM  # noqa: E402

TOY_FORWARDS = {
    # a bare tensor where the .param file says forces come as element 1
    "bare_tensor": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return torch.where(contributions == 0, 1.0 + 0.0 * coordinates[:, 0], torch.zeros_like(coordinates[:, 0]))
        """,
    "one_element_tuple": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return (torch.where(contributions == 0, 1.0 + 0.0 * coordinates[:, 0], torch.zeros_like(coordinates[:, 0])),)
        """,
    "list_output": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return [coordinates[:, 0] * 0.0]
        """,
    # the energy does not depend on the coordinates in autograd
    "no_grad": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            e = species.to(torch.float64) + 1.0
            return torch.where(contributions == 0, e, torch.zeros_like(e))
        """,
}


class LogWindow:
    """The kim.log text written after this object was made."""

    def __init__(self, kim_log: Path):
        self.kim_log = kim_log
        self.start = kim_log.stat().st_size if kim_log.exists() else 0

    def text(self) -> str:
        import gc

        gc.collect()
        return self.kim_log.read_text(errors="replace")[self.start:] if self.kim_log.exists() else ""


def expect_kim_error(kim_log, call, message):
    """``call`` raises (a KIM error), and ``message`` is in the kim.log
    lines it wrote, on an error entry of kim-gnn's driver."""
    window = LogWindow(kim_log)
    with pytest.raises(Exception):
        call()
    written = window.text()
    lines = [line for line in written.splitlines() if "* error *" in line.lower() and "kim-gnn driver: " in line]
    assert any(message in line for line in lines), written[-3000:]


@pytest.fixture(scope="session")
def error_items(kim_collection, tmp_path_factory):
    """``error_items(kind)``: an installed item for one error case."""
    import linecache

    import torch

    root = tmp_path_factory.mktemp("error-items")
    pair = write_pair_model(root, "pair", with_method=False)
    cache = {}

    def scripted(kind):
        source = "import torch\n\nclass Toy(torch.nn.Module):\n" + textwrap.indent(
            textwrap.dedent(TOY_FORWARDS[kind]), "    ")
        path = root / f"{kind}.py"
        path.write_text(source)
        linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
        namespace = {}
        exec(compile(source, str(path), "exec"), namespace)
        pt = root / f"{kind}.pt"
        torch.jit.script(namespace["Toy"]()).save(str(pt))
        return pt

    def item_dir(name, files):
        """An item directory with these parameter files (name -> text or source path)."""
        out = kim_collection.dirs["items"] / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for filename, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, out / filename)
            else:
                (out / filename).write_text(content)
        cmake = contract.render_cmakelists(name, contract.KIM_GNN_DRIVER_NAME)
        listed = " ".join(f'"{f}"' for f in files)
        cmake = cmake.replace(f'"{contract.PARAM_FILE_NAME}" "{contract.MODEL_FILE_NAME}"', listed)
        assert listed in cmake
        (out / "CMakeLists.txt").write_text(cmake)
        return out

    good_param = param_text()
    cases = {
        "few_values": lambda: {"file.param": "2\nSi C\nGraph\n3.2\n", "model.pt": pair},
        "bad_cutoff": lambda: {"file.param": good_param.replace("\n3.2\n", "\n-3.2\n"), "model.pt": pair},
        "bad_inputs": lambda: {"file.param": good_param.replace("\n4\n", "\n5\n"), "model.pt": pair},
        "unknown_element": lambda: {"file.param": good_param.replace("\nSi C\n", "\nSi Qq\n"), "model.pt": pair},
        "no_param": lambda: {"settings.dat": good_param, "model.pt": pair},
        "two_params": lambda: {"a.param": good_param, "b.param": good_param, "model.pt": pair},
        "unlisted_model": lambda: {"file.param": good_param.replace("model.pt", "other.pt"), "model.pt": pair},
        "not_torchscript": lambda: {"file.param": good_param, "model.pt": "this is not a TorchScript archive\n"},
        "pair": lambda: {"file.param": good_param, "model.pt": pair},
        "bare_tensor": lambda: {"file.param": _returns_forces(good_param), "model.pt": scripted("bare_tensor")},
        "one_element_tuple": lambda: {"file.param": _returns_forces(good_param),
                                      "model.pt": scripted("one_element_tuple")},
        "list_output": lambda: {"file.param": good_param, "model.pt": scripted("list_output")},
        "no_grad": lambda: {"file.param": good_param, "model.pt": scripted("no_grad")},
    }

    def get(kind):
        if kind not in cache:
            name = f"DriverError_{kind}__MO_000000000000_000"
            cache[kind] = kim_collection.install_item(item_dir(name, cases[kind]()))
        return cache[kind]

    return get


def _returns_forces(param):
    text = param.replace("# Does the model return forces?\nFalse", "# Does the model return forces?\nTrue")
    assert "forces?\nTrue" in text
    return text


def _create(item):
    return KIM(item, options={"release_GIL": True})


def _two_atoms():
    return Atoms(["Si", "C"], positions=[[0.0, 0.0, 0.0], [1.9, 0.0, 0.0]])


@pytest.mark.parametrize("kind,message", [
    ("few_values", "malformed .param file: expected at least 8 values"),
    ("bad_cutoff", ".param file cutoff '-3.2' is not a positive number"),
    ("bad_inputs", ".param file says 5 model inputs; a graph model of 1 layers takes 4"),
    ("unknown_element", "unknown element 'Qq' in the .param file"),
    ("no_param", "the model has no .param file"),
    ("two_params", "the model has more than one .param file"),
    ("unlisted_model", "the .param file names the model file 'other.pt', which is not one of the model's parameter files"),
    ("not_torchscript", "cannot load the TorchScript model "),
])
def test_creation_errors(error_items, kim_log_dir, kind, message):
    expect_kim_error(kim_log_dir, lambda: _create(error_items(kind)), message)


def test_op_library_that_is_not_a_library_is_a_kim_error(error_items, kim_log_dir, monkeypatch, tmp_path):
    broken = tmp_path / "libbroken.so"
    broken.write_text("not a shared library\n")
    monkeypatch.setenv("KIM_GNN_OPS_LIBRARY", str(broken))
    expect_kim_error(kim_log_dir, lambda: _create(error_items("pair")),
                     f"cannot load the kim-gnn op library {broken} (")
    monkeypatch.setenv("KIM_GNN_OPS_LIBRARY", "")  # empty: none, and the model loads
    _create(error_items("pair"))


@pytest.mark.parametrize("device", [pytest.param("cuda:0", marks=pytest.mark.no_cuda), "cuda:x"])
def test_cuda_device_errors(error_items, kim_log_dir, monkeypatch, device):
    """(cuda:0 is an error only without a device: marked no_cuda, deselected where there is one.)"""
    import torch

    monkeypatch.setenv("KIM_MODEL_EXECUTION_DEVICE", device)
    if torch.cuda.is_available():  # (only cuda:x here)
        message = "KIM_MODEL_EXECUTION_DEVICE=cuda:x is not a device (cpu, cuda, cuda:N)"
    else:
        message = f"KIM_MODEL_EXECUTION_DEVICE={device} but CUDA is not available to the driver"
    expect_kim_error(kim_log_dir, lambda: _create(error_items("pair")), message)


@pytest.mark.parametrize("kind,message", [
    ("bare_tensor", "the .param file says the model returns forces, but its output has no forces tensor (element 1)"),
    ("one_element_tuple",
     "the .param file says the model returns forces, but its output has no forces tensor (element 1)"),
    ("list_output", "the model's output is not a tensor or a tuple of tensors"),
    ("no_grad", "forces or a virial requested, but the model's energy does not require grad"),
])
def test_compute_errors(error_items, kim_log_dir, kind, message):
    atoms = _two_atoms()
    atoms.calc = _create(error_items(kind))
    expect_kim_error(kim_log_dir, atoms.get_potential_energy, message)


def test_no_particles_gives_zero_outputs(error_items, kim_log_dir):
    """n == 0: the driver zeroes what was asked for and returns without
    calling the model (no error)."""
    atoms = _two_atoms()
    calc = _create(error_items("pair"))
    atoms.calc = calc
    assert atoms.get_potential_energy() != 0.0
    window = LogWindow(kim_log_dir)
    calc._num_particles[0] = 0  # registered with the KIM API by address
    calc.energy[0] = 123.0
    calc._kim_model.compute(calc._compute_args, True)
    assert calc.energy[0] == 0.0
    assert "error" not in window.text().lower()
