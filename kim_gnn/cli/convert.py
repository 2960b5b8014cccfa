"""``kim-gnn convert``: one model file to a KIM portable model directory."""

import os
import sys

from .common import _adapter_options, _convert
from .verify import _run_verify


def default_item_name(source: str) -> str:
    stem = os.path.basename(source).split(".")[0]
    stem = "".join(c if c.isalnum() else "_" for c in stem).strip("_") or "Model"
    if not stem[0].isalpha():
        stem = "M_" + stem
    return f"{stem}__MO_000000000000_000"


def cmd_convert(args) -> int:
    """In one direction: every input checked once (the model's architecture,
    item name, driver name, output directory, metadata, adapter options),
    then the conversion, then the writing."""
    from ..adapters import detect_adapter
    from ..export import portable_model_target, write_to_target

    adapter = detect_adapter(args.model)
    target = portable_model_target(args.output or default_item_name(args.model), args.driver_name, force=args.force)
    if args.metadata:
        from ..kimspec import load_metadata

        # refused before any work when malformed
        target = target._replace(metadata=load_metadata(args.metadata))
    kernels = args.kernels
    if kernels == "aten" and "kernels" not in adapter.options:
        kernels = None  # the default: every adapter emits aten-only models
    options = adapter.check_options({**_adapter_options(args), "prune": False if args.no_prune else None,
                                     "kernels": kernels})
    print(f"converting {args.model} ({adapter.name}) ...", file=sys.stderr)
    staged = _convert(adapter, args.model, **options)
    spec = staged.spec
    path = write_to_target(staged, target)
    recorded = "".join(f"; {name} {spec.details[name]}" for name in adapter.options if spec.details.get(name))
    print(f"wrote KIM portable model {path}")
    print(f"  driver {args.driver_name}; species {' '.join(spec.species)}; cutoff {spec.cutoff:g} A; "
          f"{spec.num_layers} layers; influence distance {spec.influence_distance:g} A; {spec.model_dtype}"
          + recorded)
    if args.verify:
        return _run_verify(args.model, path, None, False, True, args.quiet, None, None)
    print(f"check it with: {verify_command(args.model, path, spec)}")
    return 0


def verify_command(original: str, converted: str, spec) -> str:
    """The ``kim-gnn verify`` command that works for this model: verifying a
    NequIP 0.5/0.6 model runs nequip 0.6 itself, which the modern environment
    does not have, so there it names the legacy environment's kim-gnn."""
    command = f"kim-gnn verify {original} {converted}"
    if spec.architecture == "nequip" and spec.architecture_version.startswith(("0.5", "0.6")):
        from importlib.metadata import PackageNotFoundError, version

        try:
            have = version("nequip")
        except PackageNotFoundError:
            have = ""
        if not have.startswith(("0.5", "0.6")):
            return (f".venv/bin/{command}  (in the legacy environment, scripts/setup.sh: verifying a NequIP "
                    f"{spec.architecture_version} model runs nequip 0.6 itself, and this environment has "
                    f"{'nequip ' + have if have else 'no nequip'})")
    return command
