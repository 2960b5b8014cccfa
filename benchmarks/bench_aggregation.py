"""Aggregation micro-benchmark: summing edge messages into receivers.

Times, on random graphs (E edges x F features into R receivers, float64 by
default), forward and forward + backward of:

  index_add      torch.zeros(R, F).index_add_(0, receiver, src)  (what aten gives)
  scatter_add    torch.zeros(R, F).scatter_add_(0, receiver expanded, src)
                 (what the aten models and torch_runstats use)
  scatter_sum    torch_scatter.scatter_sum(src, receiver, dim=0)  (optional: skipped
                 if torch-scatter is not installed)
  segment_csr    torch_scatter.segment_csr(src sorted, ptr)       (optional, idem)
  kim_gnn        torch.ops.kim_gnn.segment_sum(src sorted, ptr)   (csrc/, CSR order)

and, for the gather feeding it, ``x[sender]`` vs ``kim_gnn::gather`` (their
backward is the scatter into senders). The CSR variants get their inputs
sorted by receiver (as the converted models sort their edges once per
graph); the sort is not timed. Also checks that each method's forward and
backward are bit-identical between repeated calls and between 1 and
``--threads`` threads, and records it.

CPU always; the GPU too when torch sees one (``--device cuda`` only).

    .venv/bin/python benchmarks/bench_aggregation.py --threads 2           # 200k x 64 float64 and more
    .venv/bin/python benchmarks/bench_aggregation.py --quick               # smoke run

Writes aggregation.json and aggregation.png to --out and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import RESULTS_DIR, OtherCpuLoad, progress, timed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, nargs="+", default=[50_000, 200_000, 800_000])
    parser.add_argument("--features", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--degree", type=float, default=30.0, help="mean edges per receiver (R = E / degree)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, and CUDA too when available")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200k x 64 only, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.edges, args.features, args.repeats, args.warmup = [200_000], [64], 2, 1
    return args


def methods(device):
    """name -> (kind, setup(problem) -> forward callable taking a leaf tensor)."""
    found = {}

    def index_add(p):
        return lambda src: torch.zeros((p["R"], src.shape[1]), dtype=src.dtype, device=device).index_add_(
            0, p["receiver"], src)

    def scatter_add(p):
        index = p["receiver"].unsqueeze(-1).expand(-1, p["F"])
        return lambda src: torch.zeros((p["R"], src.shape[1]), dtype=src.dtype, device=device).scatter_add_(
            0, index, src)

    found["index_add"] = ("scatter", index_add)
    found["scatter_add"] = ("scatter", scatter_add)
    try:
        import torch_scatter

        found["scatter_sum"] = ("scatter", lambda p: (lambda src: torch_scatter.scatter_sum(
            src, p["receiver"], dim=0, dim_size=p["R"])))
        found["segment_csr"] = ("scatter", lambda p: (lambda src: torch_scatter.segment_csr(src, p["ptr"])))
    except ImportError:
        progress("torch-scatter is not installed: no scatter_sum / segment_csr rows")
    from kim_gnn import kernels

    if kernels.available():
        found["kim_gnn"] = ("scatter", lambda p: (lambda src: torch.ops.kim_gnn.segment_sum(src, p["ptr"])))
        found["gather_kim_gnn"] = ("gather", lambda p: (lambda x: torch.ops.kim_gnn.gather(
            x, p["sender"], p["sender_perm"], p["sender_ptr"])))
    else:
        progress(f"the kim_gnn op library is not built ({kernels.BUILD_COMMAND}): no kim_gnn rows")
    found["gather_index"] = ("gather", lambda p: (lambda x: x[p["sender"]]))
    return found


def problem(num_edges, features, degree, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    rows = max(1, int(num_edges / degree))
    receiver = torch.sort(torch.randint(0, rows, (num_edges,), generator=g)).values  # CSR order
    sender = torch.randint(0, rows, (num_edges,), generator=g)
    sender_perm = torch.argsort(sender, stable=True)
    arange = torch.arange(rows + 1)
    p = {
        "E": num_edges, "F": features, "R": rows,
        "receiver": receiver, "ptr": torch.searchsorted(receiver, arange),
        "sender": sender, "sender_perm": sender_perm,
        "sender_ptr": torch.searchsorted(sender[sender_perm].contiguous(), arange),
        "src": torch.randn(num_edges, features, dtype=dtype, generator=g),
        "x": torch.randn(rows, features, dtype=dtype, generator=g),
    }
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in p.items()}


def run_one(kind, forward, p, device, args):
    leaf_value = p["src"] if kind == "scatter" else p["x"]
    out_rows = p["R"] if kind == "scatter" else p["E"]
    grad_out = torch.ones((out_rows, p["F"]), dtype=leaf_value.dtype, device=device)
    leaf = leaf_value.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return forward(leaf_value)

    def fwd_bwd():
        out = forward(leaf)
        (grad,) = torch.autograd.grad(out, leaf, grad_out)
        return out, grad

    def results():
        out, grad = fwd_bwd()
        return out.detach().cpu(), grad.detach().cpu()

    row = {"forward": timed(fwd, args.repeats, args.warmup, device),
           "forward_backward": timed(fwd_bwd, args.repeats, args.warmup, device)}
    # bit-identical: repeated calls, and (CPU) 1 thread vs the threads in use
    first, second = results(), results()
    row["repeat_identical"] = bool(torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]))
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            single = results()
        finally:
            torch.set_num_threads(threads)
        row["threads_identical"] = bool(torch.equal(first[0], single[0]) and torch.equal(first[1], single[1]))
    return row


def write_plot(rows, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["device"], r["features"]) for r in rows})
    fig, axes = plt.subplots(1, len(configs), figsize=(5 * len(configs), 4.5), squeeze=False)
    for ax, (device, features) in zip(axes[0], configs):
        for name in sorted({r["method"] for r in rows}):
            sel = sorted((r for r in rows if r["method"] == name and r["device"] == device
                          and r["features"] == features), key=lambda r: r["edges"])
            if sel:
                ax.plot([r["edges"] for r in sel], [r["forward_backward"]["median_s"] for r in sel], marker="o",
                        ls="--" if name.startswith("gather") else "-", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("edges")
        ax.set_ylabel("forward + backward, median s")
        ax.set_title(f"{device}, {features} features, {meta['dtype']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"torch {meta['torch_version']}, {meta['torch_threads']} threads, {meta['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        sys.exit("bench_aggregation: --device cuda, but torch sees no CUDA device")
    dtype = getattr(torch, args.dtype)
    rows = []
    with OtherCpuLoad() as load:
        for device in devices:
            found = methods(device)
            for edges in args.edges:
                for features in args.features:
                    p = problem(edges, features, args.degree, dtype, device, args.seed)
                    for name, (kind, setup) in found.items():
                        if device.type == "cuda" and name in ("kim_gnn", "gather_kim_gnn"):
                            from kim_gnn import kernels

                            if not kernels.build_info().get("cuda"):
                                continue
                        progress(f"{device.type} E={edges} F={features}: {name}")
                        row = run_one(kind, setup(p), p, device, args)
                        rows.append({"device": device.type, "edges": edges, "features": features,
                                     "receivers": p["R"], "method": name, "kind": kind, **row})
    meta = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "dtype": args.dtype, "degree": args.degree, "repeats": args.repeats, "warmup": args.warmup,
        "other_processes_cpu_cores": load.cores,
    }
    with open(os.path.join(args.out, "aggregation.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    try:
        write_plot(rows, meta, os.path.join(args.out, "aggregation.png"))
    except ImportError:
        progress("matplotlib is not installed: no plot")

    print(f"median seconds (forward | forward + backward), {args.dtype}, {meta['torch_threads']} threads; "
          "identical = same bits on a repeated call / with 1 thread")
    header = f"{'device':>6} {'edges':>8} {'F':>4} {'method':>15} | {'fwd':>9} {'fwd+bwd':>9} | {'vs index_add':>12} | identical"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = next((b for b in rows if b["method"] == ("index_add" if r["kind"] == "scatter" else "gather_index")
                     and b["device"] == r["device"] and b["edges"] == r["edges"] and b["features"] == r["features"]),
                    None)
        speed = base["forward_backward"]["median_s"] / r["forward_backward"]["median_s"] if base else float("nan")
        same = f"{r['repeat_identical']}/{r.get('threads_identical', '-')}"
        print(f"{r['device']:>6} {r['edges']:>8} {r['features']:>4} {r['method']:>15} | "
              f"{r['forward']['median_s']:>9.5f} {r['forward_backward']['median_s']:>9.5f} | {speed:>11.2f}x | {same}")
    others = load.cores
    if others is not None and others > 0.2:
        progress(f"warning: other processes kept {others:.2f} cores busy: timings are indicative only")
    print(f"written: {os.path.join(args.out, 'aggregation.json')}, aggregation.png")


if __name__ == "__main__":
    main()
