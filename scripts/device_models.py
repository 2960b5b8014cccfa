"""Write the converted models a GPU machine checks (scripts/device_check.sh)
into one folder, for the architectures this environment has.

A GPU machine here has torch but none of the architecture packages, and a
converted model needs none of them: so the models are converted where the
packages are (the legacy environment for NequIP 0.6 and MACE, the modern one
for nequip >= 0.7 NequIP GNN and Allegro) and carried. They are the
benchmark's models (benchmarks/bench_pruning.py: NequIP 3 layers r_max 4,
32 features, l_max 2; MACE 2 interactions r_max 5; nequip >= 0.7 NequIP GNN
as NequIP; Allegro 2 layers r_max 5), seeded, pruned, in float64 with aten and
with the kim_gnn kernels (``NAME-kernels.pt``), and in float32 with the
kernels. tests/device_models.py reads the folder (``KIM_GNN_DEVICE_MODELS``).

    .venv/bin/python scripts/device_models.py --out .devicedeps/models
    .venv-modern/bin/python scripts/device_models.py --out .devicedeps/models
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))


def _variants(name, dtype):
    if dtype == "float64":
        return [(name + "-float64", None), (name + "-float64-kernels", "kim_gnn")]
    return [(name + "-float32-kernels", "kim_gnn")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    import importlib.util

    import bench_pruning as bench
    from kim_gnn import convert

    builders = {}
    if importlib.util.find_spec("mace") and importlib.util.find_spec("nequip"):
        import nequip

        if nequip.__version__.startswith("0.6"):
            from kim_gnn.nequip.v06.example import build_example_nequip
            from kim_gnn.mace.example import build_example_mace

            builders["nequip"] = lambda dtype, tmp: build_example_nequip(
                os.path.join(tmp, f"nequip-{dtype}.pth"), species=("Si",), model_dtype=dtype, seed=args.seed,
                forces_only=True, **bench.NEQUIP)
            builders["mace"] = lambda dtype, tmp: build_example_mace(
                species=("Si",), model_dtype=dtype, seed=args.seed, **bench.MACE)
    elif importlib.util.find_spec("nequip"):
        from kim_gnn.nequip.modern.example import build_model, save_compiled

        def modern(architecture, settings):
            def build(dtype, tmp):
                model = build_model(species=("Si",), architecture=architecture, model_dtype=dtype, seed=args.seed,
                                    **settings)
                return save_compiled(model, os.path.join(tmp, f"{architecture}-{dtype}.nequip.pth"))
            return build

        builders["nequip_modern"] = modern("nequip", bench.NEQUIP_MODERN)
        builders["allegro"] = modern("allegro", bench.ALLEGRO)
    if not builders:
        sys.exit("device_models.py: neither the legacy (nequip 0.6, mace) nor the modern (nequip >= 0.7) "
                 "architectures are installed in this environment")

    with tempfile.TemporaryDirectory() as tmp:
        for name, build in builders.items():
            for dtype in ("float64", "float32"):
                source = build(dtype, tmp)
                for file_name, kernels in _variants(name, dtype):
                    path = os.path.join(args.out, file_name + ".pt")
                    convert(source, kernels=kernels).save(path)
                    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
