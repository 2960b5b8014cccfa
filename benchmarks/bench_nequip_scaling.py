"""Time the original periodic NequIP model against its staged KIM conversion.

Both run in one process on the same bulk Si supercells (64 atoms and up), so
the numbers are directly comparable. Each side is split into an input build
and a model call:

  original: ASE periodic neighbor list + input dict   | module(data): forward
            (what nequip's AtomicData.from_ase builds) | with its own autograd
                                                       | forces and stress
  staged:   padding atoms out to L * r_max + the L     | run_on_graphs: the
            staged edge lists (what the KIM driver     | driver-style call,
            builds)                                    | forward + backward

Run by hand (not a test), e.g.::

    .venv/bin/python benchmarks/bench_nequip_scaling.py            # full run
    .venv/bin/python benchmarks/bench_nequip_scaling.py --quick    # smoke run

Writes nequip_scaling.json and nequip_scaling.png to --out.
"""

from __future__ import annotations

import os
import tempfile
import warnings

# e3nn 0.4.4 pickles need the pre-2.6 torch.load default
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
# nequip/e3nn import-time chatter about torch versions; keeps stderr to progress lines
warnings.filterwarnings("ignore", category=UserWarning, module=r"(nequip|e3nn)\b")

from _bench_common import bench_sizes, parse_args as parse_common_args, progress, run_meta, write_results

from kim_gnn.executor import load_staged_model
from kim_gnn.nequip import convert_nequip
from kim_gnn.nequip.v06.example import build_example_nequip
from kim_gnn.nequip.v06.reference import NequIPOriginal
from kim_gnn.reference import default_dtype


def parse_args(argv=None):
    def model_args(parser):
        parser.add_argument("--num-layers", type=int, default=3)
        parser.add_argument("--num-features", type=int, default=16)
        parser.add_argument("--l-max", type=int, default=1)
        parser.add_argument("--r-max", type=float, default=4.0)

    return parse_common_args(__doc__.split("\n\n")[0], model_args, "NequIP model_dtype", argv)


def original_side(original: NequIPOriginal):
    """The original model's calls on one structure, as ``bench_size`` takes them."""

    def calls(atoms):
        symbols = atoms.get_chemical_symbols()

        def inputs():
            with default_dtype(original.default_dtype):
                return original._inputs(atoms, symbols)

        def model(data):
            with default_dtype(original.default_dtype):
                return original.module(dict(data))  # the module may write into its input dict

        def energy(out):
            return float(out["total_energy"].detach().sum())

        return inputs, model, energy

    return calls


def main(argv=None) -> None:
    args = parse_args(argv)
    model_settings = {"num_layers": args.num_layers, "num_features": args.num_features, "l_max": args.l_max,
                      "r_max": args.r_max, "model_dtype": args.dtype, "seed": args.seed}
    meta = run_meta(args, model_settings)

    with tempfile.TemporaryDirectory(prefix="kim-gnn-bench-") as tmp:
        progress(f"building a random NequIP model {model_settings}")
        deployed = build_example_nequip(os.path.join(tmp, "deployed.pth"), species=("Si",),
                                        num_layers=args.num_layers, l_max=args.l_max, r_max=args.r_max,
                                        num_features=args.num_features, model_dtype=args.dtype, seed=args.seed)
        staged_file = os.path.join(tmp, "staged.pt")
        convert_nequip(deployed).save(staged_file)
        original = NequIPOriginal(deployed)
        staged, spec = load_staged_model(staged_file)

    rows = bench_sizes(original_side(original), staged, spec, args)
    write_results(rows, meta, args.out, "nequip_scaling",
                  f"NequIP original vs staged: L={args.num_layers}, r_max={args.r_max} Å, "
                  f"features={args.num_features}, l_max={args.l_max}, {args.dtype}")


if __name__ == "__main__":
    main()
