"""``kim-gnn info``: what a file is, an original model (through its adapter)
or a converted one, and what loading it does."""

import json
import os

from .. import contract
from ..errors import KimGnnError
from .common import _adapter_options


def describe(path: str, **options) -> dict:
    """What a file is: an original model (through its adapter) or a converted one."""
    from ..adapters import detect_adapter
    from ..executor import load_unfrozen

    if os.path.isdir(path) or (os.path.isfile(path) and _is_converted(path)):
        module, spec = load_unfrozen(path)
        extra = {}
        if os.path.isdir(path):
            from .. import kimspec

            spec_file = os.path.join(path, kimspec.KIMSPEC_FILE_NAME)
            extra["kimspec"] = kimspec.read(spec_file) if os.path.isfile(spec_file) else None
        return {
            "kind": "converted kim-gnn model",
            "architecture": spec.architecture,
            "version": spec.architecture_version,
            "layers": spec.num_layers,
            "cutoff": spec.cutoff,
            "influence_distance": spec.influence_distance,
            "species": spec.species,
            "model_dtype": spec.model_dtype,
            "parameters": sum(p.numel() for p in module.parameters()),
            "kim_gnn_version": spec.kim_gnn_version,
            "source_file": spec.source_file,
            "source_sha256": spec.source_sha256,
            "driver_inputs": contract.input_names(spec.num_layers),
            "kernels": spec.details.get("kernels", "aten"),
            **{f"detail.{k}": v for k, v in spec.details.items()},
            "loading": LOADING_TEXT["torchscript"],
            **extra,
        }
    adapter = detect_adapter(path)
    return {"kind": "original model", **adapter.describe(path, **adapter.check_options(options)),
            "loading": LOADING_TEXT[loading_kind(path)]}


#: What loading a file does (docs/publishing.md: "What you may accept from others").
LOADING_TEXT = {
    "torchscript": "TorchScript archive: loading runs no Python code from the file (safe to accept from others)",
    "pickle": "pickled Python objects: loading runs code from the file, as its own package loads it "
              "(accept it only from people you trust)",
}


def loading_kind(path: str) -> str:
    """``torchscript`` for a TorchScript archive (``torch.jit.save``: code/
    and constants.pkl, read by TorchScript's own restricted loader), else
    ``pickle`` (``torch.save`` files, MACE ``.model``, training checkpoints,
    ``.nequip.zip`` packages: Python's pickle)."""
    from ..archives import is_torchscript, zip_names

    if os.path.isfile(path) and is_torchscript(zip_names(path)):
        return "torchscript"
    return "pickle"


def _shown(value) -> str:
    """How ``info`` prints a value: lists space-separated, nothing as 'none'."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(x) for x in value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return "none"
    return str(value)


def _is_converted(path: str) -> bool:
    from ..archives import zip_names

    names = zip_names(path)
    if not names:
        return False
    if any(n.endswith("/extra/" + contract.METADATA_PREFIX + "species") for n in names):
        return True
    # saved without extra files (reloaded or frozen, then saved): the spec in its code
    if any("/code/" in n for n in names) and not any(n.endswith("/extra/nequip_version") for n in names):
        from ..executor import read_spec

        try:
            read_spec(path)
            return True
        except KimGnnError:
            return False
    return False


def cmd_info(args) -> int:
    if not os.path.exists(args.model):
        raise KimGnnError(f"no such file: {args.model}")
    info = describe(args.model, **_adapter_options(args))
    info = {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in info.items()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        shown = {k: v for k, v in info.items() if k != "kimspec"}
        width = max(len(k) for k in shown)
        for k, v in shown.items():
            print(f"{k:<{width}}  {_shown(v)}")
        if "kimspec" in info:
            print("kimspec.edn" + ("  none (not written by this kim-gnn)" if info["kimspec"] is None else ":"))
            for k, v in (info["kimspec"] or {}).items():
                print(f"  {k:<{width - 2}}  {_shown_kimspec(v)}")
    return 0


def _shown_kimspec(value) -> str:
    """A kimspec value on one line: citations by key or DOI, maps as k=v."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_shown_kimspec(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " | ".join(
            (v.get("recordkey") or v.get("doi") or _shown_kimspec(v)) if isinstance(v, dict) else str(v) for v in value)
    return _shown(value)
