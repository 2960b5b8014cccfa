"""Which architecture a model is, and the adapter that handles it.

The core knows no architecture. Each adapter describes itself with an
``Adapter`` record and is found in one of three ways:

* an ``adapter.py`` module in a subpackage of kim_gnn, or in a subpackage
  of a family folder, that defines ``ADAPTER`` (the built-in adapters:
  ``kim_gnn/mace/adapter.py``, ``kim_gnn/nequip/v06/adapter.py``,
  ``kim_gnn/nequip/modern/adapter.py``; adding a folder is the registration);
* an entry point in the group ``kim_gnn.adapters`` of any installed
  distribution, naming an ``Adapter`` (or a callable returning one);
* ``register_adapter(adapter)`` at run time.

An adapter converts a model (``convert(source, **options)``), describes it
(``describe(path, **options)``) and evaluates the original periodic model
for the harness (``original(source, spec)``, where ``spec`` is the converted
model's spec, so that e.g. the same MACE head is evaluated). ``source`` is a
file path, or an in-memory module where ``detect_module`` accepts it.
``options`` maps the conversion options the adapter takes (``head``,
``prune``, ``kernels``) to their help text; the CLI offers string options
as ``--head`` etc., ``prune`` (a core switch: emit the unpruned model) as
``--no-prune`` and ``kernels`` (a core choice: aten or the kim_gnn op
library) as ``--kernels``. ``exports`` names the public functions the adapter adds to
``kim_gnn`` (``convert_nequip``), and ``example`` how ``kim-gnn example``
builds a seeded model of its kind. Adapter modules must be cheap to import:
the architecture package (and torch) only when a function is called.

An adapter also declares what it needs from its environment:
``import_names``, the top-level modules the architecture needs at
conversion but a converted model must never need (the fresh process that
``verify`` runs the converted model in makes the union over every registered
adapter unimportable: ``blocked_import_names``), and ``environment_hint``,
how to get an environment that converts its models (core and adapters alike
ask ``environment_hint(name)``, so no adapter imports another's module).

One module (about 330 lines) on purpose: the record, the registry and the
detection it serves are one concept, and every caller (the CLI, the
harness, ``kim_gnn/__init__.py``'s exports) asks this one place.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .archives import zip_names  # noqa: F401 (adapters import it from here)
from .errors import KimGnnError, UnsupportedModelError

#: Entry-point group through which installed distributions add adapters.
ENTRY_POINT_GROUP = "kim_gnn.adapters"

#: Boolean conversion options the core offers as command-line switches
#: (option name -> switch that sets it False); adapters list them in
#: ``options`` when they take them.
FLAG_OPTIONS = {"prune": "--no-prune"}

#: Conversion options with fixed choices that the core offers itself
#: (``kim-gnn convert --kernels kim_gnn``); adapters list them in ``options``
#: when they take them.
CHOICE_OPTIONS = {"kernels": ("aten", "kim_gnn")}

KERNELS_HELP = ("'aten' (default: aten ops only, portable to any TorchML driver) or 'kim_gnn': the pruned "
                "layers sum with kim-gnn's deterministic CSR kernels (the op library, kim_gnn/lib, must be "
                "built and loaded in the process that runs the model)")


@dataclass(frozen=True)
class ExampleModel:
    """How ``kim-gnn example --architecture NAME`` builds a seeded model:
    ``build(path, num_layers, model_dtype)`` writes the original model file."""

    build: Callable[[str, int, str], object]
    file_name: str  # of the original model inside the example directory
    item_name: str  # of the KIM portable model written next to it
    description: str  # "a seeded random NequIP 0.6 model"


@dataclass(frozen=True)
class Adapter:
    name: str
    detect: Callable[[str], bool]
    convert: Callable[..., object]
    describe: Callable[..., Dict[str, object]]
    original: Callable[[object, object], object]
    #: Conversion options: name -> help text (a tuple of names is accepted too).
    options: Dict[str, str] = field(default_factory=dict)
    detect_module: Optional[Callable[[object], bool]] = None
    #: The distribution (pip name) of the architecture package, for reports.
    package: str = ""
    #: One line for help texts: what files this adapter converts.
    summary: str = ""
    #: Public names it adds to ``kim_gnn``: name -> "module:attribute".
    exports: Dict[str, str] = field(default_factory=dict)
    #: The model ``kim-gnn example --architecture NAME`` builds (named like the
    #: adapter), or several by name (e.g. nequip-modern and allegro).
    example: object = None
    #: Detection order among adapters (lower first); ties by name.
    priority: int = 100
    #: Top-level module names the architecture needs at conversion but a
    #: converted model must never need (``verify``'s fresh process blocks them).
    import_names: Tuple[str, ...] = ()
    #: How to get an environment that converts these models, one clause
    #: ("convert it in the legacy environment: ..."); "" if none is needed.
    environment_hint: str = ""

    def package_version(self) -> str:
        """The installed version of the architecture package, '' if absent."""
        if not self.package:
            return ""
        try:
            from importlib.metadata import version

            return version(self.package)
        except Exception:
            return ""

    @property
    def examples(self) -> Dict[str, ExampleModel]:
        """The example models this adapter builds, by ``--architecture`` name."""
        if self.example is None:
            return {}
        if isinstance(self.example, ExampleModel):
            return {self.name: self.example}
        return dict(self.example)

    def option_help(self, name: str) -> str:
        return self.options.get(name, "") if isinstance(self.options, dict) else ""

    def check_options(self, options: Dict[str, object]) -> Dict[str, object]:
        """The options that were given (not None); refuse those this adapter does not take."""
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            flags = [FLAG_OPTIONS.get(k, "--" + k.replace("_", "-")) for k in unknown]
            raise KimGnnError(f"option(s) {', '.join(flags)} do not apply to {self.name} models")
        return given


# --- the registry -----------------------------------------------------------------

_registry: Dict[str, Adapter] = {}
_discovered = False


def register_adapter(adapter: Adapter, replace: bool = False) -> Adapter:
    """Add an adapter (e.g. from a plug-in package or a test)."""
    if not isinstance(adapter, Adapter):
        raise TypeError(f"register_adapter takes an Adapter, not {type(adapter).__name__}")
    if isinstance(adapter.import_names, str) or not all(isinstance(n, str) and n and "." not in n
                                                         for n in adapter.import_names):
        raise TypeError(f"adapter {adapter.name!r}: import_names must be a tuple of top-level module names, "
                        f"not {adapter.import_names!r}")
    if adapter.name in _registry and not replace and _registry[adapter.name] is not adapter:
        raise KimGnnError(f"an adapter named {adapter.name!r} is already registered")
    _registry[adapter.name] = adapter
    return adapter


def unregister_adapter(name: str) -> None:
    _registry.pop(name, None)


def _is_package(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "__init__.py"))


def _builtin_adapter_modules() -> List[str]:
    """``kim_gnn.<sub>.adapter`` for every subpackage that has one, and
    ``kim_gnn.<family>.<sub>.adapter`` for the subpackages of a family folder
    (a subpackage without an ``adapter.py`` of its own, such as
    ``kim_gnn/nequip``: ``v06/`` and ``modern/``)."""
    root = os.path.dirname(os.path.abspath(__file__))
    names = []
    for sub in sorted(os.listdir(root)):
        folder = os.path.join(root, sub)
        if not _is_package(folder):
            continue
        if os.path.isfile(os.path.join(folder, "adapter.py")):
            names.append(f"{__package__}.{sub}.adapter")
            continue
        for member in sorted(os.listdir(folder)):
            if _is_package(os.path.join(folder, member)) and os.path.isfile(os.path.join(folder, member, "adapter.py")):
                names.append(f"{__package__}.{sub}.{member}.adapter")
    return names


def _entry_point_adapters():
    from importlib.metadata import entry_points

    try:
        found = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10
        found = entry_points().get(ENTRY_POINT_GROUP, [])
    for ep in found:
        try:
            obj = ep.load()
            yield obj() if callable(obj) and not isinstance(obj, Adapter) else obj
        except Exception as exc:
            print(f"kim-gnn: warning: adapter entry point {ep.name!r} ({ep.value}) failed to load: {exc}",
                  file=sys.stderr)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import importlib

    for module_name in _builtin_adapter_modules():
        adapter = getattr(importlib.import_module(module_name), "ADAPTER", None)
        if isinstance(adapter, Adapter) and adapter.name not in _registry:
            register_adapter(adapter)
    for adapter in _entry_point_adapters():
        if isinstance(adapter, Adapter) and adapter.name not in _registry:
            try:
                register_adapter(adapter)
            except (TypeError, KimGnnError) as exc:  # a broken plug-in must not stop every command
                print(f"kim-gnn: warning: adapter {adapter.name!r} from an entry point was not registered: {exc}",
                      file=sys.stderr)


def registered_adapters() -> List[Adapter]:
    """Every known adapter, in detection order."""
    _discover()
    return sorted(_registry.values(), key=lambda a: (a.priority, a.name))


def adapter_named(name: str) -> Adapter:
    for adapter in registered_adapters():
        if adapter.name == name:
            return adapter
    known = ", ".join(a.name for a in registered_adapters())
    raise KimGnnError(f"no adapter for architecture {name!r} (known: {known})")


def example_models() -> Dict[str, tuple]:
    """Every example ``kim-gnn example`` can build: name -> (adapter, ExampleModel)."""
    found: Dict[str, tuple] = {}
    for adapter in registered_adapters():
        for name, example in adapter.examples.items():
            found.setdefault(name, (adapter, example))
    return found


def all_options() -> Dict[str, str]:
    """Every string conversion option some adapter takes, with its help text(s)."""
    options: Dict[str, List[str]] = {}
    for adapter in registered_adapters():
        for name in adapter.options:
            if name in FLAG_OPTIONS or name in CHOICE_OPTIONS:
                continue
            text = adapter.option_help(name) or f"{adapter.name} models"
            options.setdefault(name, [])
            if text not in options[name]:
                options[name].append(text)
    return {name: "; ".join(texts) for name, texts in options.items()}


def blocked_import_names() -> Tuple[str, ...]:
    """The union of every registered adapter's ``import_names``, sorted: the
    modules a converted model must run without."""
    names = set()
    for adapter in registered_adapters():
        names.update(adapter.import_names)
    return tuple(sorted(names))


def environment_hint(name: str) -> str:
    """The environment hint of the adapter named ``name`` (how to get an
    environment that converts its models)."""
    return adapter_named(name).environment_hint


def public_exports() -> Dict[str, str]:
    """Public names the adapters add to ``kim_gnn``: name -> "module:attribute"."""
    exports: Dict[str, str] = {}
    for adapter in registered_adapters():
        exports.update(adapter.exports)
    return exports


# --- detection ----------------------------------------------------------------------

def detect_adapter(source) -> Adapter:
    """The adapter for a model file or in-memory module, or a clear error
    saying why there is none."""
    adapters = registered_adapters()
    if not isinstance(source, (str, os.PathLike)):
        for adapter in adapters:
            if adapter.detect_module is not None and adapter.detect_module(source):
                return adapter
        raise UnsupportedModelError(
            f"an in-memory {type(source).__name__} is not a model of a supported architecture "
            f"(in memory: {', '.join(a.name for a in adapters if a.detect_module)}; or pass a model file)"
        )
    path = os.fspath(source)
    if not os.path.exists(path):
        raise KimGnnError(f"no such file: {path}")
    if os.path.isdir(path):
        raise KimGnnError(f"{path} is a directory, not a model file")
    for adapter in adapters:
        if adapter.detect(path):
            return adapter
    supported = "; ".join(a.summary or a.name for a in adapters)
    names = zip_names(path)
    if not names:
        raise KimGnnError(
            f"{path} is not a model file kim-gnn knows: not a TorchScript or PyTorch archive "
            f"(or the file is truncated or corrupt; supported: {supported})"
        )
    if any(n.endswith("/extra/kim_gnn/species") for n in names):
        raise KimGnnError(f"{path} is already a converted kim-gnn model; convert the original model it came from")
    if any(n.endswith("/constants.pkl") or "/code/__torch__" in n for n in names):
        raise UnsupportedModelError(f"{path} is TorchScript, but not a model of a supported architecture "
                                    f"(supported: {supported})")
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise UnsupportedModelError(
            f"{path} is a PyTorch archive (torch.save) that holds no model of a supported architecture: a state "
            "dict or training checkpoint? Convert the whole-model file (e.g. the .model that mace_run_train writes)"
        )
    raise UnsupportedModelError(f"{path} is not a model of a supported architecture (supported: {supported})")


def convert(source, **options):
    """Detect the architecture of ``source`` (a model file, or an in-memory
    module an adapter accepts) and convert it with its adapter.
    ``options`` (e.g. ``head="Default"`` for MACE) go to the adapter; one it
    does not take is an error."""
    adapter = detect_adapter(source)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    return adapter.convert(source, **adapter.check_options(options))
