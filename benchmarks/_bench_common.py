"""What the ``bench_*_scaling.py`` scripts share: the command line, the Si
supercells, the timing loop, the "other processes" CPU check, and the
JSON / plot / table output.

Each script supplies only its model: its settings, how to build and convert
it, and how its original side is called on one structure (``original_side``
for ``bench_size``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch

from kim_gnn.executor import cell_volume, run_on_graphs
from kim_gnn.graphs import build_staged_graphs

SI_LATTICE = 5.43  # Angstrom, diamond conventional cell (8 atoms)
DEFAULT_REPLICAS = (2, 3, 4, 5, 6, 8)  # 64 .. 4096 atoms
QUICK_REPLICAS = (2, 3)  # 64, 216 atoms
TIMINGS = ("original_inputs", "original_model", "staged_graphs", "staged_model")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(description: str, add_model_args, dtype_help: str, argv=None,
               default_replicas=DEFAULT_REPLICAS):
    """The shared flags around the script's own model flags (``add_model_args(parser)``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--replicas", type=int, nargs="+", default=list(default_replicas),
                        help="supercell repeats n of the 8-atom cubic cell (8 n^3 atoms); default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size (median and min reported)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls per size and side first (TorchScript's profiling executor "
                             "re-specialises when input shapes change)")
    add_model_args(parser)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help=dtype_help)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 and 216 atoms, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.repeats = list(QUICK_REPLICAS), 1
    return args


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device=None) -> None:
    """Wait for a CUDA device's queued work (``device`` a torch.device or
    "cuda..."); nothing on the CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(call, repeats: int, warmup: int, device=None):
    """(median and min wall time of ``call()`` over ``repeats`` runs, the
    ``warmup`` untimed runs' results, the timed runs' results); on CUDA each
    run is timed to the end of its queued work."""
    warm = [call() for _ in range(warmup)]
    synchronize(device)
    seconds, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(call())
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds)}, warm, results


def timed(call, repeats: int, warmup: int, device=None):
    """Median and min wall time of ``call()`` over ``repeats`` runs, after ``warmup`` untimed ones."""
    return timed_calls(call, repeats, warmup, device)[0]


def timed_interleaved(calls: dict, repeats: int, warmup: int) -> dict:
    """Per name of ``calls`` (name -> call), the median and min wall time
    over ``repeats`` rounds in which every call runs once, in turn, after
    ``warmup`` such untimed rounds: a drift of the machine over the minutes
    a large cell takes then falls on every side alike, instead of on the
    side timed last."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "calls": len(s)} for name, s in seconds.items()}


def si_supercell(replicas: int, seed: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=SI_LATTICE, cubic=True) * ((replicas,) * 3)
    atoms.rattle(stdev=0.02, seed=seed)  # break the perfect-crystal symmetry
    return atoms


def peak_rss_mib() -> float:
    """Process-wide peak RSS so far (Linux reports KiB); sizes grow, so this tracks the largest one."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def busy_cpu_seconds():
    """CPU seconds all processes have used since boot (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class OtherCpuLoad:
    """Average number of cores other processes kept busy while the block ran.

    Torch's intra-op threads stall badly when another process takes a core,
    so a shared machine can make calls many times slower; this flags it.
    """

    def __enter__(self):
        self.start = (busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self.start
        busy_now = busy_cpu_seconds()
        self.cores = None
        if busy is not None and busy_now is not None:
            others = (busy_now - busy) - (own_cpu_seconds() - own)
            self.cores = max(others, 0.0) / (time.perf_counter() - wall)


def bench_size(replicas: int, original_side, staged, spec, args) -> dict:
    """One row: the four timings on the ``replicas``^3 supercell.

    ``original_side(atoms)`` returns the original model's three calls on
    that structure: ``inputs()`` -> data (timed as original_inputs),
    ``model(data)`` -> output (timed as original_model) and ``energy(output)``
    -> total energy in eV (not timed). ``data["edge_index"]`` is the
    original periodic graph.
    """
    atoms = si_supercell(replicas, args.seed)
    volume = cell_volume(atoms)
    original_inputs, original_call, original_energy = original_side(atoms)

    def staged_graphs():
        return build_staged_graphs(atoms, spec.species, spec.cutoff, spec.num_layers)

    data = original_inputs()
    graphs = staged_graphs()

    def original_model():
        return original_call(data)

    def staged_model():
        return run_on_graphs(staged, graphs, len(atoms), volume)

    # Same structure, same weights: the two energies must agree, else the timings mean nothing.
    energy_original = original_energy(original_model())
    energy_staged = staged_model().energy

    row = {
        "replicas": replicas,
        "n_atoms": len(atoms),
        "n_padding": graphs.num_particles - graphs.num_contributing,
        "n_edges_original": int(data["edge_index"].shape[1]),
        "n_edges_staged": [int(e.shape[1]) for e in graphs.edge_index],
        "energy_diff_eV": abs(energy_original - energy_staged),
    }
    if row["energy_diff_eV"] > 1e-4 * abs(energy_original):
        progress(f"warning: original and staged energies differ by {row['energy_diff_eV']:.3g} eV")
    with OtherCpuLoad() as other_load:
        for name, call in zip(TIMINGS, (original_inputs, original_model, staged_graphs, staged_model)):
            progress(f"  {len(atoms)} atoms: {name}")
            row[name] = timed(call, args.repeats, args.warmup)
    row["peak_rss_mib"] = peak_rss_mib()
    row["other_processes_cpu_cores"] = other_load.cores
    return row


def run_meta(args, model_settings: dict) -> dict:
    """Apply ``--threads``, create ``--out``; the run's metadata for the JSON and the plot."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "model": model_settings,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }


def bench_sizes(original_side, staged, spec, args) -> list:
    rows = []
    for replicas in args.replicas:
        progress(f"{8 * replicas ** 3} atoms ({replicas}^3 cells)")
        rows.append(bench_size(replicas, original_side, staged, spec, args))
    return rows


def total_s(row: dict, side: str, stat: str = "median_s") -> float:
    return row[f"{side}_inputs" if side == "original" else f"{side}_graphs"][stat] + row[f"{side}_model"][stat]


def print_table(rows) -> None:
    header = (f"{'atoms':>6} {'padding':>7} {'pad/atom':>8} {'edges orig':>10} {'edges staged (E0/../EL-1)':>26}"
              f" | {'orig in':>8} {'orig mod':>8} {'orig tot':>8} | {'stg in':>8} {'stg mod':>8} {'stg tot':>8}"
              f" | {'stg/orig':>8} {'RSS MiB':>8} {'others':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        staged_edges = "/".join(str(e) for e in r["n_edges_staged"])
        orig, stag = total_s(r, "original"), total_s(r, "staged")
        others = "n/a" if r["other_processes_cpu_cores"] is None else f"{r['other_processes_cpu_cores']:.2f}"
        print(f"{r['n_atoms']:>6} {r['n_padding']:>7} {r['n_padding'] / r['n_atoms']:>8.2f} {r['n_edges_original']:>10}"
              f" {staged_edges:>26}"
              f" | {r['original_inputs']['median_s']:>8.3f} {r['original_model']['median_s']:>8.3f} {orig:>8.3f}"
              f" | {r['staged_graphs']['median_s']:>8.3f} {r['staged_model']['median_s']:>8.3f} {stag:>8.3f}"
              f" | {stag / orig:>8.2f} {r['peak_rss_mib']:>8.0f} {others:>6}")
    print("times: median seconds per call; 'in' = input/graph build, 'mod' = model call incl. forces/stress;\n"
          "others: CPU cores other processes kept busy meanwhile (should be ~0)")


def finish_atoms_plot(fig, ax, path: str, ylabel: str, title: str, title_size: int = 9) -> None:
    """Log-log axes over the atom count, labels, grid, legend; saved to ``path`` and closed."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms (bulk Si supercell)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plot(rows, meta: dict, path: str, title: str) -> None:
    """Log-log time vs atoms; ``title`` names the model, a second line the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atoms = [r["n_atoms"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    styles = {
        "original_inputs": ("C0", ":", "original: neighbor list + inputs"),
        "original_model": ("C0", "--", "original: model call"),
        "staged_graphs": ("C3", ":", "staged: padding + staged graphs"),
        "staged_model": ("C3", "--", "staged: model call (fwd + bwd)"),
    }
    for name, (color, line, label) in styles.items():
        ax.plot(atoms, [r[name]["median_s"] for r in rows], color=color, linestyle=line, marker="o", ms=3, label=label)
    ax.plot(atoms, [total_s(r, "original") for r in rows], "C0-", marker="s", lw=2, label="original: total")
    ax.plot(atoms, [total_s(r, "staged") for r in rows], "C3-", marker="s", lw=2, label="staged: total")
    finish_atoms_plot(fig, ax, path, "wall time per call [s] (median)",
                      f"{title}\ntorch {meta['torch_version']}, {meta['torch_threads']} threads, {meta['machine']}")


def write_results(rows, meta: dict, out: str, name: str, title: str, plot=None, table=None) -> None:
    """``name``.json and ``name``.png into ``out`` (``plot``, default the
    scaling plot), the table to stdout (``table``, default the scaling
    table), warnings to stderr."""
    plot = plot or write_plot
    table = table or print_table
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, f"{name}.json")
    with open(json_path, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=2)
    png_path = os.path.join(out, f"{name}.png")
    plot(rows, meta, png_path, title)
    table(rows)
    progress(f"wrote {json_path} and {png_path}")
    busy = [r["n_atoms"] for r in rows if (r["other_processes_cpu_cores"] or 0.0) > 0.2]
    if busy:
        progress(f"warning: other processes used the CPUs while timing {busy} atoms; those timings are unreliable")
