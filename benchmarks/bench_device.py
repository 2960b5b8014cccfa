"""Converted models on a CUDA device against the CPU: one driver-style call
(forward, backward, force folding: ``kim_gnn.executor.run_on_graphs``) per
model, dtype, aggregation and bulk Si supercell, side by side in one run.

The models are the converted ``*.pt`` files of ``--models`` (default
``$KIM_GNN_DEVICE_MODELS``: scripts/device_models.py writes the benchmark's
NequIP 0.6, MACE, nequip >= 0.7 NequIP GNN and Allegro models, float64 with
aten and with the kim_gnn kernels, float32 with the kernels), plus the toy
plug-in. Each size is timed on CUDA (synchronised; median and min of
``--repeats`` calls after ``--warmup``) and, up to ``--cpu-max-atoms``, on
the CPU with ``--threads`` threads; the staged graphs are built once per size
and not timed. Every row also records whether the timed calls gave the same bits
(energy and forces), whether the warm-up calls did too (TorchScript's
profiling executor optimises, and on a GPU fuses, only from the third call
on), and on CUDA the peak memory.

    python benchmarks/bench_device.py --models .devicedeps/models --threads 16

Writes device.json and device.png to --out and prints a table. Run by
scripts/device_check.sh on a GPU machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from _bench_common import (RESULTS_DIR, finish_atoms_plot, progress, run_meta, si_supercell, timed_calls,  # noqa: E402
                           write_results)

from kim_gnn.executor import cell_volume, load_staged_model, run_on_graphs  # noqa: E402
from kim_gnn.graphs import build_staged_graphs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=os.environ.get("KIM_GNN_DEVICE_MODELS"),
                        help="folder of converted models (*.pt); default $KIM_GNN_DEVICE_MODELS")
    parser.add_argument("--replicas", type=int, nargs="+", default=[2, 4, 8],
                        help="supercell repeats n of the 8-atom cubic cell (8 n^3 atoms)")
    parser.add_argument("--cpu-max-atoms", type=int, default=512, help="time the CPU up to this many atoms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="64 and 512 atoms, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.repeats, args.warmup = [2, 4], 1, 1
    return args


def same_bits(results) -> bool:
    first = results[0]
    return all(r.energy == first.energy and np.array_equal(r.forces, first.forces) for r in results[1:])


def model_files(args, tmp):
    from device_models import toy_models

    files = dict(toy_models(tmp))
    if args.models:
        for path in sorted(glob.glob(os.path.join(args.models, "*.pt"))):
            files[os.path.splitext(os.path.basename(path))[0]] = path
    return files


def bench_model(name, path, args):
    rows = []
    loaded = {device: load_staged_model(path, device) for device in ("cpu", "cuda")}
    spec = loaded["cpu"][1]
    for replicas in args.replicas:
        atoms = si_supercell(replicas, args.seed)
        if set(atoms.get_chemical_symbols()) - set(spec.species):
            progress(f"{name}: no Si in {spec.species}, skipped")
            return rows
        graphs = build_staged_graphs(atoms, spec.species, spec.cutoff, spec.num_layers)
        row = {"model": name, "dtype": spec.model_dtype, "architecture": spec.architecture,
               "kernels": name.endswith("-kernels"), "n_atoms": len(atoms), "n_particles": int(graphs.num_particles),
               "n_edges_staged": [int(e.shape[1]) for e in graphs.edge_index]}
        for device in ("cuda", "cpu"):
            if device == "cpu" and len(atoms) > args.cpu_max_atoms:
                row["cpu"] = None
                continue
            module = loaded[device][0]
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            call = lambda: run_on_graphs(module, graphs, len(atoms), cell_volume(atoms), device,  # noqa: E731
                                         model_dtype=spec.model_dtype)
            timing, warm, results = timed_calls(call, args.repeats, args.warmup, device)
            timing["same_bits_every_call"] = same_bits(results)  # the timed calls, after the warm-up
            timing["warmup_same_bits"] = same_bits(results[:1] + warm)
            timing["energy"] = results[-1].energy
            if device == "cuda":
                timing["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
            row[device] = timing
        if row["cpu"] is not None:
            row["cpu_over_cuda"] = row["cpu"]["median_s"] / row["cuda"]["median_s"]
            row["energy_cuda_minus_cpu"] = row["cuda"]["energy"] - row["cpu"]["energy"]
        progress(f"{name} {len(atoms)} atoms: cuda {row['cuda']['median_s']:.4f} s"
                 + (f", cpu {row['cpu']['median_s']:.4f} s" if row["cpu"] else ""))
        rows.append(row)
    return rows


def print_table(rows) -> None:
    print("| model | dtype | atoms | particles | CUDA s | CPU s | CPU / CUDA | CUDA same bits | CUDA peak MiB |"
          " E(CUDA) - E(CPU) eV |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = r["cpu"]
        print(f"| {r['model']} | {r['dtype']} | {r['n_atoms']} | {r['n_particles']} | {r['cuda']['median_s']:.4f} | "
              + (f"{cpu['median_s']:.4f} | {r['cpu_over_cuda']:.1f} | " if cpu else "- | - | ")
              + f"{'yes' if r['cuda']['same_bits_every_call'] else 'no'} | {r['cuda']['peak_memory_mib']:.0f} | "
              + (f"{r['energy_cuda_minus_cpu']:.2e} |" if cpu else "- |"))


def write_plot(rows, meta, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, name in enumerate(sorted({r["model"] for r in rows})):
        mine = [r for r in rows if r["model"] == name]
        color = f"C{i % 10}"
        ax.plot([r["n_atoms"] for r in mine], [r["cuda"]["median_s"] for r in mine], color=color, marker="o",
                label=f"{name} CUDA")
        cpu = [r for r in mine if r["cpu"]]
        ax.plot([r["n_atoms"] for r in cpu], [r["cpu"]["median_s"] for r in cpu], color=color, linestyle="--",
                marker="s", label=f"{name} CPU")
    ax.legend(fontsize=6, ncol=2)
    finish_atoms_plot(fig, ax, path, "wall time per call [s] (median)",
                      f"{title}\n{meta['gpu']}; torch {meta['torch_version']}, {meta['torch_threads']} CPU threads")


def main(argv=None) -> None:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_device.py: torch sees no CUDA device")
    meta = run_meta(args, {"models": args.models, "replicas": args.replicas, "cpu_max_atoms": args.cpu_max_atoms})
    meta["gpu"] = torch.cuda.get_device_name(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in model_files(args, tmp).items():
            try:
                rows += bench_model(name, path, args)
            except Exception as exc:  # one model's failure is reported, the others still run
                progress(f"{name}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            with open(os.path.join(args.out, "device.json"), "w") as fh:  # so far, in case the run is cut short
                json.dump({"meta": meta, "results": rows, "complete": False}, fh, indent=2)
    timed_rows = [r for r in rows if "error" not in r]
    for r in rows:
        if "error" in r:
            progress(f"error: {r['model']}: {r['error'].splitlines()[0]}")
    for r in timed_rows:
        r.setdefault("other_processes_cpu_cores", None)
    write_results(timed_rows, dict(meta, errors=[r for r in rows if "error" in r]), args.out, "device",
                  "converted models: CUDA vs CPU (one energy + forces call)", plot=write_plot, table=print_table)


if __name__ == "__main__":
    main()
