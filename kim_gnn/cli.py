"""``kim-gnn``: convert, verify and describe GNN potentials as KIM models.

One module (about 560 lines) for now: the argument parser and one function per
command; ``docs/cli.md`` is held equal to this parser by tests/core/test_readme.py.
Splitting the commands into a package is still to do (issue 19).
"""

import argparse
import json
import os
import sys
from typing import List, Optional

from . import contract
from ._version import __version__
from .errors import KimGnnError



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


def check_output_file(path: str, what: str) -> str:
    """Refuse, before any work starts, an output file that cannot be written."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise KimGnnError(f"{what} {path} is a directory; give a file name")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise KimGnnError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise KimGnnError(f"cannot write {what} {path}: directory {parent} is not writable")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _convert(adapter, source, **options):
    """``adapter.convert`` with each ``OptimisationNotApplied`` warning
    printed as one ``kim-gnn: warning: ...`` line on stderr (other warnings
    go where they would have gone)."""
    import warnings

    from .errors import OptimisationNotApplied

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OptimisationNotApplied)
        staged = adapter.convert(source, **options)
    for w in caught:
        if issubclass(w.category, OptimisationNotApplied):
            print(f"kim-gnn: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return staged


def cmd_convert(args) -> int:
    """In one direction: every input checked once (the model's architecture,
    item name, driver name, output directory, metadata, adapter options),
    then the conversion, then the writing."""
    from .adapters import detect_adapter
    from .export import portable_model_target, write_to_target

    adapter = detect_adapter(args.model)
    target = portable_model_target(args.output or default_item_name(args.model), args.driver_name, force=args.force)
    if args.metadata:
        from .kimspec import load_metadata

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


def _run_verify(original, converted, structures, builtin, properties, quiet, json_out, plot_out) -> int:
    from .verification.harness import verify

    if json_out:
        check_output_file(json_out, "JSON report")
    if plot_out:
        check_output_file(plot_out, "plot")
        from .verification.plots import require_matplotlib

        require_matplotlib()
    report = verify(
        original, converted, structures=structures or None, properties=properties,
        include_builtin=builtin or not structures, progress=_progress(quiet),
    )
    _end_progress(quiet)
    print(report.summary())
    if json_out:
        report.write_json(json_out)
        print(f"report written to {json_out}")
    if plot_out:
        from .verification.plots import write_parity_plot

        write_parity_plot(report, plot_out)
        print(f"parity plot written to {plot_out}")
    return 0 if report.passed else 1


def cmd_verify(args) -> int:
    return _run_verify(args.original, args.converted, args.structures, args.builtin,
                       not args.no_properties, args.quiet, args.json, args.plot)


def _adapter_options(args) -> dict:
    """The adapters' conversion options as given on the command line."""
    from .adapters import all_options

    return {name: getattr(args, name, None) for name in all_options()}


def cmd_check(args) -> int:
    from .verification.check import check_model

    if not os.path.exists(args.model):
        raise KimGnnError(f"no such file: {args.model}")
    if args.json and args.json != "-":
        check_output_file(args.json, "JSON report")
    report = check_model(args.model, progress=_progress(args.quiet), only=args.only,
                         memory_calls=args.memory_calls)
    _end_progress(args.quiet)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        if args.json:
            report.write_json(args.json)
            print(f"report written to {args.json}")
    return 0 if report.passed else 1


def describe(path: str, **options) -> dict:
    """What a file is: an original model (through its adapter) or a converted one."""
    from .adapters import detect_adapter
    from .executor import load_unfrozen

    if os.path.isdir(path) or (os.path.isfile(path) and _is_converted(path)):
        module, spec = load_unfrozen(path)
        extra = {}
        if os.path.isdir(path):
            from . import kimspec

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
    from .archives import is_torchscript, zip_names

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
    from .archives import zip_names

    names = zip_names(path)
    if not names:
        return False
    if any(n.endswith("/extra/" + contract.METADATA_PREFIX + "species") for n in names):
        return True
    # saved without extra files (reloaded or frozen, then saved): the spec in its code
    if any("/code/" in n for n in names) and not any(n.endswith("/extra/nequip_version") for n in names):
        from .executor import read_spec

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


def default_example_dir(architecture: str) -> str:
    return f"kim-gnn-example-{architecture}"


def cmd_example(args) -> int:
    """Build a small seeded model, convert it, verify it."""
    import shutil

    from .adapters import example_models
    from .export import write_portable_model

    adapter, example = example_models()[args.architecture]
    out = os.path.abspath(args.out or default_example_dir(args.architecture))
    if os.path.exists(out) and not os.path.isdir(out):
        raise KimGnnError(f"--out {out} exists and is not a directory")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise KimGnnError(f"cannot create {out}: directory {parent} does not exist")
    created = not os.path.exists(out)
    item = os.path.join(out, example.item_name)
    original = os.path.join(out, example.file_name)
    report_file = os.path.join(out, "verify-report.json")
    written = [original, item, report_file]
    os.makedirs(out, exist_ok=True)
    try:
        print(f"building {example.description} ({args.layers} layers, Si, {args.dtype}) -> {original}",
              file=sys.stderr)
        example.build(original, args.layers, args.dtype)
        print("converting to a staged KIM model ...", file=sys.stderr)
        staged = _convert(adapter, original)
        write_portable_model(staged, item, force=True)
        print("verifying against the original periodic model ...", file=sys.stderr)
        code = _run_verify(original, item, None, True, True, args.quiet, report_file, None)
    except BaseException:
        # Leave nothing half-made behind: the whole directory if this run made
        # it, else the files this run writes.
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in written:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.unlink(path)
        raise
    print(f"original model:       {original}")
    print(f"KIM portable model:   {item}")
    print(f"verification report:  {report_file}")
    print(f"install it with:      kim-api-collections-management install user {item}")
    return code


def cmd_install_driver(args) -> int:
    from .kim_driver import export_driver_item, install_driver, main_progress

    if args.export:
        metadata = None
        if args.metadata:
            from .kimspec import load_metadata

            metadata = load_metadata(args.metadata)
        path = export_driver_item(args.export, force=args.force, metadata=metadata)
        print(f"wrote KIM model driver item {contract.KIM_GNN_DRIVER_NAME}: {path}")
        print(f"install it with: kim-api-collections-management install user {path}")
        print("  (with the Python environment that has torch active, or Torch_DIR set: the driver links libtorch)")
        return 0
    if args.metadata or args.force:
        raise KimGnnError("--metadata and --force go with --export DIR")
    path = install_driver(args.collection, args.build_dir, progress=None if args.quiet else main_progress)
    print(f"installed KIM model driver {contract.KIM_GNN_DRIVER_NAME}: {path}")
    print(f"convert models for it with: kim-gnn convert MODEL --driver-name {contract.KIM_GNN_DRIVER_NAME}")
    return 0


def _add_adapter_options(parser, verb: str) -> None:
    """One ``--NAME`` per conversion option some adapter takes (e.g. --head)."""
    from .adapters import all_options

    for name, text in all_options().items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, help=f"{text} [{verb}]")


def build_parser() -> argparse.ArgumentParser:
    from .adapters import registered_adapters

    adapters = registered_adapters()
    kinds = "; ".join(a.summary or a.name for a in adapters)
    from .adapters import example_models

    examples = list(example_models())
    # --debug is accepted before and after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors (exit codes stay the same)")

    parser = argparse.ArgumentParser(
        prog="kim-gnn",
        parents=[common],
        description=f"Turn periodic GNN interatomic potentials ({kinds}) into staged, local KIM portable "
                    "models for the OpenKIM TorchML driver, and prove them equal to the original.",
        epilog="Exit codes: 0 success, 1 verification failed, 2 bad input (one 'kim-gnn: error:' line), "
               "3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"kim-gnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", parents=[common], help="convert a model file into a KIM portable model directory",
                       description=f"Read MODEL ({kinds}; the architecture is recognised "
                                   "from the file), rewrite it as staged graph convolution and write "
                                   "a KIM portable model directory: CMakeLists.txt, file.param, model.pt, "
                                   "kimspec.edn. The directory "
                                   "name is the KIM item name. Nothing is left behind on failure.")
    p.add_argument("model", help=f"the trained model file ({kinds})")
    _add_adapter_options(p, "the model to convert")
    p.add_argument("-o", "--output", help="output directory, named like Name__MO_000000000000_000 "
                                          "(default: from the model file name)")
    p.add_argument("--driver-name", default=contract.DEFAULT_DRIVER_NAME,
                   help=f"KIM model driver to name in CMakeLists.txt (default {contract.DEFAULT_DRIVER_NAME}, the "
                        f"OpenKIM TorchML driver; kim-gnn's own driver, see install-driver: "
                        f"{contract.KIM_GNN_DRIVER_NAME})")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-prune", action="store_true",
                   help="emit the unpruned staged model: every layer on every particle of its graph "
                        "(default: only the work that reaches a contributing atom)")
    from .adapters import CHOICE_OPTIONS

    p.add_argument("--kernels", choices=CHOICE_OPTIONS["kernels"], default=None,
                   help="how the pruned layers aggregate messages: aten (default; aten ops only, runs under the "
                        "stock TorchML driver) or kim_gnn (kim-gnn's deterministic CSR kernels: the op library "
                        "kim_gnn/lib/libkim_gnn_ops.so must be built, and loaded in the process that runs the "
                        "model; recorded in the model, shown by `kim-gnn info`)")
    p.add_argument("--metadata", metavar="FILE",
                   help="YAML or JSON file of what only you know, for the item's kimspec.edn: title, description, "
                        "developers, citations (BibTeX entries or DOIs), license, publication_year, training_data "
                        "(fields not given are left out; the rest comes from the model)")
    p.add_argument("--verify", action="store_true", help="run the verification battery after converting")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", parents=[common], help="compare a converted model with the original periodic model",
                       description="Evaluate the original model on periodic structures (its own cell and shifts) and "
                                   "the converted model as the TorchML driver runs it (fresh process, default torch "
                                   "settings); report energy (eV), force (eV/A), stress (eV/A^3) and per-atom energy "
                                   "errors. Exits 1 if any structure fails.")
    p.add_argument("original", help="the original model file")
    p.add_argument("converted", help="converted model.pt or KIM portable model directory")
    p.add_argument("--structures", nargs="+", metavar="FILE", help="structure files (any format ASE reads); "
                                                                   "replace the built-in battery unless --builtin")
    p.add_argument("--builtin", action="store_true", help="also run the built-in battery with --structures")
    p.add_argument("--no-properties", action="store_true",
                   help="skip rotation/translation/permutation/supercell/padding checks")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (with versions, time and machine)")
    p.add_argument("--plot", metavar="FILE", help="write a parity plot (converted vs original energies per atom, "
                                                  "per-atom energies and force components, error distribution); "
                                                  "PNG, PDF or SVG by suffix; needs matplotlib")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", parents=[common], help="OpenKIM-style checks of a converted model on its own",
                       description="Run a converted model (model.pt or a KIM portable model directory) as the TorchML "
                                   "driver runs it and check it alone, without the original: forces vs. the numerical "
                                   "derivative of the energy, continuity across the cutoff and influence distance, "
                                   "inversion/translation/rotation/permutation symmetry, periodicity (1x1x1 vs 2x2x2), "
                                   "species support, thread safety, memory growth, determinism. One PASS/FAIL line "
                                   "per check; exits 1 if any fails.")
    p.add_argument("model", help="converted model.pt or KIM portable model directory")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the report as JSON to FILE (without FILE: print JSON instead of the text report)")
    p.add_argument("--only", nargs="+", metavar="CHECK", help="run only these checks")
    p.add_argument("--memory-calls", type=int, default=500, help="calls of the memory check (default 500)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("info", parents=[common], help="describe a model file (original or converted)")
    p.add_argument("model", help="original model file, converted model.pt or portable model directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_adapter_options(p, "the model to describe")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("example", parents=[common],
                       help=f"build, convert and verify a small seeded model ({', '.join(examples)})")
    p.add_argument("--architecture", choices=examples, default=examples[0] if examples else None,
                   help=f"which kind of model to build (default {examples[0] if examples else 'none'}; "
                        "needs that architecture's package)")
    p.add_argument("--out", help="working directory (default ./kim-gnn-example-ARCHITECTURE); it receives the "
                                 "original model, the KIM portable model and verify-report.json")
    p.add_argument("--layers", type=_positive_int, default=3,
                   help="message-passing layers / interactions, at least 1 (default 3)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="model dtype")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_example)

    p = sub.add_parser("install-driver", parents=[common],
                       help=f"build and install kim-gnn's own KIM model driver ({contract.KIM_GNN_DRIVER_NAME})",
                       description=f"Build csrc/driver ({contract.KIM_GNN_DRIVER_NAME}, C++) with CMake against the "
                                   "KIM API (Debian libkim-api-dev) and the libtorch of the installed torch wheel, and "
                                   "install it into a KIM collection. It runs the portable models kim-gnn convert "
                                   f"writes; name it with --driver-name {contract.KIM_GNN_DRIVER_NAME}. Needs cmake, "
                                   "make and a C++ compiler; compiling takes 1-3 minutes.")
    p.add_argument("--collection", choices=("user", "system", "environment"), default="user",
                   help="KIM collection to install into (default user; environment: the directory in "
                        "KIM_API_MODEL_DRIVERS_DIR)")
    p.add_argument("--build-dir", metavar="DIR",
                   help="build here and keep it, so that reinstalling rebuilds only what changed "
                        "(default: a temporary directory)")
    p.add_argument("--export", metavar="DIR",
                   help="build nothing: write the driver as a complete KIM item directory DIR (sources, "
                        "CMakeLists.txt, kimspec.edn) that `kim-api-collections-management install "
                        "user|system|environment DIR` builds and installs as it is")
    p.add_argument("--metadata", metavar="FILE", help="with --export: YAML or JSON fields for its kimspec.edn "
                                                      "(as for convert --metadata)")
    p.add_argument("--force", action="store_true", help="with --export: replace an existing DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_install_driver)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except KimGnnError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"kim-gnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kim-gnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in kim-gnn, not the user's input
        if debug:
            import traceback

            traceback.print_exc()
        from .errors import first_line

        print(f"kim-gnn: internal error: {type(exc).__name__}: {first_line(exc)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
