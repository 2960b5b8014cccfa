"""Original vs unpruned staged vs pruned staged, with the geometric floor.

One command, both architectures, both dtypes, bulk Si 64 .. 4096 atoms: one
energy + forces call of each model on the same structure, in one process:

  original   the architecture's own periodic model call, forces only (NequIP
             built with ForceOutput, MACE with compute_stress=False); its
             neighbour list / input build is not timed
  unpruned   the staged model converted with prune=False (every layer on
             every particle of its staged graph: what the architectures' own
             LAMMPS paths compute on each rank), driver-style call
             (run_on_graphs: forward + backward + force folding)
  pruned     the default conversion (only the work that reaches a
             contributing atom), same call
  whole_last NequIP only: pruned, but with the whole last layer
             (scalar_only_last_layer=False), same call; whole_last / pruned
             is what the scalar-only last layer saves (it computes only the
             tensor-product paths, radial weights and outputs that feed the
             scalar readout, which the original computes in full)
  kernels    the pruned model converted with --kernels kim_gnn (kim-gnn's
             deterministic CSR kernels), same call; null where the op
             library is not built

The geometric floor is the work the pruned model must do relative to the
original's, counted from the graphs: ``floor_edges`` = sum over layers of the
edges into needed receivers (edge_index_k restricted to receivers in B_k)
over L times the original's periodic edges, ``floor_nodes`` = sum over layers
of |B_k| (needed receivers) over L times the atoms. A pruned/original timing
ratio near the floor means the pruned model spends its time where it must.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_pruning.py --threads 2      # full run
    .venv/bin/python benchmarks/bench_pruning.py --quick          # smoke run
    .venv/bin/python benchmarks/bench_pruning.py --arch mace --mace-config default ell3 --threads 2

``--mace-config ell3``: the MACE model with max_ell 3 and correlation 3
(otherwise as the default one), written to pruning_mace_ell3.json/.png.

Writes pruning_nequip.json/.png and pruning_mace.json/.png to --out and
prints one table per architecture.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import warnings

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore", category=UserWarning, module=r"(nequip|mace|e3nn)\b")
warnings.filterwarnings("ignore", category=UserWarning, message=r"The TorchScript type system doesn't support")

import torch  # noqa: E402

from _bench_common import (QUICK_REPLICAS, RESULTS_DIR, OtherCpuLoad, finish_atoms_plot, peak_rss_mib,  # noqa: E402
                           progress, si_supercell, timed)

from kim_gnn.executor import cell_volume, load_staged_model, run_on_graphs  # noqa: E402
from kim_gnn.graphs import build_staged_graphs  # noqa: E402
from kim_gnn.runtime import StagedRuntime  # noqa: E402
from kim_gnn.reference import default_dtype  # noqa: E402

DEFAULT_REPLICAS = (2, 4, 8)  # 64, 512, 4096 atoms
SIDES = ("original", "unpruned", "pruned")
#: Extra converted variants per architecture: (side, conversion options).
VARIANTS = {
    "nequip": (("pruned", {"prune": True}), ("unpruned", {"prune": False}),
               ("whole_last", {"prune": True, "scalar_only_last_layer": False})),
    "mace": (("pruned", {"prune": True}), ("unpruned", {"prune": False})),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", choices=("nequip", "mace"), default=["nequip", "mace"])
    parser.add_argument("--dtypes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"])
    parser.add_argument("--replicas", type=int, nargs="+", default=list(DEFAULT_REPLICAS),
                        help="supercell repeats n of the 8-atom cubic cell (8 n^3 atoms); default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model and size (median, min)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls first (TorchScript's profiling executor re-specialises on new shapes)")
    parser.add_argument("--large", type=int, default=2000,
                        help="above this many atoms, 1 timed call per model after the energy check (a NequIP call at 4096 "
                             "atoms takes tens of seconds); default %(default)s")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--mace-config", nargs="+", choices=sorted(MACE_CONFIGS), default=["default"],
                        help="MACE model(s): 'default' (max_ell 2) and/or 'ell3' (max_ell 3, correlation 3); "
                             "each writes its own pruning_mace*.json/.png (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 and 216 atoms, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.repeats = list(QUICK_REPLICAS), 1
    return args


# --- the two architectures: model settings, build, original call --------------

NEQUIP = {"num_layers": 3, "r_max": 4.0, "num_features": 32, "l_max": 2}
MACE = {"num_interactions": 2, "r_max": 5.0, "num_channels": 32, "hidden_l": 1, "max_ell": 2, "correlation": 3}
#: The MACE configurations --mace-config chooses from (hidden 32x0e+32x1o in both), and the suffix of
#: their output files (pruning_mace{suffix}.json/.png).
MACE_CONFIGS = {"default": (MACE, ""), "ell3": (dict(MACE, max_ell=3, correlation=3), "_ell3")}


def nequip_models(dtype: str, seed: int, tmp: str):
    """(original call factory, pruned, unpruned, settings) for NequIP."""
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.nequip.example import build_example_nequip
    from kim_gnn.nequip.reference import NequIPOriginal

    deployed = build_example_nequip(os.path.join(tmp, f"nequip-{dtype}.pth"), species=("Si",), model_dtype=dtype,
                                    seed=seed, forces_only=True, **NEQUIP)
    original = NequIPOriginal(deployed)

    def original_side(atoms):
        with default_dtype(original.default_dtype):
            data = original._inputs(atoms, atoms.get_chemical_symbols())

        def call():
            with default_dtype(original.default_dtype):
                out = original.module(dict(data))
            return float(out["total_energy"].detach().double().sum())

        return data["edge_index"].shape[1], call

    return original_side, _converted(convert_nequip, deployed, tmp, f"nequip-{dtype}", VARIANTS["nequip"]), 0


def mace_models(dtype: str, seed: int, tmp: str, settings: dict = MACE):
    from kim_gnn.mace import convert_mace
    from kim_gnn.mace.example import build_example_mace
    from kim_gnn.mace.reference import MACEOriginal

    model = build_example_mace(species=("Si",), model_dtype=dtype, seed=seed, **settings)
    original = MACEOriginal(model)

    def original_side(atoms):
        with default_dtype(original.dtype):
            batch = original._batch(atoms)

        def call():
            with default_dtype(original.dtype):
                out = original.model(batch, training=False, compute_force=True, compute_stress=False)
            return float(out["energy"].detach().double().sum())

        return batch["edge_index"].shape[1], call

    return original_side, _converted(convert_mace, model, tmp, f"mace-{dtype}", VARIANTS["mace"]), 1


def _converted(convert, source, tmp, name, variants):
    models = {}
    for side, options in variants:
        path = os.path.join(tmp, f"{name}-{side}.pt")
        convert(source, **options).save(path)
        models[side] = load_staged_model(path)
    if "whole_last" in models and models["pruned"][1].details.get("scalar_only_last_layer") != "true":
        progress("warning: the pruned NequIP model has no scalar-only last layer "
                 f"({models['pruned'][1].details.get('scalar_only_last_layer_reason')})")
    from kim_gnn import kernels

    if kernels.available():  # the kernels column: pruned + --kernels kim_gnn
        path = os.path.join(tmp, f"{name}-kernels.pt")
        convert(source, kernels="kim_gnn").save(path)
        models["kernels"] = load_staged_model(path)
    else:
        progress("the kim_gnn op library is not built: no kernels column")
    return models


ARCHS = {"nequip": (nequip_models, NEQUIP), "mace": (mace_models, MACE)}


# --- one size -----------------------------------------------------------------

def work_counts(graphs, receiver_row: int, n_atoms: int, n_edges_original: int) -> dict:
    """Needed sets and the edges into them, per layer, from the staged graphs."""
    edges = [torch.as_tensor(e) for e in graphs.edge_index]
    num_layers = len(edges)
    _, counts, pruned_edges, _ = StagedRuntime(num_layers, receiver_row).plan(edges, torch.as_tensor(graphs.contributions))
    needed_receivers = counts[:num_layers]  # layer using graph k needs B_k
    edges_into_needed = [int(e.shape[1]) for e in pruned_edges]
    return {
        "needed_sets": counts,  # |B_0| .. |B_L|
        "edges_staged": [int(e.shape[1]) for e in edges],
        "edges_into_needed": edges_into_needed,
        "floor_edges": sum(edges_into_needed) / (num_layers * n_edges_original),
        "floor_nodes": sum(needed_receivers) / (num_layers * n_atoms),
        # what the unpruned model does, on the same scale
        "unpruned_edges_ratio": sum(int(e.shape[1]) for e in edges) / (num_layers * n_edges_original),
    }


def bench_size(replicas, original_side, staged, receiver_row, args) -> dict:
    atoms = si_supercell(replicas, args.seed)
    volume = cell_volume(atoms)
    spec = staged["pruned"][1]
    graphs = build_staged_graphs(atoms, spec.species, spec.cutoff, spec.num_layers)
    n_edges_original, original_call = original_side(atoms)
    calls = {"original": original_call}
    sides = list(SIDES) + [side for side in staged if side not in SIDES]
    for side in sides[1:]:
        module = staged[side][0]
        calls[side] = (lambda m: (lambda: run_on_graphs(m, graphs, len(atoms), volume).energy))(module)
    energies = {side: call() for side, call in calls.items()}
    row = {
        "replicas": replicas,
        "n_atoms": len(atoms),
        "n_particles": graphs.num_particles,
        "n_edges_original": int(n_edges_original),
        **work_counts(graphs, receiver_row, len(atoms), int(n_edges_original)),
        "energy_diff_unpruned_eV": abs(energies["unpruned"] - energies["original"]),
        "energy_diff_pruned_eV": abs(energies["pruned"] - energies["original"]),
    }
    for side in sides[1:]:
        row[f"energy_diff_{side}_eV"] = abs(energies[side] - energies["original"])
        if row[f"energy_diff_{side}_eV"] > 1e-4 * max(1.0, abs(energies["original"])):
            progress(f"warning: {side} and original energies differ by {row[f'energy_diff_{side}_eV']:.3g} eV")
    # above --large the energy-check call above is the only warmup
    repeats, warmup = (1, 0) if len(atoms) > args.large else (args.repeats, args.warmup)
    row["repeats"], row["warmup"] = repeats, warmup
    with OtherCpuLoad() as load:
        for side in sides:
            progress(f"  {len(atoms)} atoms: {side}")
            row[side] = timed(calls[side], repeats, warmup)
    row.setdefault("kernels", None)  # null where the op library is not built
    t = {side: row[side]["median_s"] for side in sides if row[side]}
    row["ratio_unpruned"] = t["unpruned"] / t["original"]
    row["ratio_pruned"] = t["pruned"] / t["original"]
    row["speedup_pruning"] = t["unpruned"] / t["pruned"]
    if "whole_last" in t:
        row["ratio_whole_last"] = t["whole_last"] / t["original"]
        # what the scalar-only last layer saves: pruned with the whole last layer / pruned
        row["speedup_scalar_last"] = t["whole_last"] / t["pruned"]
    row["speedup_kernels"] = t["pruned"] / t["kernels"] if "kernels" in t else None
    row["peak_rss_mib"] = peak_rss_mib()
    row["other_processes_cpu_cores"] = load.cores
    return row


# --- output -------------------------------------------------------------------

def print_table(arch: str, runs: dict) -> None:
    whole = any("whole_last" in r for rows in runs.values() for r in rows)
    print(f"\n{arch}: median seconds per energy + forces call; ratios to the original; floor = edges into "
          "needed receivers / original edges (nodes in brackets)"
          + ("; whole-last = pruned with the whole last layer, wh/pr = what the scalar-only last layer saves"
             if whole else ""))
    extra = f" {'whole-last':>10}" if whole else ""
    extra_ratio = f" {'wh/pr':>6}" if whole else ""
    header = (f"{'dtype':>7} {'atoms':>6} | {'original':>9} {'unpruned':>9} {'pruned':>9}{extra} {'kernels':>7} |"
              f" {'unpr/orig':>9} {'pr/orig':>8} {'floor':>13} | {'unpr/pr':>7}{extra_ratio} {'others':>6}")
    print(header)
    print("-" * len(header))
    for dtype, rows in runs.items():
        for r in rows:
            others = "n/a" if r["other_processes_cpu_cores"] is None else f"{r['other_processes_cpu_cores']:.2f}"
            floor = f"{r['floor_edges']:.2f} ({r['floor_nodes']:.2f})"
            extra = f" {r['whole_last']['median_s']:>10.4f}" if whole else ""
            extra_ratio = f" {r['speedup_scalar_last']:>6.2f}" if whole else ""
            kernels = "-" if not r.get("kernels") else f"{r['kernels']['median_s']:.4f}"
            print(f"{dtype:>7} {r['n_atoms']:>6} | {r['original']['median_s']:>9.4f} {r['unpruned']['median_s']:>9.4f}"
                  f" {r['pruned']['median_s']:>9.4f}{extra} {kernels:>7} | {r['ratio_unpruned']:>9.2f}"
                  f" {r['ratio_pruned']:>8.2f} {floor:>13} | {r['speedup_pruning']:>7.2f}{extra_ratio} {others:>6}")


def write_plot(arch: str, runs: dict, meta: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for color, (dtype, rows) in zip(("C0", "C3"), runs.items()):
        atoms = [r["n_atoms"] for r in rows]
        ax.plot(atoms, [r["ratio_unpruned"] for r in rows], color=color, ls=":", marker="o", ms=3,
                label=f"unpruned / original ({dtype})")
        ax.plot(atoms, [r["ratio_pruned"] for r in rows], color=color, ls="-", marker="s", lw=2,
                label=f"pruned / original ({dtype})")
        if all("ratio_whole_last" in r for r in rows):
            ax.plot(atoms, [r["ratio_whole_last"] for r in rows], color=color, ls="-.", marker="^", ms=3,
                    label=f"pruned, whole last layer / original ({dtype})")
        ax.plot(atoms, [r["floor_edges"] for r in rows], color=color, ls="--", lw=1,
                label=f"geometric floor ({dtype})")
    ax.axhline(1.0, color="grey", lw=0.8)
    finish_atoms_plot(fig, ax, path, "time per energy + forces call / original's (median)",
                      f"{arch} {meta['model']}\ntorch {meta['torch_version']}, {meta['torch_threads']} threads, "
                      f"{meta['machine']}", title_size=8)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    runs_to_do = []
    for arch in args.arch:
        if arch == "mace":
            for name in args.mace_config:
                settings, suffix = MACE_CONFIGS[name]
                runs_to_do.append((arch, suffix, lambda d, s, t, settings=settings: mace_models(d, s, t, settings),
                                   settings))
        else:
            build, settings = ARCHS[arch]
            runs_to_do.append((arch, "", build, settings))
    for arch, suffix, build, settings in runs_to_do:
        meta = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "model": dict(settings, seed=args.seed),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "quick": args.quick,
        }
        runs = {}
        for dtype in args.dtypes:
            with tempfile.TemporaryDirectory(prefix="kim-gnn-bench-") as tmp:
                progress(f"{arch} {dtype}: building and converting {settings}")
                original_side, staged, receiver_row = build(dtype, args.seed, tmp)
                rows = []
                for replicas in args.replicas:
                    progress(f"{arch} {dtype}: {8 * replicas ** 3} atoms")
                    rows.append(bench_size(replicas, original_side, staged, receiver_row, args))
                runs[dtype] = rows
        json_path = os.path.join(args.out, f"pruning_{arch}{suffix}.json")
        with open(json_path, "w") as fh:
            json.dump({"meta": meta, "results": runs}, fh, indent=2)
        png_path = os.path.join(args.out, f"pruning_{arch}{suffix}.png")
        write_plot(arch, runs, meta, png_path)
        print_table(arch + (f" {settings}" if suffix else ""), runs)
        progress(f"wrote {json_path} and {png_path}")
        busy = sorted({r["n_atoms"] for rows in runs.values() for r in rows
                       if (r["other_processes_cpu_cores"] or 0.0) > 0.2})
        if busy:
            progress(f"warning: other processes used the CPUs while timing {busy} atoms; those timings are unreliable")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
