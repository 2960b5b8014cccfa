"""``kim-gnn``: convert, verify and describe GNN potentials as KIM models."""

import argparse
import json
import os
import sys
from typing import List, Optional

from . import contract
from ._version import __version__
from .errors import KimGnnError

EXAMPLE_ITEMS = {
    "nequip": "Si_NequIP_Example__MO_000000000000_000",
    "mace": "Si_MACE_Example__MO_000000000000_000",
}


def _progress(quiet: bool):
    if quiet:
        return None
    tty = sys.stderr.isatty()

    def show(message: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + message)
        else:
            sys.stderr.write(message + "\n")
        sys.stderr.flush()

    return show


def _end_progress(quiet: bool) -> None:
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def default_item_name(source: str) -> str:
    stem = os.path.basename(source).split(".")[0]
    stem = "".join(c if c.isalnum() else "_" for c in stem).strip("_") or "Model"
    if not stem[0].isalpha():
        stem = "M_" + stem
    return f"{stem}__MO_000000000000_000"


def cmd_convert(args) -> int:
    from .adapters import detect_adapter
    from .export import write_portable_model

    adapter = detect_adapter(args.model)
    out = args.output or default_item_name(args.model)
    contract.validate_item_name(os.path.basename(os.path.abspath(out)))
    contract.validate_driver_name(args.driver_name)
    if os.path.exists(out) and not args.force:
        raise KimGnnError(f"{out} already exists; pass --force to replace it")
    options = adapter.check_options({"head": args.head, "prune": False if args.no_prune else None})
    print(f"converting {args.model} ({adapter.name}) ...", file=sys.stderr)
    staged = adapter.convert(args.model, **options)
    spec = staged.kim_gnn_spec
    path = write_portable_model(staged, out, driver_name=args.driver_name, force=args.force)
    print(f"wrote KIM portable model {path}")
    print(f"  driver {args.driver_name}; species {' '.join(spec.species)}; cutoff {spec.cutoff:g} A; "
          f"{spec.num_layers} layers; influence distance {spec.influence_distance:g} A; {spec.model_dtype}"
          + (f"; head {spec.details['head']}" if spec.details.get("head") else ""))
    if args.verify:
        return _run_verify(args.model, path, None, False, True, args.quiet, None)
    print(f"check it with: kim-gnn verify {args.model} {path}")
    return 0


def _run_verify(original, converted, structures, builtin, properties, quiet, json_out) -> int:
    from .verify import verify

    report = verify(
        original, converted, structures=structures or None, properties=properties,
        include_builtin=builtin or not structures, progress=_progress(quiet),
    )
    _end_progress(quiet)
    print(report.summary())
    if json_out:
        report.write_json(json_out)
        print(f"report written to {json_out}")
    return 0 if report.passed else 1


def cmd_verify(args) -> int:
    return _run_verify(args.original, args.converted, args.structures, args.builtin,
                       not args.no_properties, args.quiet, args.json)


def describe(path: str, head: Optional[str] = None) -> dict:
    """What a file is: an original model (through its adapter) or a converted one."""
    from .adapters import detect_adapter
    from .executor import load_unfrozen

    if os.path.isdir(path) or (os.path.isfile(path) and _is_converted(path)):
        module, spec = load_unfrozen(path)
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
            **{f"detail.{k}": v for k, v in spec.details.items()},
        }
    adapter = detect_adapter(path)
    return {"kind": "original model", **adapter.describe(path, **adapter.check_options({"head": head}))}


def _is_converted(path: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/extra/" + contract.METADATA_PREFIX + "species") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def cmd_info(args) -> int:
    if not os.path.exists(args.model):
        raise KimGnnError(f"no such file: {args.model}")
    info = describe(args.model, head=args.head)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            if isinstance(v, list):
                v = " ".join(str(x) for x in v)
            print(f"{k:<{width}}  {v}")
    return 0


def cmd_example(args) -> int:
    """Build a small seeded model, convert it, verify it."""
    from .export import write_portable_model

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.architecture == "mace":
        from .mace import convert_mace
        from .mace.example import build_example_mace

        original = os.path.join(out, "example.model")
        item = os.path.join(out, EXAMPLE_ITEMS["mace"])
        print(f"building a seeded random ScaleShiftMACE model ({args.layers} interactions, Si, {args.dtype}) "
              f"-> {original}", file=sys.stderr)
        build_example_mace(original, species=("Si",), num_interactions=args.layers, model_dtype=args.dtype, seed=0)
        print("converting to a staged KIM model ...", file=sys.stderr)
        staged = convert_mace(original)
    else:
        from .nequip import convert_nequip
        from .nequip.example import build_example_nequip

        original = os.path.join(out, "deployed.pth")
        item = os.path.join(out, EXAMPLE_ITEMS["nequip"])
        print(f"building a seeded random NequIP 0.6 model ({args.layers} layers, Si, {args.dtype}) -> {original}",
              file=sys.stderr)
        build_example_nequip(original, species=("Si",), num_layers=args.layers, model_dtype=args.dtype, seed=0)
        print("converting to a staged KIM model ...", file=sys.stderr)
        staged = convert_nequip(original)
    write_portable_model(staged, item, force=True)
    print("verifying against the original periodic model ...", file=sys.stderr)
    code = _run_verify(original, item, None, True, True, args.quiet, os.path.join(out, "verify-report.json"))
    print(f"original model:       {original}")
    print(f"KIM portable model:   {item}")
    print(f"install it with:      kim-api-collections-management install user {item}")
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kim-gnn",
        description="Turn periodic GNN interatomic potentials (NequIP 0.5/0.6 deployed models, MACE / "
                    "ScaleShiftMACE .model files) into staged, local KIM portable models for the OpenKIM TorchML "
                    "driver, and prove them equal to the original.",
    )
    parser.add_argument("--version", action="version", version=f"kim-gnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="convert a model file into a KIM portable model directory",
                       description="Read MODEL (a NequIP deployed.pth or a MACE .model; the architecture is recognised "
                                   "from the file), rewrite it as staged graph convolution and write "
                                   "a KIM portable model directory: CMakeLists.txt, file.param, model.pt. The directory "
                                   "name is the KIM item name. Nothing is left behind on failure.")
    p.add_argument("model", help="the trained model file (NequIP 0.5/0.6 deployed.pth, MACE .model)")
    p.add_argument("--head", help="multi-head MACE models: the head to convert (default: the only head, else the "
                                  "one named 'default'); recorded in the converted model")
    p.add_argument("-o", "--output", help="output directory, named like Name__MO_000000000000_000 "
                                          "(default: from the model file name)")
    p.add_argument("--driver-name", default=contract.DEFAULT_DRIVER_NAME,
                   help=f"KIM model driver to name in CMakeLists.txt (default {contract.DEFAULT_DRIVER_NAME})")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-prune", action="store_true",
                   help="emit the unpruned staged model: every layer on every particle of its graph "
                        "(default: only the work that reaches a contributing atom)")
    p.add_argument("--verify", action="store_true", help="run the verification battery after converting")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="compare a converted model with the original periodic model",
                       description="Evaluate the original model on periodic structures (its own cell and shifts) and "
                                   "the converted model as the TorchML driver runs it (fresh process, default torch "
                                   "settings); report energy, force, stress and per-atom energy errors. Exits 1 if any "
                                   "structure fails.")
    p.add_argument("original", help="the original model file")
    p.add_argument("converted", help="converted model.pt or KIM portable model directory")
    p.add_argument("--structures", nargs="+", metavar="FILE", help="structure files (any format ASE reads); "
                                                                   "replace the built-in battery unless --builtin")
    p.add_argument("--builtin", action="store_true", help="also run the built-in battery with --structures")
    p.add_argument("--no-properties", action="store_true",
                   help="skip rotation/translation/permutation/supercell/padding checks")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="describe a model file (original or converted)")
    p.add_argument("model", help="original model file, converted model.pt or portable model directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--head", help="multi-head MACE models: the head to describe")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("example", help="build, convert and verify a small seeded model (NequIP 0.6 or MACE)")
    p.add_argument("--architecture", choices=("nequip", "mace"), default="nequip",
                   help="which kind of model to build (default nequip; needs nequip 0.6 or mace-torch)")
    p.add_argument("--out", default="kim-gnn-example", help="working directory (default ./kim-gnn-example)")
    p.add_argument("--layers", type=int, default=3, help="message-passing layers / interactions (default 3)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="model dtype")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_example)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KimGnnError as exc:
        if args.debug:
            raise
        print(f"kim-gnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kim-gnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in kim-gnn, not the user's input
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"kim-gnn: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
