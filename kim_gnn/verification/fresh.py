"""Start the fresh-process worker (``_fresh_worker.py``) on one job and
collect what it gives back: the parent's side of every fresh process the
verification starts (``verify``'s evaluations, ``kim-gnn check``'s species
probe).

A fresh process is a fork of a *zygote*: an interpreter started like the worker
that has imported torch, numpy, ASE and kim_gnn's core (never an
architecture package, never a torch call) and forks one child per job. The
child is as fresh as a new interpreter where it matters (torch's default
settings, no operator ever run, the architecture packages blocked, the
parent's environment (``os.environ``) and working directory of that call)
and skips the 2-3 seconds of CPU that importing torch costs, which the test
suite paid a few hundred times. The zygote is started at the first job of a parent process
(again when a variable that libraries read once at start-up changed:
``STARTUP_VARIABLES``, e.g. ``OMP_NUM_THREADS``, which torch's OpenMP reads
at import) and ends with the parent. ``KIM_GNN_FRESH_ZYGOTE=0`` starts a new
interpreter for every job instead.
"""

import atexit
import contextlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

from ._fresh_worker import KINDS, ZYGOTE_DONE, ZYGOTE_PID, ZYGOTE_UNSUITABLE


class FreshRun(NamedTuple):
    """How a fresh process ended: its exit status (negative: killed by that
    signal), its job's result (None when it wrote none) and the lines of its
    standard error (without the progress lines)."""

    returncode: int
    result: object
    stderr: List[str]


#: Prefixes of environment variables that a process reads at start-up or at
#: import (the interpreter, the dynamic loader, malloc, OpenMP, MKL, OpenBLAS,
#: torch): a zygote started with other values of these is not used. Every
#: other variable reaches a forked job through ``os.environ`` (and so the C
#: environment) as it is at the call.
STARTUP_VARIABLES = ("PYTHON", "LD_", "MALLOC_", "GLIBC_", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_",
                     "ATEN_", "TORCH_", "PYTORCH_", "CUDA_", "NVIDIA_")


def _startup_environment(env: Dict[str, str]) -> Dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES)}


def _child_environment() -> Dict[str, str]:
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def _deadline(timeout: Optional[float], kill: Callable[[], None]):
    """Call ``kill`` once ``timeout`` seconds (None: never) have passed inside
    the block; yields a list that is non-empty once it has."""
    fired: List[bool] = []

    def fire():
        fired.append(True)
        kill()

    timer = threading.Timer(timeout, fire) if timeout else None
    if timer:
        timer.start()
    try:
        yield fired
    finally:
        if timer:
            timer.cancel()


class _Zygote:
    """The zygote interpreter of this process (``_fresh_worker`` with
    ``--zygote``): one request line per job on its stdin, the job's child's
    standard error and the zygote's ``pid`` / ``done`` lines on one pipe, so
    that the ``done`` line comes after everything the child wrote."""

    _lock = threading.Lock()
    _current: "Optional[_Zygote]" = None

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kim_gnn.verification._fresh_worker", "--zygote"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    @classmethod
    def for_environment(cls, env: Dict[str, str]) -> "_Zygote":
        """A zygote started with ``env``'s ``STARTUP_VARIABLES`` (other values,
        e.g. another ``OMP_NUM_THREADS``, start a new one)."""
        current = cls._current
        if current is not None and (_startup_environment(current.env) != _startup_environment(env)
                                    or not current.alive()):
            current.close()
            current = None
        if current is None:
            current = cls._current = cls(env)
            atexit.register(current.close)
        return current

    def run(self, job_file: str, out_file: str, on_line: Callable[[str], None],
            timeout: Optional[float]) -> Optional[int]:
        """Run one job in a forked child; its exit status (negative: killed by
        that signal), or None if the zygote itself went away."""
        try:
            self.proc.stdin.write(f"{job_file}\t{out_file}\t{os.getcwd()}\n")
            self.proc.stdin.flush()
        except OSError:  # (BrokenPipeError: it ended)
            return None
        child: List[int] = []

        def kill():
            if child:
                os.kill(child[0], signal.SIGKILL)

        with _deadline(timeout, kill) as killed:
            for line in self.proc.stderr:
                line = line.rstrip("\n")
                if line.startswith(ZYGOTE_PID):
                    child.append(int(line[len(ZYGOTE_PID):]))
                    if killed:  # (the deadline passed before the child's pid came)
                        kill()
                elif line.startswith(ZYGOTE_DONE):
                    if killed:
                        raise subprocess.TimeoutExpired("kim_gnn.verification._fresh_worker", timeout)
                    return int(line[len(ZYGOTE_DONE):])
                else:
                    on_line(line)
        return None


def _zygote_enabled() -> bool:
    return os.environ.get("KIM_GNN_FRESH_ZYGOTE", "1") != "0" and hasattr(os, "fork")


def run_fresh(kind: str, payload: dict, blocked: Iterable[str] = (),
              progress: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None) -> FreshRun:
    """Run one job of ``kind`` (``_fresh_worker.KINDS``) in a fresh process
    with default torch settings, with the packages ``blocked`` unimportable
    there; its ``progress: ...`` lines on standard error go to ``progress``.
    Past ``timeout`` seconds the process is killed and ``TimeoutExpired``
    raised."""
    if kind not in KINDS:
        raise ValueError(f"unknown fresh-process job kind {kind!r} (known: {', '.join(KINDS)})")
    with tempfile.TemporaryDirectory(prefix="kim-gnn-verify-") as tmp:
        job_file = os.path.join(tmp, "jobs.pkl")
        out_file = os.path.join(tmp, "results.pkl")
        env = _child_environment()
        with open(job_file, "wb") as fh:
            # (the environment: a forked job takes it as its own)
            pickle.dump({**payload, "kind": kind, "blocked": list(blocked), "environment": env}, fh)
        lines: List[str] = []

        def on_line(line: str) -> None:
            if line.startswith("progress: "):
                if progress:
                    progress(line[len("progress: "):])
            else:
                lines.append(line)

        returncode = None
        if _zygote_enabled():
            with _Zygote._lock:
                zygote = _Zygote.for_environment(env)
                returncode = zygote.run(job_file, out_file, on_line, timeout)
                if returncode is None:  # the zygote went away: a new interpreter for this job
                    zygote.close()
                    lines.append("(the zygote process ended; the job ran in a new interpreter)")
                elif returncode == ZYGOTE_UNSUITABLE:  # it blocks a package the zygote imported
                    returncode = None
        if returncode is None:
            returncode = _run_in_new_interpreter(job_file, out_file, env, on_line, timeout)
        result = None
        if returncode == 0 and os.path.exists(out_file):
            with open(out_file, "rb") as fh:
                result = pickle.load(fh)
        return FreshRun(returncode, result, lines)


def _run_in_new_interpreter(job_file: str, out_file: str, env: Dict[str, str], on_line: Callable[[str], None],
                            timeout: Optional[float]) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kim_gnn.verification._fresh_worker", job_file, out_file],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    with _deadline(timeout, proc.kill) as killed:
        with proc.stderr:
            for line in proc.stderr:
                on_line(line.rstrip("\n"))
        proc.wait()
    if killed:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.returncode
