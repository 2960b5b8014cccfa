"""The CPU aggregation of ``--kernels kim_gnn`` against aten at a model's real sizes.

For each graph of a staged model's pruned plan (the benchmark's silicon
cell, 512 and 4096 atoms), times in one process, interleaved, at 1 and 2
torch threads:

* ``gather``: forward + backward of gathering the senders' rows, aten
  ``x[senders]`` (its backward: ``index_put_`` with accumulate) on the aten
  plan's edges against ``kim_gnn::gather`` on the kernels plan's
  (receiver-sorted) edges;
* ``scatter``: forward + backward of the sum into the receivers, aten
  ``scatter_add_`` (backward: ``gather``) against ``kim_gnn::segment_sum``
  (backward: ``csr_expand``);
* ``plan``: ``StagedRuntime.plan`` with each aggregation (the kernels' sort
  of the edges by receiver and their routes).

Feature sizes are those a model's layers use (read off ``torch.profiler``
with ``record_shapes`` on one call of the converted model):

* ``nequip``: NequIP 0.6 as in ``bench_pruning.py`` (3 layers, r_max 4,
  32 features, l_max 2): per graph k (layer L-1-k) gather / scatter features
  k=2: 32 (no backward) / 288, k=1: 288 / 1632, k=0: 288 / 96;
* ``allegro``: Allegro as in ``bench_pruning.py`` (2 layers, r_max 5, one
  graph): no gather, scatters of 16x9 features (one per layer) and of 1.

Run::

    .venv/bin/python benchmarks/bench_kernels_cpu.py [--replicas 4 8] [--repeats 5] [--threads 1 2]

Writes ``kernels_cpu.json`` and ``kernels_cpu.png`` (kernels / aten over
atoms) to ``--out`` (benchmarks/results by default):
per side, op, graph and thread count the min and median wall seconds and the
min CPU seconds of the process (all threads: a thread that waits for
another at the end of a parallel loop spins and counts); ``ratio`` = kernels
/ aten of the min wall times, ``cpu_ratio`` of the CPU times (above 1: the
kernels are slower). Needs the op library
(``kim_gnn/lib``; ``KIM_GNN_OPS_LIBRARY`` picks another build).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import torch

from _bench_common import RESULTS_DIR, finish_atoms_plot, progress, si_supercell

from kim_gnn import kernels
from kim_gnn.graphs import build_staged_graphs
from kim_gnn.runtime import StagedRuntime

#: (cutoff, graphs, {graph k: (gather features or 0, gather backward, [scatter features])})
NEQUIP = (4.0, 3, {2: (32, False, [288]), 1: (288, True, [1632]), 0: (288, True, [96])})
ALLEGRO = (5.0, 1, {0: (0, False, [144, 144, 1])})
ARCHS = {"nequip": NEQUIP, "allegro": ALLEGRO}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--replicas", type=int, nargs="+", default=[4, 8], help="cubic Si cells per side (4: 512 atoms)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    return parser.parse_args(argv)


def _time(call):
    """(wall s, CPU s of the process: every thread, spinning ones included)."""
    start, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - start, time.process_time() - cpu


def _ab(calls: dict, repeats: int) -> dict:
    """Interleaved timings (one warm-up each): {side: {min_s, median_s,
    cpu_min_s}}, ratio = kernels / aten of the min wall times."""
    for call in calls.values():
        call()
    seconds = {side: [] for side in calls}
    for _ in range(repeats):
        for side, call in calls.items():
            seconds[side].append(_time(call))
    out = {}
    for side, times in seconds.items():
        wall = sorted(t[0] for t in times)
        out[side] = {"min_s": wall[0], "median_s": wall[len(wall) // 2], "cpu_min_s": min(t[1] for t in times)}
    out["ratio"] = out["kernels"]["min_s"] / out["aten"]["min_s"]
    out["cpu_ratio"] = out["kernels"]["cpu_min_s"] / out["aten"]["cpu_min_s"]
    return out


def _gather_calls(x_rows: int, features: int, backward: bool, plans: dict, k: int, dtype, generator) -> dict:
    x = torch.randn(x_rows, features, dtype=dtype, generator=generator).requires_grad_(backward)
    grad = torch.randn(plans["aten"].edges[k].shape[1], features, dtype=dtype, generator=generator)
    aten_senders = plans["aten"].edges[k][1]
    kern_senders, route = plans["kernels"].edges[k][1], plans["kernels"].routes[k]

    def run(out):
        if backward:
            out.backward(grad)
            x.grad = None

    return {"aten": lambda: run(x[aten_senders]),
            "kernels": lambda: run(torch.ops.kim_gnn.gather(x, kern_senders, route[1], route[2]))}


def _scatter_calls(num_out: int, features: int, plans: dict, k: int, dtype, generator) -> dict:
    edges = plans["aten"].edges[k].shape[1]
    values = torch.randn(edges, features, dtype=dtype, generator=generator).requires_grad_(True)
    grad = torch.randn(num_out, features, dtype=dtype, generator=generator)
    receivers = plans["aten"].edges[k][0]
    index = receivers.view(-1, 1).expand_as(values)
    route = plans["kernels"].routes[k]

    def aten():
        out = torch.zeros(num_out, features, dtype=dtype).scatter_add_(0, index, values)
        out.backward(grad)
        values.grad = None

    def kern():
        torch.ops.kim_gnn.segment_sum(values, route[0]).backward(grad)
        values.grad = None

    return {"aten": aten, "kernels": kern}


def bench(arch: str, replicas: int, dtype_name: str, threads: int, args) -> dict:
    cutoff, layers, sizes = ARCHS[arch]
    atoms = si_supercell(replicas, args.seed)
    graphs = build_staged_graphs(atoms, ("Si",), cutoff, layers)
    edge_index = [torch.as_tensor(g) for g in graphs.edge_index]
    contributions = torch.as_tensor(graphs.contributions)
    runtimes = {"aten": StagedRuntime(layers, 0, True, "aten"), "kernels": StagedRuntime(layers, 0, True, "kim_gnn")}
    plans = {side: rt.plan(edge_index, contributions) for side, rt in runtimes.items()}
    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(args.seed)
    torch.set_num_threads(threads)
    row = {"arch": arch, "n_atoms": len(atoms), "dtype": dtype_name, "threads": threads,
           "counts": plans["aten"].counts, "ops": {}}
    row["ops"]["plan"] = _ab({side: (lambda rt=rt: rt.plan(edge_index, contributions))
                              for side, rt in runtimes.items()}, args.repeats)
    for k, (gather_features, gather_backward, scatters) in sorted(sizes.items(), reverse=True):
        counts = plans["aten"].counts
        edges = plans["aten"].edges[k].shape[1]
        if gather_features:
            name = f"gather k={k} {edges}x{gather_features}" + ("" if gather_backward else " (forward)")
            row["ops"][name] = _ab(_gather_calls(counts[k + 1], gather_features, gather_backward, plans, k, dtype,
                                                 generator), args.repeats)
        for i, features in enumerate(scatters):
            name = f"scatter k={k} {edges}x{features}" + (f" ({i + 1})" if scatters.count(features) > 1 else "")
            row["ops"][name] = _ab(_scatter_calls(counts[k], features, plans, k, dtype, generator), args.repeats)
    total = {side: sum(op[side]["min_s"] for op in row["ops"].values()) for side in ("aten", "kernels")}
    row["total_min_s"] = total
    row["total_ratio"] = total["kernels"] / total["aten"]
    cpu = {side: sum(op[side]["cpu_min_s"] for op in row["ops"].values()) for side in ("aten", "kernels")}
    row["total_cpu_min_s"] = cpu
    row["total_cpu_ratio"] = cpu["kernels"] / cpu["aten"]
    return row


def main(argv=None) -> None:
    args = parse_args(argv)
    if not kernels.available():
        raise SystemExit("bench_kernels_cpu.py: the kim_gnn op library is not built (python csrc/build_ops.py)")
    kernels.load_library()
    rows = []
    for arch in args.arch:
        for replicas in args.replicas:
            for dtype in args.dtype:
                for threads in args.threads:
                    row = bench(arch, replicas, dtype, threads, args)
                    progress(f"{arch} {row['n_atoms']} atoms {dtype} {threads} threads: kernels/aten "
                             f"{row['total_ratio']:.3f}, CPU {row['total_cpu_ratio']:.3f} ("
                             + ", ".join(f"{name} {op['ratio']:.2f}/{op['cpu_ratio']:.2f}"
                                                                       for name, op in row["ops"].items()) + ")")
                    rows.append(row)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "library": kernels.library_path(), "repeats": args.repeats, "argv": sys.argv[1:]}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "kernels_cpu.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "runs": rows}, f, indent=1)
    progress(f"wrote {path}")
    write_plot(rows, meta, os.path.join(args.out, "kernels_cpu.png"))
    progress(f"wrote {os.path.join(args.out, 'kernels_cpu.png')}")


def write_plot(rows, meta: dict, path: str) -> None:
    """kernels / aten (min wall time of all the ops of a call) over atoms,
    one line per model, dtype and thread count; 1 = even."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    lines = sorted({(r["arch"], r["dtype"], r["threads"]) for r in rows})
    for arch, dtype, threads in lines:
        mine = sorted((r for r in rows if (r["arch"], r["dtype"], r["threads"]) == (arch, dtype, threads)),
                      key=lambda r: r["n_atoms"])
        ax.plot([r["n_atoms"] for r in mine], [r["total_ratio"] for r in mine], marker="o",
                ls="-" if dtype == "float64" else "--", label=f"{arch} {dtype} {threads} thread(s)")
    ax.axhline(1.0, color="grey", lw=1)
    finish_atoms_plot(fig, ax, path, "kernels / aten (gathers, scatters, plan)",
                      f"CPU aggregation, kernels vs aten\n{meta['date']}, torch {meta['torch']}, {meta['cpus']} CPUs")


if __name__ == "__main__":
    main()
