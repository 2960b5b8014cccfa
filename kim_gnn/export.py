"""Write a converted model as a KIM portable model directory (docs/contract.md).

In one direction: :func:`portable_model_target` checks every input of the
writing once, before any work (item name, driver name, output directory,
metadata), :func:`write_to_target` writes a converted model there without
checking them again; :func:`write_portable_model` is the two in one call.
"""

import os
import shutil
import tempfile
from typing import Any, Callable, Dict, NamedTuple, Optional

from . import contract, kimspec
from .errors import KimGnnError


def check_portable_model_target(out_dir, force: bool = False) -> str:
    """Refuse, before any work, a portable-model directory that cannot be
    written: a file in its place, an existing one without ``force``, a parent
    directory that is missing or not writable. Returns the absolute path."""
    return check_new_directory(out_dir, force, "output directory", "output directory ", "--force (force=True)")


def check_new_directory(out_dir, force: bool, what: str, created: str, force_option: str) -> str:
    """Refuse, before any work, a directory to write (a portable model, the
    driver item) that cannot be: a file in its place (``what`` names it), an
    existing one without ``force`` (``force_option`` says how to replace it),
    a parent directory that is missing or not writable (``created`` names
    what cannot be created). Returns the absolute path."""
    out_dir = os.path.abspath(os.fspath(out_dir)).rstrip(os.sep)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise KimGnnError(f"{what} {out_dir} exists and is not a directory")
    if os.path.exists(out_dir) and not force:
        raise KimGnnError(f"{out_dir} already exists; pass {force_option} to replace it")
    check_parent_directory(out_dir, f"cannot create {created}{out_dir}")
    return out_dir


def check_parent_directory(path: str, refusal: str) -> None:
    """Refuse, before any work, a file or directory to write whose parent
    directory is missing or not writable; ``refusal`` says what cannot be
    done ("cannot write JSON report /x/r.json"), the reason follows it."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise KimGnnError(f"{refusal}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise KimGnnError(f"{refusal}: directory {parent} is not writable")


def write_directory(out_dir: str, prefix: str, fill: Callable[[str], None]) -> str:
    """Write a directory that appears complete or not at all: ``fill(tmp)``
    writes into a temporary sibling of ``out_dir`` (``.PREFIX.*``), which is
    then renamed into place, replacing an existing ``out_dir``."""
    parent = os.path.dirname(out_dir)
    tmp = tempfile.mkdtemp(prefix=f".{prefix}.", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; an installed item is read by others
    try:
        fill(tmp)
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{prefix}.old.", dir=parent)
            os.rename(out_dir, os.path.join(old, "item"))
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_portable_model(staged, out_dir, driver_name: str = contract.DEFAULT_DRIVER_NAME, force: bool = False,
                         metadata: Optional[Dict[str, Any]] = None) -> str:
    """Write ``CMakeLists.txt``, ``file.param``, ``model.pt`` and
    ``kimspec.edn`` into ``out_dir``, whose base name is the KIM item name.
    ``metadata``: the user's kimspec entries (``kimspec.load_metadata``);
    the rest of ``kimspec.edn`` comes from the model's spec.

    The directory appears complete or not at all: everything is written into
    a temporary sibling that is renamed into place at the end. An existing
    directory is replaced only with ``force=True``.
    """
    return write_to_target(staged, portable_model_target(out_dir, driver_name, force, metadata))


class PortableModelTarget(NamedTuple):
    """A checked place to write a portable model (``portable_model_target``)."""

    out_dir: str
    item_name: str
    driver_name: str
    force: bool
    metadata: Optional[Dict[str, Any]]


def portable_model_target(out_dir, driver_name: str = contract.DEFAULT_DRIVER_NAME, force: bool = False,
                          metadata: Optional[Dict[str, Any]] = None) -> PortableModelTarget:
    """Check, once and before any work, everything writing a portable model
    needs: the item name (the directory's base name), the driver name and
    the output directory (``check_portable_model_target``)."""
    out_dir = os.path.abspath(os.fspath(out_dir)).rstrip(os.sep)
    item_name = contract.validate_item_name(os.path.basename(out_dir))
    contract.validate_driver_name(driver_name)
    check_portable_model_target(out_dir, force)
    return PortableModelTarget(out_dir, item_name, driver_name, force, metadata)


def write_to_target(staged, target: PortableModelTarget) -> str:
    """Write ``staged`` (a converted model) into a checked ``target``: the
    directory appears complete or not at all."""
    out_dir, item_name, driver_name, metadata = target.out_dir, target.item_name, target.driver_name, target.metadata
    spec = contract.spec_of_module(staged)
    if spec is None:
        raise KimGnnError("the model to export carries no kim-gnn spec: convert it with kim_gnn first")
    if os.path.exists(out_dir) and not target.force:  # appeared while converting
        raise KimGnnError(f"{out_dir} already exists; pass --force (force=True) to replace it")
    spec_text = kimspec.render(kimspec.model_kimspec(item_name, spec, driver_name, metadata))

    def fill(tmp: str) -> None:
        staged.save(os.path.join(tmp, contract.MODEL_FILE_NAME))
        with open(os.path.join(tmp, contract.PARAM_FILE_NAME), "w") as fh:
            fh.write(contract.render_param_file(spec, contract.MODEL_FILE_NAME))
        with open(os.path.join(tmp, "CMakeLists.txt"), "w") as fh:
            fh.write(contract.render_cmakelists(item_name, driver_name))
        with open(os.path.join(tmp, kimspec.KIMSPEC_FILE_NAME), "w", encoding="utf-8") as fh:
            fh.write(spec_text)

    return write_directory(out_dir, item_name, fill)
