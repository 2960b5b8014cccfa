"""Start the fresh-process worker (``_fresh_worker.py``) on one job and
collect what it gives back: the parent's side of every fresh process the
verification starts (``verify``'s evaluations, ``kim-gnn check``'s species
probe)."""

import os
import pickle
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Iterable, List, NamedTuple, Optional

from ._fresh_worker import KINDS


class FreshRun(NamedTuple):
    """How a fresh process ended: its exit status (negative: killed by that
    signal), its job's result (None when it wrote none) and the lines of its
    standard error (without the progress lines)."""

    returncode: int
    result: object
    stderr: List[str]


def run_fresh(kind: str, payload: dict, blocked: Iterable[str] = (),
              progress: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None) -> FreshRun:
    """Run one job of ``kind`` (``_fresh_worker.KINDS``) in a new interpreter
    with default torch settings, with the packages ``blocked`` unimportable
    there; its ``progress: ...`` lines on standard error go to ``progress``.
    Past ``timeout`` seconds the process is killed and ``TimeoutExpired``
    raised."""
    if kind not in KINDS:
        raise ValueError(f"unknown fresh-process job kind {kind!r} (known: {', '.join(KINDS)})")
    with tempfile.TemporaryDirectory(prefix="kim-gnn-verify-") as tmp:
        job_file = os.path.join(tmp, "jobs.pkl")
        out_file = os.path.join(tmp, "results.pkl")
        with open(job_file, "wb") as fh:
            pickle.dump({**payload, "kind": kind, "blocked": list(blocked)}, fh)
        env = dict(os.environ)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kim_gnn.verification._fresh_worker", job_file, out_file],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        killed = []

        def kill():
            killed.append(True)
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        lines: List[str] = []
        try:
            with proc.stderr:
                for line in proc.stderr:
                    line = line.rstrip("\n")
                    if line.startswith("progress: "):
                        if progress:
                            progress(line[len("progress: "):])
                    else:
                        lines.append(line)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
        if killed:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        result = None
        if proc.returncode == 0 and os.path.exists(out_file):
            with open(out_file, "rb") as fh:
                result = pickle.load(fh)
        return FreshRun(proc.returncode, result, lines)
