"""Time the original periodic MACE model against its staged KIM conversion.

Both run in one process on the same bulk Si supercells (64 atoms and up), so
the numbers are directly comparable. Each side is split into an input build
and a model call:

  original: mace's own pipeline: periodic neighbour | model(batch): forward
            list + AtomicData + batching            | with its own autograd
            (MACEOriginal._batch)                    | forces and stress
  staged:   padding atoms out to L * r_max + the L  | run_on_graphs: the
            staged edge lists (what the KIM driver  | driver-style call,
            builds)                                 | forward + backward

Run by hand (not a test), e.g.::

    .venv/bin/python benchmarks/bench_mace_scaling.py            # full run
    .venv/bin/python benchmarks/bench_mace_scaling.py --quick    # smoke run

Writes mace_scaling.json and mace_scaling.png to --out.
"""

from __future__ import annotations

import os
import tempfile
import warnings

# e3nn 0.4.4 pickles need the pre-2.6 torch.load default
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
# mace/e3nn import-time chatter about torch versions; keeps stderr to progress lines
warnings.filterwarnings("ignore", category=UserWarning, module=r"(mace|e3nn)\b")
# TorchScript's notice while convert_mace scripts the staged model (raised from the stdlib's ast module)
warnings.filterwarnings("ignore", category=UserWarning, message=r"The TorchScript type system doesn't support")

from _bench_common import bench_sizes, parse_args as parse_common_args, progress, run_meta, write_results

from kim_gnn.executor import load_staged_model
from kim_gnn.mace import convert_mace
from kim_gnn.mace.example import build_example_mace
from kim_gnn.mace.reference import MACEOriginal
from kim_gnn.reference import default_dtype


def parse_args(argv=None):
    def model_args(parser):
        parser.add_argument("--layers", type=int, default=2, help="num_interactions")
        parser.add_argument("--r-max", type=float, default=5.0)
        parser.add_argument("--channels", type=int, default=32, help="num_channels of the hidden irreps")
        parser.add_argument("--max-ell", type=int, default=2)
        parser.add_argument("--correlation", type=int, default=3)

    return parse_common_args(__doc__.split("\n\n")[0], model_args, "MACE model_dtype", argv)


def original_side(original: MACEOriginal):
    """The original model's calls on one structure, as ``bench_size`` takes
    them: what ``MACEOriginal.evaluate`` does, split into batch and model."""

    def calls(atoms):
        def inputs():
            with default_dtype(original.dtype):
                return original._batch(atoms)

        def model(data):
            with default_dtype(original.dtype):
                return original.model(data, training=False, compute_force=True, compute_stress=True)

        def energy(out):
            return float(out["energy"].detach().double().sum())

        return inputs, model, energy

    return calls


def main(argv=None) -> None:
    args = parse_args(argv)
    model_settings = {"num_interactions": args.layers, "r_max": args.r_max, "num_channels": args.channels,
                      "max_ell": args.max_ell, "correlation": args.correlation, "model_dtype": args.dtype,
                      "seed": args.seed}
    meta = run_meta(args, model_settings)

    progress(f"building a random MACE model {model_settings}")
    model = build_example_mace(species=("Si",), num_interactions=args.layers, max_ell=args.max_ell,
                               correlation=args.correlation, r_max=args.r_max, num_channels=args.channels,
                               model_dtype=args.dtype, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="kim-gnn-bench-") as tmp:
        staged_file = os.path.join(tmp, "model.pt")
        convert_mace(model).save(staged_file)
        staged, spec = load_staged_model(staged_file)
    original = MACEOriginal(model)

    rows = bench_sizes(original_side(original), staged, spec, args)
    write_results(rows, meta, args.out, "mace_scaling",
                  f"MACE original vs staged: L={args.layers}, r_max={args.r_max} Å, channels={args.channels}, "
                  f"max_ell={args.max_ell}, correlation={args.correlation}, {args.dtype}")


if __name__ == "__main__":
    main()
