"""The ``kim-gnn`` argument parser, one subcommand a command module, and
``main``: the exit codes and the one-line errors. ``docs/cli.md`` is held
equal to this parser by tests/core/test_readme.py."""

import argparse
import sys
from typing import List, Optional

from .. import contract
from .._version import __version__
from ..errors import KimGnnError
from .convert import cmd_convert
from .example import cmd_example
from .info import cmd_info
from .install_driver import cmd_install_driver
from .verify import cmd_check, cmd_verify


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_adapter_options(parser, verb: str) -> None:
    """One ``--NAME`` per conversion option some adapter takes (e.g. --head)."""
    from ..adapters import all_options

    for name, text in all_options().items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, help=f"{text} [{verb}]")


def build_parser() -> argparse.ArgumentParser:
    from ..adapters import registered_adapters

    adapters = registered_adapters()
    kinds = "; ".join(a.summary or a.name for a in adapters)
    from ..adapters import example_models

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
    from ..adapters import CHOICE_OPTIONS

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
    p.add_argument("--memory-calls", type=int, default=100, help="calls of the memory check (default 100)")
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
        from ..errors import first_line

        print(f"kim-gnn: internal error: {type(exc).__name__}: {first_line(exc)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 3
