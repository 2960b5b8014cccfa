"""Original vs unpruned staged vs pruned staged, with the geometric floor.

One command, both architectures, both dtypes, bulk Si 64 .. 4096 atoms: one
energy + forces call of each model on the same structure, in one process.
In the legacy environment (.venv) the architectures are NequIP 0.6 and MACE;
in the modern one (.venv-modern) the nequip >= 0.7 NequIP GNN
(``nequip-modern``) and Allegro (``allegro``), whose original is the compiled
TorchScript ``.nequip.pth`` (what nequip-compile writes) called with nequip's
own periodic input (``NequIPModernOriginal``: ForceStressOutput, so it also
computes the stress), and whose converted models come from that file:

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
    .venv-modern/bin/python benchmarks/bench_pruning.py --arch nequip-modern allegro --threads 2

``--mace-config ell3``: the MACE model with max_ell 3 and correlation 3
(otherwise as the default one), written to pruning_mace_ell3.json/.png.

Writes pruning_ARCH.json/.png (nequip, mace, nequip-modern, allegro) to --out
and prints one table per architecture.
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
                           progress, si_supercell, timed, timed_interleaved)

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
    "nequip-modern": (("pruned", {"prune": True}), ("unpruned", {"prune": False})),
    "allegro": (("pruned", {"prune": True}), ("unpruned", {"prune": False})),
}
LEGACY_ARCHS, MODERN_ARCHS = ("nequip", "mace"), ("nequip-modern", "allegro")


def _default_archs():
    """The architectures of this environment: nequip >= 0.7 and Allegro in
    the modern one, NequIP 0.6 and MACE in the legacy one."""
    from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

    return list(MODERN_ARCHS if is_modern_version(nequip_version()) else LEGACY_ARCHS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", choices=LEGACY_ARCHS + MODERN_ARCHS, default=None,
                        help="default: nequip mace in the legacy environment, nequip-modern allegro in the modern one")
    parser.add_argument("--dtypes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"])
    parser.add_argument("--replicas", type=int, nargs="+", default=list(DEFAULT_REPLICAS),
                        help="supercell repeats n of the 8-atom cubic cell (8 n^3 atoms); default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed rounds per size, each calling every model once in turn (median, min)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls first (TorchScript's profiling executor re-specialises on new shapes)")
    parser.add_argument("--large", type=int, default=2000,
                        help="above this many atoms, --large-repeats timed rounds and no warm-up beyond the energy "
                             "check (a NequIP call at 4096 atoms takes tens of seconds); default %(default)s")
    parser.add_argument("--large-repeats", type=int, default=2,
                        help="timed rounds above --large atoms (each round calls every side once); default %(default)s")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--mace-config", nargs="+", choices=sorted(MACE_CONFIGS), default=["default"],
                        help="MACE model(s): 'default' (max_ell 2) and/or 'ell3' (max_ell 3, correlation 3); "
                             "each writes its own pruning_mace*.json/.png (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 and 216 atoms, 1 repeat")
    parser.add_argument("--per-layer", action="store_true",
                        help="nequip-modern: also time each layer (forward + backward of its output sum) of the "
                             "pruned model and of the original, to show per layer where the time goes")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.repeats = list(QUICK_REPLICAS), 1
    if args.arch is None:
        args.arch = _default_archs()
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
    from kim_gnn.nequip.v06.example import build_example_nequip
    from kim_gnn.nequip.v06.reference import NequIPOriginal

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


#: nequip >= 0.7 (0.19) NequIP GNN and Allegro (nequip-allegro), one species
NEQUIP_MODERN = {"num_layers": 3, "r_max": 4.0, "num_features": 32, "l_max": 2}
ALLEGRO = {"num_layers": 2, "r_max": 5.0, "num_features": 32, "l_max": 2}


def modern_models(architecture: str, settings: dict, dtype: str, seed: int, tmp: str):
    """nequip >= 0.7: the original is the compiled .nequip.pth on nequip's own
    periodic input; the converted models come from that file."""
    from kim_gnn.nequip.modern import convert_nequip_modern, load
    from kim_gnn.nequip.modern.example import build_model, save_compiled
    from kim_gnn.nequip.modern.reference import NequIPModernOriginal

    model = build_model(species=("Si",), architecture=architecture, model_dtype=dtype, seed=seed, **settings)
    compiled = save_compiled(model, os.path.join(tmp, f"{architecture}-{dtype}.nequip.pth"))
    original = NequIPModernOriginal(compiled)

    def original_side(atoms):
        with load.restore_torch_state():
            torch.set_default_dtype(torch.float64)  # nequip's input in its global dtype, as evaluate() builds it
            data = original._data(atoms)

        def call():
            with load.restore_torch_state():
                torch.set_default_dtype(torch.float64)  # as nequip's own tools run
                out = original.model(dict(data))
            return float(out["total_energy"].detach().double().sum())

        return data["edge_index"].shape[1], call

    name = "nequip-modern" if architecture == "nequip" else architecture
    models = _converted(convert_nequip_modern, compiled, tmp, f"{name}-{dtype}", VARIANTS[name])
    if architecture == "nequip":  # for --per-layer
        original_side.original = original
        original_side.pruned_path = os.path.join(tmp, f"{name}-{dtype}-pruned.pt")
    return original_side, models, 0


ARCHS = {
    "nequip": (nequip_models, NEQUIP),
    "mace": (mace_models, MACE),
    "nequip-modern": (lambda *a: modern_models("nequip", NEQUIP_MODERN, *a), NEQUIP_MODERN),
    "allegro": (lambda *a: modern_models("allegro", ALLEGRO, *a), ALLEGRO),
}


# --- nequip >= 0.7: per layer, where the time goes -------------------------------

def _grad_inputs(data: dict, keys) -> dict:
    """A copy of ``data`` whose float entries ``keys`` are fresh leaves that require grad."""
    out = dict(data)
    for key in keys:
        if key in out:
            out[key] = out[key].detach().requires_grad_(True)
    return out


def _backward(out: torch.Tensor, data: dict, keys) -> None:
    inputs = [data[k] for k in keys if k in data and data[k].requires_grad]
    torch.autograd.grad(out.sum(), inputs, allow_unused=True)


def modern_per_layer(original, pruned_path: str, atoms, graphs, repeats: int, warmup: int) -> list:
    """Forward + backward (of the output's sum, to the layer's float inputs)
    of each part, timed alone: the original's edge modules (once for every
    layer) and each ConvNetLayer on the periodic graph; the pruned model's
    plan and node modules, and each layer with its edge modules (which it
    runs per graph) on the plan's particles and edges. One dict per part:
    part, seconds (median), edges."""
    from kim_gnn.executor import load_unfrozen
    from kim_gnn.nequip.modern import load
    from kim_gnn.nequip.modern.network import _unwrap

    rows = []
    with load.restore_torch_state():
        torch.set_default_dtype(torch.float64)
        data = dict(original._data(atoms))
        children = list(_unwrap(original.model).named_children())
        layer_at = [i for i, (_, m) in enumerate(children) if getattr(m, "original_name", "") == "ConvNetLayer"]
        before = children[: layer_at[0]]
        pos_keys = ("pos",)

        def edges_call():
            d = _grad_inputs(data, pos_keys)
            for _, m in before:
                d = m(d)
            _backward(d["edge_embedding"], d, pos_keys)

        rows.append({"part": "original: node + edge modules", "edges": int(data["edge_index"].shape[1]),
                     **timed(edges_call, repeats, warmup)})
        for _, m in before:
            data = m(data)
        layer_keys = ("node_features", "edge_embedding", "edge_attrs")
        for i in layer_at:
            name, layer = children[i]

            def layer_call(layer=layer, d0=data):
                d = _grad_inputs(d0, layer_keys)
                _backward(layer(d)["node_features"], d, layer_keys)

            rows.append({"part": f"original: {name}", "edges": int(data["edge_index"].shape[1]),
                         **timed(layer_call, repeats, warmup)})
            data = layer(_grad_inputs(data, ()))
            data = {k: v.detach() for k, v in data.items()}

    staged = load_unfrozen(pruned_path)[0].staged
    runtime = staged.runtime
    edges = [torch.as_tensor(e, dtype=torch.int64) for e in graphs.edge_index]
    contributions = torch.as_tensor(graphs.contributions, dtype=torch.int64)
    species = torch.as_tensor(graphs.species, dtype=torch.int64)
    coordinates = torch.as_tensor(graphs.positions, dtype=torch.float64)
    node_modules = [m for _, m in staged.node_modules.named_children()]
    edge_modules = [m for _, m in staged.edge_modules.named_children()]
    layers = [m for _, m in staged.layers.named_children()]

    def front():
        plan = runtime.plan(edges, contributions)
        nodes = {"pos": runtime.needed(coordinates, plan),
                 "atom_types": staged.type_of_species.index_select(0, runtime.needed(species, plan))}
        for m in node_modules:
            nodes = m(nodes)
        return plan, nodes

    rows.append({"part": "pruned: plan + node modules", "edges": sum(int(e.shape[1]) for e in edges),
                 **timed(front, repeats, warmup)})
    plan, nodes = front()
    for i, layer in enumerate(layers):
        k = len(layers) - 1 - i
        num_in, num_out = plan.counts[k + 1], plan.counts[k]

        def layer_call(layer=layer, k=k, num_in=num_in, num_out=num_out, nodes=nodes):
            d = _grad_inputs({key: v[:num_in] for key, v in nodes.items()}, ("pos", "node_features"))
            d["edge_index"] = plan.edges[k]
            for m in edge_modules:
                d = m(d)
            out = layer(d, num_out, plan.routes[k])
            _backward(out, d, ("pos", "node_features"))
            return out

        rows.append({"part": f"pruned: layer {i} + its edge modules", "edges": int(plan.edges[k].shape[1]),
                     "receivers": num_out, "senders": num_in, **timed(layer_call, repeats, warmup)})
        nodes = dict(nodes)
        nodes["node_features"] = layer_call().detach()
    return rows


def print_per_layer(arch: str, runs: dict) -> None:
    for dtype, rows in runs.items():
        for r in rows:
            if not r.get("per_layer"):
                continue
            print(f"\n{arch} {dtype} {r['n_atoms']} atoms, per part (forward + backward, median s; edges it uses):")
            for part in r["per_layer"]:
                print(f"  {part['part']:<40} {part['median_s']:>9.4f} s  {part['edges']:>8} edges")


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
    repeats, warmup = (args.large_repeats, 0) if len(atoms) > args.large else (args.repeats, args.warmup)
    row["repeats"], row["warmup"] = repeats, warmup
    progress(f"  {len(atoms)} atoms: {warmup} warm-up + {repeats} timed rounds of {' '.join(sides)}")
    with OtherCpuLoad() as load:
        row.update(timed_interleaved({side: calls[side] for side in sides}, repeats, warmup))
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
    if args.per_layer and hasattr(original_side, "original"):
        progress(f"  {len(atoms)} atoms: per layer")
        row["per_layer"] = modern_per_layer(original_side.original, original_side.pruned_path, atoms, graphs,
                                            repeats, warmup)
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
            "large_repeats": args.large_repeats,
            "large": args.large,
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
        print_per_layer(arch, runs)
        progress(f"wrote {json_path} and {png_path}")
        busy = sorted({r["n_atoms"] for rows in runs.values() for r in rows
                       if (r["other_processes_cpu_cores"] or 0.0) > 0.2})
        if busy:
            progress(f"warning: other processes used the CPUs while timing {busy} atoms; those timings are unreliable")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
