"""The package's public names are what the README says they are."""

import importlib
import pkgutil
import subprocess
import sys

import kim_gnn


def test_public_names_are_functions_and_classes_after_any_import():
    # Import every submodule first: a submodule named like a public function
    # would rebind the package attribute to itself.
    for info in pkgutil.walk_packages(kim_gnn.__path__, "kim_gnn."):
        if info.name.endswith(("._fresh_worker",)):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an adapter whose architecture package is absent
            pass
    from kim_gnn import StagedCalculator, build_staged_graphs, convert, verify, write_portable_model

    for obj in (verify, convert, build_staged_graphs, write_portable_model):
        assert callable(obj) and not isinstance(obj, type(kim_gnn)), obj
    assert isinstance(StagedCalculator, type)
    assert kim_gnn.verify is verify and kim_gnn.convert is convert


def test_no_public_name_is_a_submodule_name():
    submodules = {info.name for info in pkgutil.iter_modules(kim_gnn.__path__)}
    assert not submodules & set(kim_gnn.__all__)


def test_importing_kim_gnn_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, kim_gnn, kim_gnn.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
