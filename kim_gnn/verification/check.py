"""Checks of a converted model on its own, modelled on OpenKIM's
verification checks (no original model needed).

Each check runs the converted model as the TorchML driver runs it (the
executor: load, freeze, staged graphs, forces by backward) and gives one
pass/fail result with the number it was judged on:

* forces: forces equal the Richardson-extrapolated numerical derivative of
  the energy (relative error per structure);
* continuity: dimer across the cutoff and a chain whose last link crosses
  the cutoff (so its end crosses the first atom's influence distance):
  energy, forces and the first atom's energy have no jump, and nothing
  changes beyond (largest jump reported);
* symmetry: inversion, translation, rotation, permutation;
* periodicity: energy per atom of a 1x1x1 and a 2x2x2 cell agree;
* species: every species of the model works; an unknown element and an
  out-of-range species index give clear errors;
* thread safety: concurrent evaluations identical to serial ones;
* memory: neither the C heap in use nor RSS grows over repeated calls;
* determinism: repeated calls identical.

"Identical" is bit for bit, except that torch's parallel CPU scatter-adds
sum in no fixed order, so forces may differ in the last bits from call to
call (also in the driver): a difference below a tenth of verify's force
tolerance is reported, and passes.

One module (about 480 lines) on purpose: one function per check of ``CHECKS``,
each short, sharing the loaded model (``_Model``) and the report; splitting
them would scatter the table of checks that ``kim-gnn check --only`` names.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

import numpy as np
from ase import Atoms

from ..errors import KimGnnError, first_line
from ..executor import StagedExecutor, cell_volume, converted_model_file, run_on_graphs
from .finite_difference import richardson_derivative
from .fresh import run_fresh
from .structures import battery, nearest_neighbor_distance, random_rotation
from .tolerances import CHECK_TOLERANCES, MEMORY_GROWTH_LIMIT, MEMORY_HEAP_GROWTH_LIMIT, tolerances_for


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    value: Optional[float] = None
    seconds: float = 0.0


@dataclass
class CheckReport:
    model: str
    species: List[str]
    cutoff: float
    num_layers: int
    model_dtype: str
    results: List[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def write_json(self, path) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    def summary(self) -> str:
        lines = [
            f"model: {self.model} (species {' '.join(self.species)}, cutoff {self.cutoff:g} A, "
            f"{self.num_layers} layers, {self.model_dtype})"
        ]
        for r in self.results:
            lines.append(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<14} {r.detail}")
        n_fail = sum(not r.passed for r in self.results)
        lines.append(
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.results) - n_fail} passed, {n_fail} failed "
            f"({self.seconds:.1f} s)"
        )
        return "\n".join(lines)


class _Model:
    """The converted model, loaded once, evaluated as the driver would."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.executor = StagedExecutor(path)
        self.spec = self.executor.spec
        self.tol = tolerances_for(self.spec.model_dtype)
        self.ctol = CHECK_TOLERANCES[self.spec.model_dtype]

    def run(self, atoms):
        return self.executor.run(atoms)

    def energy(self, atoms) -> float:
        """The energy of a driver call (its forward; the forces are not needed)."""
        return self.executor.energy(atoms)


def _scale(values) -> float:
    return max(1.0, float(np.abs(np.asarray(values)).max(initial=0.0)))


# --- the checks ----------------------------------------------------------------

def check_forces(m: _Model, structures) -> CheckResult:
    """Forces vs. the Richardson-extrapolated central difference of the
    energy, on a few coordinates of each structure."""
    h = m.ctol["fd_step"]
    errors = []
    rng = np.random.default_rng(1)
    for name, atoms in structures:
        forces = m.run(atoms).forces
        picks = [(int(rng.integers(len(atoms))), c) for c in range(3)]
        numerical = np.zeros(len(picks))
        for k, (a, c) in enumerate(picks):

            def displaced(step, a=a, c=c):
                moved = atoms.copy()
                moved.positions[a, c] += step
                return m.energy(moved)

            numerical[k] = -richardson_derivative(displaced, h)
        analytic = np.array([forces[a, c] for a, c in picks])
        errors.append((name, float(np.abs(numerical - analytic).max() / _scale(forces))))
    worst = max(e for _, e in errors)
    detail = "relative error " + ", ".join(f"{n} {e:.1e}" for n, e in errors) + f" (limit {m.ctol['forces_fd']:g})"
    return CheckResult("forces", worst <= m.ctol["forces_fd"], detail, worst)


def _scan(m: _Model, make: Callable[[float], Atoms], distances, watch_atom: int = 0):
    """Energy, forces and one atom's energy along a scan."""
    energy, forces, atom_energy = [], [], []
    for r in distances:
        result = m.run(make(r))
        energy.append(result.energy)
        forces.append(result.forces)
        atom_energy.append(result.energies[watch_atom])
    return np.array(energy), np.array(forces), np.array(atom_energy)


def _largest_jump(values: np.ndarray) -> float:
    """Largest second difference along a scan of equal steps: about
    step^2 * f'' for a smooth curve, the jump itself at a discontinuity."""
    values = values.reshape(len(values), -1)
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    return float(np.abs(second).max(initial=0.0))


def check_continuity(m: _Model) -> CheckResult:
    """Dimer across the cutoff, and a chain of L+1 atoms whose last link
    crosses the cutoff, so that its end crosses the influence distance of
    the first atom: no jumps in energy, forces or the first atom's energy;
    beyond the cutoff, the far atom adds exactly its isolated energy."""
    rc, layers = m.spec.cutoff, m.spec.num_layers
    a, b = m.spec.species[0], m.spec.species[-1]
    step = 1e-4
    offsets = np.arange(-10, 11) * step
    distances = rc + offsets
    isolated = {s: m.energy(Atoms(s, positions=[[0.0, 0.0, 0.0]])) for s in {a, b}}
    spacing = nearest_neighbor_distance(rc)

    def dimer(r):
        return Atoms([a, b], positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])

    def chain(r):
        # first atom .. atom L-1 bonded, atom L at distance r from atom L-1
        x = [i * spacing for i in range(layers)] + [(layers - 1) * spacing + r]
        symbols = [a if i % 2 == 0 else b for i in range(layers + 1)]
        pos = np.zeros((layers + 1, 3))
        pos[:, 0] = x
        pos[:, 1] = 0.05 * np.arange(layers + 1) ** 2  # not collinear
        return Atoms(symbols, positions=pos)

    jumps, beyond = {}, 0.0
    for name, make in (("dimer", dimer), ("chain", chain)):
        e, f, e0 = _scan(m, make, distances)
        jumps[name] = (_largest_jump(e), _largest_jump(f), _largest_jump(e0))
        outside = offsets > 0
        rest = make(distances[-1])
        far = rest.get_chemical_symbols()[-1]
        near = m.energy(rest[:-1])
        beyond = max(beyond, float(np.abs(e[outside] - (near + isolated[far])).max() / _scale([near])))
    worst_e = max(max(j[0], j[2]) for j in jumps.values())
    worst_f = max(j[1] for j in jumps.values())
    ok = worst_e <= m.ctol["jump_energy"] and worst_f <= m.ctol["jump_forces"] and beyond <= m.ctol["beyond"]
    detail = (
        f"largest jump across rc: energy {worst_e:.1e} eV (limit {m.ctol['jump_energy']:g}), forces {worst_f:.1e} eV/A "
        f"(limit {m.ctol['jump_forces']:g}); chain end across the influence distance {layers * rc:g} A "
        f"(first atom's energy jump {jumps['chain'][2]:.1e} eV); beyond the cutoff {beyond:.1e} "
        f"(limit {m.ctol['beyond']:g})"
    )
    return CheckResult("continuity", ok, detail, max(worst_e, worst_f))


def check_symmetry(m: _Model, atoms: Atoms, seed: int = 0) -> CheckResult:
    """Inversion, translation, rotation and permutation."""
    rng = np.random.default_rng(seed + 7)
    base = m.run(atoms)
    e_scale = max(1.0, abs(base.energy) / len(atoms))
    f_scale = _scale(base.forces)
    tol_e, tol_f = m.tol["energy_per_atom"] * e_scale, m.tol["forces"] * f_scale

    def moved(positions, cell=None):
        a = atoms.copy()
        if cell is not None:
            a.set_cell(cell, scale_atoms=False)
        a.positions = positions
        return a

    rot = random_rotation(rng)
    perm = rng.permutation(len(atoms))
    cases = {
        # a lattice is its own inversion: only the positions change sign
        "inversion": (moved(-atoms.positions), lambda f: -f, None),
        "translation": (moved(atoms.positions + rng.normal(size=3) * 2.0), lambda f: f, None),
        "rotation": (moved(atoms.positions @ rot.T, atoms.cell.array @ rot.T), lambda f: f @ rot.T, None),
        "permutation": (atoms[perm], lambda f: f[perm], perm),
    }
    failed, parts, worst = [], [], 0.0
    for name, (transformed, map_forces, _) in cases.items():
        r = m.run(transformed)
        de = abs(r.energy - base.energy) / len(atoms)
        df = float(np.abs(r.forces - map_forces(base.forces)).max())
        parts.append(f"{name} dE/atom {de:.1e} dF {df:.1e}")
        worst = max(worst, de / tol_e, df / tol_f)
        if not (de <= tol_e and df <= tol_f):
            failed.append(name)
    detail = "; ".join(parts) + (f" -- broken: {', '.join(failed)}" if failed else "")
    return CheckResult("symmetry", not failed, detail, worst)


def check_periodicity(m: _Model, atoms: Atoms) -> CheckResult:
    small = m.run(atoms)
    big = m.run(atoms * (2, 2, 2))
    per_small, per_big = small.energy / len(atoms), big.energy / (8 * len(atoms))
    d = abs(per_small - per_big)
    limit = m.tol["energy_per_atom"] * max(1.0, abs(per_small))
    return CheckResult("periodicity", d <= limit,
                       f"energy per atom 1x1x1 {per_small:.10g} eV, 2x2x2 {per_big:.10g} eV, difference {d:.1e} "
                       f"(limit {limit:.1e})", d)


def _unsupported_element(species) -> str:
    for s in ("Og", "Ts", "Lv", "Mc", "Fl", "Nh"):
        if s not in species:
            return s
    return "Xe"


def _probe_species_index(m: "_Model", n: int, spacing: float) -> Optional[str]:
    """Call the model (loaded and frozen as the driver loads it, in a fresh
    process) with species index ``n``; None if it refuses it with the
    message that names its species count, else what went wrong."""
    run = run_fresh("species_probe", {"model": m.path, "index": n, "spacing": spacing,
                                      "num_layers": m.spec.num_layers}, timeout=600)
    if run.returncode < 0:
        return f"species index {n} crashed the process running the model (signal {-run.returncode})"
    if run.returncode != 0 or run.result is None:
        stderr = "\n".join(run.stderr).strip()
        return f"species index {n}: the model could not be run ({first_line(stderr or 'no output', 120)})"
    out = run.result
    if out["accepted"]:
        return f"species index {n} was accepted by the model"
    if f"has {n} species" not in out["error"]:
        return f"species index {n} gives an unclear error: {first_line(out['error'], 120)}"
    return None


def check_species(m: _Model) -> CheckResult:
    spacing = nearest_neighbor_distance(m.spec.cutoff)
    problems = []
    for s in m.spec.species:
        try:
            r = m.run(Atoms([s, s], positions=[[0.0, 0.0, 0.0], [spacing, 0.0, 0.0]]))
            if not (np.isfinite(r.energy) and np.all(np.isfinite(r.forces))):
                problems.append(f"{s}: non-finite result")
        except Exception as exc:
            problems.append(f"{s}: {first_line(exc, 120)}")
    other = _unsupported_element(m.spec.species)
    try:
        m.run(Atoms([m.spec.species[0], other], positions=[[0.0, 0.0, 0.0], [spacing, 0.0, 0.0]]))
        problems.append(f"unsupported element {other} was accepted")
    except KimGnnError:
        pass
    # the model itself, called with an index beyond its species (e.g. under
    # KIM_MODEL_ELEMENTS_MAP, from the first call on), as the driver loads it,
    # in a fresh process: a model without the species guard may fail deep
    # inside torch, or take the process down with it
    n = len(m.spec.species)
    outcome = _probe_species_index(m, n, spacing)
    if outcome is not None:
        problems.append(outcome)
    detail = (f"{n} species work ({' '.join(m.spec.species)}); {other} and index {n} refused clearly"
              if not problems else "; ".join(problems))
    return CheckResult("species", not problems, detail, float(len(problems)))


#: Calls before results are compared bit for bit: TorchScript's profiling
#: executor runs the first calls unoptimised, and the optimised graph may
#: round differently (the driver sees the same).
WARMUP_CALLS = 3


def _evaluations(m: _Model, structures):
    graphs = [(m.executor.build_graphs(a), len(a), cell_volume(a)) for a in structures]

    def run_all():
        out = []
        for g, n, v in graphs:
            r = run_on_graphs(m.executor.module, g, n, v)
            out.append((r.energy, r.forces.copy(), r.energies.copy()))
        return out

    return run_all


def _difference(a, b) -> float:
    """Largest difference between two sets of results, relative to
    max(1, |value|); 0.0 when bit-identical."""
    worst = 0.0
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
            if np.array_equal(u, v, equal_nan=True):
                continue
            d = np.abs(u - v)
            worst = max(worst, float(np.nan_to_num(d, nan=np.inf).max() / _scale(u)))
    return worst


def _rounding_limit(m: _Model) -> float:
    """How far repeated results may differ: torch's parallel CPU scatter-adds
    (in backward) sum in no fixed order, so forces of larger structures can
    change in the last bits from call to call, in the driver too."""
    return m.tol["forces"] / 10.0


def _same_detail(diff: float, limit: float) -> str:
    if diff == 0.0:
        return "bit-identical"
    if diff <= limit:
        return f"identical to rounding (largest difference {diff:.1e}, limit {limit:.0e}: unordered parallel sums)"
    return f"DIFFER by up to {diff:.1e} (limit {limit:.0e})"


def check_determinism(m: _Model, structures, repeats: int = 5) -> CheckResult:
    run_all = _evaluations(m, structures)
    for _ in range(WARMUP_CALLS):
        run_all()
    first = run_all()
    diff = max(_difference(first, run_all()) for _ in range(repeats - 1))
    limit = _rounding_limit(m)
    return CheckResult("determinism", diff <= limit,
                       f"{repeats} repeated calls (after {WARMUP_CALLS} warm-up calls) {_same_detail(diff, limit)}", diff)


def check_threads(m: _Model, structures, threads: int = 4, repeats: int = 3) -> CheckResult:
    run_all = _evaluations(m, structures)
    for _ in range(WARMUP_CALLS):
        run_all()
    serial = run_all()
    results, errors = [], []

    def worker():
        try:
            for _ in range(repeats):
                results.append(run_all())
        except Exception as exc:  # a crash in a thread is a failure of the check
            errors.append(first_line(exc))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors or len(results) != threads * repeats:
        return CheckResult("thread-safety", False, f"{threads} threads x {repeats} calls failed: "
                           + (errors[0] if errors else "results missing"), float("inf"))
    diff = max(_difference(serial, r) for r in results)
    limit = _rounding_limit(m)
    return CheckResult("thread-safety", diff <= limit,
                       f"{threads} threads x {repeats} calls vs serial: {_same_detail(diff, limit)}", diff)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _heap_in_use() -> Optional[int]:
    """Bytes the C allocator has handed out and not got back (glibc's
    ``mallinfo2``: small blocks in every arena plus mmap'd large ones), or
    None where there is no glibc. torch's CPU tensors come from there, so a
    tensor kept per call shows at once, whatever free memory the process
    holds (RSS moves only once that is used up)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    mallinfo2.restype = Mallinfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


#: Calls before the memory check measures: TorchScript's profiling executor
#: and the allocator's pools settle in the first calls.
MEMORY_WARMUP_CALLS = 20


def check_memory(m: _Model, calls: int = 100) -> CheckResult:
    """Neither the C heap in use nor RSS may grow over ``calls`` calls (after
    a warm-up). The heap counter sees a leak of 10 kB per call within 100
    calls; where it is missing (no glibc) only RSS is judged, and the result
    says so."""
    import gc

    # a lone atom (with the driver's dummy): the cheapest call
    atoms = Atoms([m.spec.species[0]], positions=[[0.0, 0.0, 0.0]])
    g = m.executor.build_graphs(atoms)
    for _ in range(MEMORY_WARMUP_CALLS):
        run_on_graphs(m.executor.module, g, len(atoms))
    gc.collect()
    heap_before, rss_before = _heap_in_use(), _rss()
    for _ in range(calls):
        run_on_graphs(m.executor.module, g, len(atoms))
    gc.collect()
    heap_after, rss_after = _heap_in_use(), _rss()
    rss_growth = rss_after - rss_before
    passed = rss_growth <= MEMORY_GROWTH_LIMIT
    detail = f"RSS grew {rss_growth / 2**20:.1f} MiB (limit {MEMORY_GROWTH_LIMIT / 2**20:.0f} MiB)"
    if heap_before is None or heap_after is None:
        detail = f"over {calls} calls {detail}; heap not measured (no glibc mallinfo2 here): RSS only"
        value = float(rss_growth)
    else:
        heap_growth = heap_after - heap_before
        passed = passed and heap_growth <= MEMORY_HEAP_GROWTH_LIMIT
        detail = (f"over {calls} calls heap in use grew {heap_growth / 2**10:.0f} KiB "
                  f"(limit {MEMORY_HEAP_GROWTH_LIMIT / 2**10:.0f} KiB), {detail}")
        value = float(max(heap_growth, rss_growth))
    return CheckResult("memory", passed, detail, value)


CHECKS = ("forces", "continuity", "symmetry", "periodicity", "species", "thread-safety", "memory", "determinism")


def check_model(model, progress: Optional[Callable[[str], None]] = None, seed: int = 0,
                only: Optional[List[str]] = None, memory_calls: int = 100) -> CheckReport:
    """Run the checks on a converted model (``model.pt``, a portable model
    directory or an in-memory converted module); a failing check is a
    result, a model that cannot be loaded an error."""
    import tempfile

    start = time.time()
    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise KimGnnError(f"unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    with tempfile.TemporaryDirectory(prefix="kim-gnn-check-") as tmp:
        path, label = converted_model_file(model, tmp)
        return _check_loaded(_Model(path), label, start, seed, only, memory_calls, progress)


def _check_loaded(m, label, start, seed, only, memory_calls, progress) -> CheckReport:
    spec = m.spec
    cases = {c.name: c.atoms for c in battery(spec.species, spec.cutoff, seed)}
    alloy, small, molecule = cases["triclinic_alloy"], cases["primitive_small_cell"], cases["molecule"]
    plan = {
        "forces": lambda: check_forces(m, [("triclinic_alloy", alloy), ("molecule", molecule)]),
        "continuity": lambda: check_continuity(m),
        "symmetry": lambda: check_symmetry(m, alloy, seed),
        "periodicity": lambda: check_periodicity(m, small),
        "species": lambda: check_species(m),
        "thread-safety": lambda: check_threads(m, [small, molecule]),
        "memory": lambda: check_memory(m, memory_calls),
        "determinism": lambda: check_determinism(m, [alloy, molecule]),
    }
    report = CheckReport(model=label, species=list(spec.species), cutoff=spec.cutoff, num_layers=spec.num_layers,
                         model_dtype=spec.model_dtype)
    names = [n for n in CHECKS if not only or n in only]
    for k, name in enumerate(names):
        if progress:
            progress(f"check [{k + 1}/{len(names)}] {name}")
        t0 = time.time()
        try:
            result = plan[name]()
        except KimGnnError as exc:
            result = CheckResult(name, False, f"error: {exc}")
        except Exception as exc:  # the model failed where it must work: a failed check, said why
            result = CheckResult(name, False, f"the model raised {type(exc).__name__}: {first_line(exc)}")
        result.seconds = time.time() - t0
        report.results.append(result)
    report.seconds = time.time() - start
    return report
