"""Time kim-gnn's C++ KIM driver against the Python executor on the same model.

The driver (``csrc/driver``, built and installed into a temporary KIM
collection with ``kim_gnn.kim_driver.install_driver``) runs a converted model
inside LAMMPS (``kim init`` / ``kim interactions``, 1 MPI rank) for a few MD
steps on bulk Si supercells (64 atoms and up, atoms at rest); with
``KIM_GNN_DRIVER_TIMING`` it reports, per compute call, its staged-graph
build from the KIM neighbor list, the model's forward and backward and the
whole call. The Python executor (``kim_gnn.executor``) runs the same
converted model on the same structure: padding atoms (periodic images) and
the staged graphs (``kim_gnn.graphs``: its own neighbor list + staging),
then ``run_on_graphs`` (forward + backward + force folding), as ``verify``
and ``StagedCalculator`` do.

  driver: graph build (from the KIM neighbor list)  | forward | backward | whole compute call
          + LAMMPS's Pair time per step (the KIM API call as LAMMPS sees it)
  python: padding | staged graphs (neighbor list + staging) | model call (fwd + bwd)

The particle counts differ a little: LAMMPS's ghost atoms fill the slab
within the influence distance + skin of the box, Python's padding the
sphere around each atom; both are in the JSON.

With ``--per-atom-virials`` it measures instead what asking for per-atom
virials costs the driver (``compute stress/atom``, i.e. KIM's
``partialParticleVirial``: energy_and_edge_vectors, one backward pass that
also gives the edge forces, the fold): the same LAMMPS run twice per size,
thermo every step, without and with ``compute stress/atom`` summed into the
thermo output, side by side (default sizes 512 and 4096 atoms); writes
driver_virials_<architecture>.json and .png.

Run by hand (not a test), e.g.::

    .venv/bin/python benchmarks/bench_driver.py --threads 2           # full run: 64 .. 4096 atoms
    .venv/bin/python benchmarks/bench_driver.py --quick --threads 2   # smoke run: 64 and 216 atoms
    .venv/bin/python benchmarks/bench_driver.py --per-atom-virials --threads 2  # cost of stress/atom: 512, 4096

Needs LAMMPS with the KIM package, cmake, g++ and the KIM API
(``scripts/install_kim_stack.sh``). Writes driver_<architecture>.json and
driver_<architecture>.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore", category=UserWarning, module=r"(nequip|e3nn|mace)\b")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "kim_e2e"))  # the LAMMPS runner of the end-to-end tests

from _bench_common import (DEFAULT_REPLICAS, QUICK_REPLICAS, RESULTS_DIR, OtherCpuLoad, finish_atoms_plot, peak_rss_mib,
                           progress, run_meta, si_supercell, timed, write_results)

import lammps_e2e  # noqa: E402

ITEM = "Si_KimGnnBench__MO_000000000000_000"
VIRIAL_REPLICAS = (4, 8)  # 512 and 4096 atoms


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", choices=("nequip", "mace"), default="nequip")
    parser.add_argument("--replicas", type=int, nargs="+", default=None,
                        help="supercell repeats n of the 8-atom cubic cell (8 n^3 atoms); default: "
                             f"{list(DEFAULT_REPLICAS)} ({list(VIRIAL_REPLICAS)} with --per-atom-virials)")
    parser.add_argument("--per-atom-virials", action="store_true",
                        help="measure the driver's extra time per call when LAMMPS asks for per-atom virials "
                             "(compute stress/atom) instead of comparing with the Python executor")
    parser.add_argument("--steps", type=int, default=5, help="timed MD steps (driver) / calls (Python) per size")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls first on each side (TorchScript's profiling executor specialises "
                             "on the first calls)")
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--num-features", type=int, default=16)
    parser.add_argument("--l-max", type=int, default=1)
    parser.add_argument("--r-max", type=float, default=4.0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--skin", type=float, default=0.5,
                        help="LAMMPS neighbor skin (A); the Python padding gets the same skin")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads on both sides (OMP_NUM_THREADS for LAMMPS; default: torch's own)")
    parser.add_argument("--driver-build-dir", default=None,
                        help="keep the driver's build here (a second run recompiles nothing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 and 216 atoms, 2 timed steps")
    args = parser.parse_args(argv)
    if args.replicas is None:
        args.replicas = list(VIRIAL_REPLICAS if args.per_atom_virials else DEFAULT_REPLICAS)
    if args.quick:
        args.replicas, args.steps = list(QUICK_REPLICAS), 2
    args.repeats = args.steps  # for run_meta
    return args


# --- the model ---------------------------------------------------------------

def build_model(args, tmp: str):
    """(converted module, model settings) of a seeded Si model."""
    if args.architecture == "mace":
        from kim_gnn.mace import convert_mace
        from kim_gnn.mace.example import build_example_mace

        settings = {"num_interactions": args.num_layers, "num_channels": args.num_features, "max_ell": max(1, args.l_max),
                    "r_max": args.r_max, "model_dtype": args.dtype, "seed": args.seed}
        source = build_example_mace(os.path.join(tmp, "model.model"), species=("Si",), **settings)
        return convert_mace(source), settings
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.nequip.v06.example import build_example_nequip

    settings = {"num_layers": args.num_layers, "num_features": args.num_features, "l_max": args.l_max,
                "r_max": args.r_max, "model_dtype": args.dtype, "seed": args.seed}
    deployed = build_example_nequip(os.path.join(tmp, "deployed.pth"), species=("Si",), **settings)
    return convert_nequip(deployed), settings


# --- the driver in a temporary KIM collection ----------------------------------

def kim_collection(tmp: str, staged, build_dir) -> dict:
    """Build and install kim-gnn's driver and the model into a temporary
    environment collection; returns the environment for LAMMPS."""
    from kim_gnn import contract
    from kim_gnn.export import write_portable_model
    from kim_gnn.kim_driver import install_driver

    root = Path(tmp) / "collection"
    dirs = {k: root / k for k in ("md", "pm", "sm", "user", "home", "items")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    config = root / "kim-api-config"
    config.write_text("".join(f"{k}-dir = {dirs['user']}\n" for k in ("model-drivers", "portable-models",
                                                                       "simulator-models")))
    kim_env = {"KIM_API_MODEL_DRIVERS_DIR": str(dirs["md"]), "KIM_API_PORTABLE_MODELS_DIR": str(dirs["pm"]),
               "KIM_API_SIMULATOR_MODELS_DIR": str(dirs["sm"]), "KIM_API_CONFIGURATION_FILE": str(config)}
    os.environ.update(kim_env)  # install_driver installs into the environment collection named here
    progress("building and installing kim-gnn's driver (1-3 minutes unless --driver-build-dir holds a build)")
    install_driver("environment", build_dir or str(root / "driver-build"), progress=progress)
    item = write_portable_model(staged, dirs["items"] / ITEM, driver_name=contract.KIM_GNN_DRIVER_NAME)
    env = dict(os.environ, HOME=str(dirs["home"]))
    proc = subprocess.run(["kim-api-collections-management", "install", "environment", item], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"installing the model failed:\n{proc.stdout[-3000:]}")
    return env


# --- one size ------------------------------------------------------------------

def driver_side(atoms, env, args, workdir: Path, stress_atom: Optional[bool] = None) -> dict:
    """LAMMPS on 1 rank, ``warmup + steps`` MD steps from rest; the driver's
    per-call timings and LAMMPS's Pair time. ``stress_atom`` False / True:
    thermo every step, without / with ``compute stress/atom`` in it (the
    per-atom virial cost); None: thermo at the end only."""
    workdir.mkdir(parents=True, exist_ok=True)
    lammps_e2e.write_data(workdir / "data.lmp", atoms, ["Si"])
    timing_file = workdir / "driver-timing.jsonl"
    steps = args.warmup + args.steps
    (workdir / "in.lmp").write_text("\n".join([
        f"kim init {ITEM} metal",
        "boundary p p p",
        "atom_modify map array",
        "read_data data.lmp",
        "kim interactions Si",
        f"neighbor {args.skin} bin",
        "neigh_modify every 1 delay 0 check yes",
        "timestep 0.0005",
        "fix nve all nve",
        *thermo_lines(steps, stress_atom),
        f"run {steps}",
    ]) + "\n")
    run_env = dict(env, **lammps_e2e.OPENMPI_ENV, KIM_GNN_DRIVER_TIMING=str(timing_file))
    if args.threads is not None:
        run_env["OMP_NUM_THREADS"] = str(args.threads)
    else:
        run_env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    proc = subprocess.run([lammps_e2e.lammps_executable(), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none",
                           "-nocite"], cwd=workdir, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=7200)
    wall = time.perf_counter() - start
    log = (workdir / "log.lammps").read_text(errors="replace") if (workdir / "log.lammps").exists() else ""
    if proc.returncode != 0 or "ERROR" in log:
        raise SystemExit(f"LAMMPS failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{log[-3000:]}")
    calls = [json.loads(line) for line in timing_file.read_text().splitlines() if line.strip()]
    if stress_atom is not None and any(c.get("particle_virial", False) != stress_atom for c in calls):
        raise SystemExit(f"the driver was {'not ' if stress_atom else ''}asked for per-atom virials on some calls")
    # run N computes N + 1 times (setup + each step); the first warmup + 1 are untimed.
    timed_calls = calls[args.warmup + 1:]
    if not timed_calls:
        raise SystemExit(f"the driver reported {len(calls)} calls; nothing left to time after the warmup")
    pair = re.search(r"^Pair\s*\|\s*([0-9.eE+-]+)", log, re.M)
    loop = re.search(r"Loop time of ([0-9.eE+-]+) on", log)

    def stat(key):
        values = [c[key] for c in timed_calls]
        return {"median_s": statistics.median(values), "min_s": min(values)}

    return {
        "particles": timed_calls[-1]["particles"],
        "edges": timed_calls[-1]["edges"],
        "calls_timed": len(timed_calls),
        "graph": stat("graph_s"),
        "forward": stat("forward_s"),
        "backward": stat("backward_s"),
        "total": stat("total_s"),
        # LAMMPS times the whole run (warmup steps included): per step, as LAMMPS sees the KIM call
        "lammps_pair_per_step_s": float(pair.group(1)) / steps if pair else None,
        "lammps_loop_per_step_s": float(loop.group(1)) / steps if loop else None,
        "lammps_wall_s": wall,
        "energy": float(lammps_e2e.thermo_tables(log)[0]["PotEng"]),
    }


def thermo_lines(steps: int, stress_atom: Optional[bool]):
    if stress_atom is None:
        return ["thermo_style custom step pe", f"thermo {steps}"]
    lines = ["thermo_style custom step pe press"]
    if stress_atom:
        lines = ["compute sa all stress/atom NULL virial",
                 "compute ssum all reduce sum c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]",
                 "thermo_style custom step pe press c_ssum[1] c_ssum[2] c_ssum[3] c_ssum[4] c_ssum[5] c_ssum[6]"]
    return lines + ["thermo 1"]


def python_side(atoms, module, spec, args) -> dict:
    from kim_gnn.executor import cell_volume, run_on_graphs
    from kim_gnn.graphs import StagedGraphs, pad_periodic_images, staged_edge_lists

    reach = spec.cutoff * spec.num_layers

    def pad():
        return pad_periodic_images(atoms, spec.species, reach, args.skin, spec.cutoff)

    padded = pad()

    def graphs():
        return staged_edge_lists(padded.positions, padded.contributions, spec.cutoff, spec.num_layers)

    staged = StagedGraphs(positions=padded.positions, species=padded.species, contributions=padded.contributions,
                          image_of=padded.image_of, num_contributing=padded.num_contributing, edge_index=graphs())
    volume = cell_volume(atoms)

    def model():
        return run_on_graphs(module, staged, len(atoms), volume)

    energy = model().energy
    row = {"particles": staged.num_particles, "edges": [int(e.shape[1]) for e in staged.edge_index], "energy": energy}
    for name, call in (("padding", pad), ("graph", graphs), ("model", model)):
        row[name] = timed(call, args.steps, args.warmup)
    row["total"] = {stat: row["padding"][stat] + row["graph"][stat] + row["model"][stat]
                    for stat in ("median_s", "min_s")}
    return row


# --- output --------------------------------------------------------------------

def print_table(rows) -> None:
    header = (f"{'atoms':>6} | {'drv part':>8} {'drv graph':>9} {'drv fwd':>8} {'drv bwd':>8} {'drv call':>8}"
              f" {'lmp pair':>8} | {'py part':>8} {'py pad':>8} {'py graph':>8} {'py model':>8} {'py total':>8}"
              f" | {'graph py/drv':>12} {'call py/drv':>11} {'others':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        d, p = r["driver"], r["python"]
        others = "n/a" if r["other_processes_cpu_cores"] is None else f"{r['other_processes_cpu_cores']:.2f}"
        pair = d["lammps_pair_per_step_s"]
        print(f"{r['n_atoms']:>6} | {d['particles']:>8} {d['graph']['median_s']:>9.4f} {d['forward']['median_s']:>8.3f}"
              f" {d['backward']['median_s']:>8.3f} {d['total']['median_s']:>8.3f}"
              f" {'-' if pair is None else f'{pair:.3f}':>8}"
              f" | {p['particles']:>8} {p['padding']['median_s']:>8.4f} {p['graph']['median_s']:>8.4f}"
              f" {p['model']['median_s']:>8.3f} {p['total']['median_s']:>8.3f}"
              f" | {(p['padding']['median_s'] + p['graph']['median_s']) / d['graph']['median_s']:>12.1f}"
              f" {p['total']['median_s'] / d['total']['median_s']:>11.2f} {others:>6}")
    print("times: median seconds per call; drv = kim-gnn's driver in LAMMPS (graph: staged graphs from the KIM\n"
          "neighbor list; call: the whole compute), lmp pair: LAMMPS's Pair time per step (warmup included);\n"
          "py = Python executor (pad: periodic images; graph: neighbor list + staging; model: fwd + bwd);\n"
          "graph py/drv compares padding + graphs with the driver's graph build; others: CPU cores other\n"
          "processes kept busy meanwhile (should be ~0)")


def write_plot(rows, meta, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atoms = [r["n_atoms"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    series = [
        ("driver", "graph", "C3", ":", "driver: staged graphs (from the KIM neighbor list)"),
        ("driver", "total", "C3", "-", "driver: whole compute call"),
        ("python", "graph", "C0", ":", "Python: staged graphs (neighbor list + staging)"),
        ("python", "padding", "C0", "-.", "Python: padding atoms"),
        ("python", "model", "C0", "--", "Python: model call (fwd + bwd)"),
        ("python", "total", "C0", "-", "Python: padding + graphs + model"),
    ]
    for side, key, color, line, label in series:
        ax.plot(atoms, [r[side][key]["median_s"] for r in rows], color=color, linestyle=line, marker="o", ms=3,
                label=label, lw=2 if key == "total" else 1.2)
    ax.plot(atoms, [r["driver"]["forward"]["median_s"] + r["driver"]["backward"]["median_s"] for r in rows],
            color="C3", linestyle="--", marker="o", ms=3, label="driver: model (fwd + bwd)")
    finish_atoms_plot(fig, ax, path, "wall time per call [s] (median)",
                      f"{title}\ntorch {meta['torch_version']}, {meta['torch_threads']} threads, {meta['machine']}")


# --- the cost of per-atom virials ------------------------------------------------

def print_virial_table(rows) -> None:
    header = (f"{'atoms':>6} {'particles':>9} | {'call':>8} {'fwd':>8} {'bwd':>8} | {'call+vir':>8} {'fwd':>8}"
              f" {'bwd':>8} | {'extra s':>8} {'extra %':>7} {'others':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        a, b = r["without"], r["with"]
        others = "n/a" if r["other_processes_cpu_cores"] is None else f"{r['other_processes_cpu_cores']:.2f}"
        print(f"{r['n_atoms']:>6} {a['particles']:>9} | {a['total']['median_s']:>8.3f} {a['forward']['median_s']:>8.3f}"
              f" {a['backward']['median_s']:>8.3f} | {b['total']['median_s']:>8.3f} {b['forward']['median_s']:>8.3f}"
              f" {b['backward']['median_s']:>8.3f} | {r['extra_per_call_s']:>8.3f} {100 * r['extra_fraction']:>6.1f}%"
              f" {others:>6}")
    print("times: median seconds per driver compute call in LAMMPS (1 rank); call+vir: with compute stress/atom\n"
          "(partialParticleVirial); extra: the difference of the medians; others: CPU cores other processes\n"
          "kept busy meanwhile (should be ~0; the timings are unreliable otherwise)")


def write_virial_plot(rows, meta, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atoms = [r["n_atoms"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for side, color, label in (("without", "C0", "energy, forces, virial"),
                               ("with", "C3", "... and per-atom virials (compute stress/atom)")):
        ax.plot(atoms, [r[side]["total"]["median_s"] for r in rows], color=color, marker="o", lw=2,
                label=f"whole call: {label}")
        ax.plot(atoms, [r[side]["forward"]["median_s"] for r in rows], color=color, marker="o", ms=3, ls="--",
                lw=1.2, label=f"forward: {label}")
        ax.plot(atoms, [r[side]["backward"]["median_s"] for r in rows], color=color, marker="o", ms=3, ls=":",
                lw=1.2, label=f"backward: {label}")
    finish_atoms_plot(fig, ax, path, "driver wall time per call [s] (median)",
                      f"{title}\ntorch {meta['torch_version']}, {meta['torch_threads']} threads, {meta['machine']}")


def virials_main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="kim-gnn-bench-driver-") as tmp:
        progress(f"building a seeded {args.architecture} model")
        staged, settings = build_model(args, tmp)
        meta = run_meta(args, dict(settings, architecture=args.architecture, skin=args.skin))
        meta["steps"] = args.steps
        env = kim_collection(tmp, staged, args.driver_build_dir)
        rows = []
        for replicas in args.replicas:
            atoms = si_supercell(replicas, args.seed)
            row = {"replicas": replicas, "n_atoms": len(atoms)}
            with OtherCpuLoad() as load:
                for key, flag in (("without", False), ("with", True)):
                    progress(f"{len(atoms)} atoms: driver {key} per-atom virials ({args.warmup} + {args.steps} steps)")
                    row[key] = driver_side(atoms, env, args, Path(tmp) / f"lammps-{replicas}-{key}", stress_atom=flag)
            row["other_processes_cpu_cores"] = load.cores
            row["extra_per_call_s"] = row["with"]["total"]["median_s"] - row["without"]["total"]["median_s"]
            row["extra_fraction"] = row["extra_per_call_s"] / row["without"]["total"]["median_s"]
            row["peak_rss_mib"] = peak_rss_mib()
            rows.append(row)
    write_results(rows, meta, args.out, f"driver_virials_{args.architecture}",
                  f"kim-gnn driver in LAMMPS (1 rank): the cost of per-atom virials, "
                  f"{args.architecture}, L={args.num_layers}, {args.dtype}", write_virial_plot, print_virial_table)


def main(argv=None) -> None:
    args = parse_args(argv)
    reason = lammps_e2e.lammps_missing_reason()
    if reason:
        raise SystemExit(f"bench_driver: {reason}")
    if args.per_atom_virials:
        return virials_main(args)
    from kim_gnn.executor import load_staged_model

    with tempfile.TemporaryDirectory(prefix="kim-gnn-bench-driver-") as tmp:
        progress(f"building a seeded {args.architecture} model")
        staged, settings = build_model(args, tmp)
        meta = run_meta(args, dict(settings, architecture=args.architecture, skin=args.skin))
        meta["steps"] = args.steps
        env = kim_collection(tmp, staged, args.driver_build_dir)
        model_file = os.path.join(tmp, "model.pt")
        staged.save(model_file)
        module, spec = load_staged_model(model_file)
        rows = []
        for replicas in args.replicas:
            atoms = si_supercell(replicas, args.seed)
            progress(f"{len(atoms)} atoms: driver (LAMMPS, {args.warmup} + {args.steps} steps)")
            with OtherCpuLoad() as load:
                driver = driver_side(atoms, env, args, Path(tmp) / f"lammps-{replicas}")
                progress(f"{len(atoms)} atoms: Python executor ({args.warmup} + {args.steps} calls)")
                python = python_side(atoms, module, spec, args)
            row = {"replicas": replicas, "n_atoms": len(atoms), "driver": driver, "python": python,
                   "energy_diff_eV": abs(driver["energy"] - python["energy"]),
                   "peak_rss_mib": peak_rss_mib(), "other_processes_cpu_cores": load.cores}
            if row["energy_diff_eV"] > 1e-6 * max(1.0, abs(python["energy"])):
                progress(f"warning: driver and Python energies differ by {row['energy_diff_eV']:.3g} eV")
            rows.append(row)

    write_results(rows, meta, args.out, f"driver_{args.architecture}",
                  f"kim-gnn driver (LAMMPS, 1 rank) vs Python executor: {args.architecture}, "
                  f"L={args.num_layers}, r_max={args.r_max} Å, {args.dtype}", write_plot, print_table)


if __name__ == "__main__":
    main()
