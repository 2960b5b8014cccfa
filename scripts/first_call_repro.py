"""Does a converted model's first call in a fresh process give the same
numbers as its later calls? (The open question behind rare `verify`
failures on rattled_bulk: on a loaded multi-core machine the first call
sometimes differed by 1e-10 to 3e-9 eV/A in forces; see docs/testing.md.)

    .venv/bin/python scripts/first_call_repro.py model.pt [--processes 20] [--load]

Starts ``--processes`` fresh processes, each calling the model 4 times on the
battery's first structure as the driver does, and counts how often the first
call differs from the last. ``--load`` keeps the other cores busy meanwhile
(the failures were seen under load only).
"""

import argparse
import collections
import multiprocessing
import subprocess
import sys

CHILD = """
import sys, numpy as np
from kim_gnn.executor import StagedExecutor
from kim_gnn.verification.structures import battery
ex = StagedExecutor(sys.argv[1])
case = battery(tuple(ex.spec.species), ex.spec.cutoff)[0]
forces = [ex.run(case.atoms).forces for _ in range(4)]
print('%.3g' % float(np.abs(forces[0] - forces[-1]).max()))
"""


def _busy() -> None:
    import torch

    a = torch.randn(1500, 1500, dtype=torch.float64)
    while True:
        a @ a


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a converted model.pt")
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--load", action="store_true", help="keep the other cores busy meanwhile")
    args = parser.parse_args(argv)
    busy = multiprocessing.Process(target=_busy, daemon=True) if args.load else None
    if busy:
        busy.start()
    counts = collections.Counter()
    try:
        for k in range(args.processes):
            out = subprocess.run([sys.executable, "-c", CHILD, args.model], capture_output=True, text=True)
            result = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else "error: " + out.stderr[-200:]
            counts[result] += 1
            print(f"[{k + 1}/{args.processes}] first call vs last, max|dF|: {result}", flush=True)
    finally:
        if busy:
            busy.terminate()
    print("summary:", dict(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
