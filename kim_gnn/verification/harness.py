"""Equivalence harness: converted model == original periodic model.

The original side runs the architecture's own model on the periodic
structure (its own cell, periodic edges and shifts; see each adapter's
``reference.py``). The converted side runs through the executor exactly as
the TorchML driver runs it, in a fresh Python process with torch's default
settings (default dtype float32, as in the C++ driver) in which the
architecture packages and e3nn cannot be imported.

One module (about 470 lines) on purpose: the comparison of one structure
(original side, converted side in a fresh process, per-quantity errors against
one tolerance table) is one pipeline read top to bottom; its parts that stand
alone are already separate modules in this package (tolerances,
finite_difference, fresh, structures, plots, atomic_virials_reference).
"""

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..adapters import detect_adapter
from ..errors import KimGnnError, first_line
from ..executor import converted_model_file, read_spec
from ..graphs import check_structure, species_indices
from .atomic_virials_reference import check_case_atomic_virials
from .finite_difference import richardson_derivative
from .fresh import run_fresh
from .structures import Case, Expected, battery, property_cases, structure_fingerprint
from .tolerances import FD_NOISE, FD_STRAIN, TOLERANCES, tolerances_for  # noqa: F401 (TOLERANCES: re-exported)


@dataclass
class CaseReport:
    name: str
    n_atoms: int
    passed: bool
    energy_original: Optional[float] = None
    energy_converted: Optional[float] = None
    energy_error_per_atom: Optional[float] = None
    max_force_error: Optional[float] = None
    max_stress_error: Optional[float] = None
    max_atomic_energy_error: Optional[float] = None
    #: The stress limit this structure was held to (eV/A^3), and whether it is
    #: the finite-difference one (the original gives no stress of its own).
    stress_limit: Optional[float] = None
    stress_limit_finite_difference: bool = False
    #: Largest per-atom virial difference (eV, kim_gnn/verification/atomic_virials_reference.py) and its limit.
    max_atomic_virial_error: Optional[float] = None
    atomic_virial_limit: Optional[float] = None
    n_particles: Optional[int] = None
    n_edges: Optional[List[int]] = None
    #: ``structures.structure_fingerprint`` of the structure both sides evaluated
    #: (the same bytes in every run: the battery is seeded).
    structure_sha256: Optional[str] = None
    #: First structure only: how far each side's result moved when that side
    #: was called on it again after every other structure ({'original' |
    #: 'converted': {'energy_per_atom': eV, 'forces': eV/A}}; 0.0: the same bits).
    repeat_differences: Optional[Dict[str, Dict[str, float]]] = None
    notes: str = ""
    error: Optional[str] = None


@dataclass
class VerificationReport:
    original: str
    converted: str
    architecture: str
    model_dtype: str
    tolerances: Dict[str, float]
    cases: List[CaseReport] = field(default_factory=list)
    seconds: float = 0.0
    #: Versions (kim-gnn, torch, the architecture package, Python), when and
    #: on which machine the report was made.
    environment: Dict[str, object] = field(default_factory=dict)
    #: Per structure, the original and converted per-atom energies and forces
    #: (for plots; not written to JSON).
    samples: List[dict] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> List[CaseReport]:
        return [c for c in self.cases if not c.passed]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples", None)
        d["passed"] = self.passed
        d["units"] = dict(UNITS)
        return d

    def write_json(self, path) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    def summary(self) -> str:
        def fmt(x):
            return "-" if x is None else f"{x:.2e}"

        lines = [
            f"original:  {self.original} ({self.architecture})",
            f"converted: {self.converted} (model dtype {self.model_dtype})",
            "tolerances: " + ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items())
            + " (energies relative to max(1, |E|/atom); forces and stress relative to max(1, largest component))",
            f"{'structure':<22} {'atoms':>5} {'particles':>9} {'|dE|/atom':>10} {'max|dF|':>10} {'max|dS|':>10} {'max|de_i|':>10}  result",
            f"{'':<22} {'':>5} {'':>9} {'eV':>10} {'eV/A':>10} {'eV/A^3':>10} {'eV':>10}",
        ]
        for c in self.cases:
            result = "ok" if c.passed else ("ERROR: " + c.error if c.error else "FAIL")
            if c.max_atomic_virial_error is not None:
                result += f" (max|dW_i| {c.max_atomic_virial_error:.2e} eV)"
            if c.stress_limit_finite_difference and c.stress_limit is not None:
                result += f" (stress limit {c.stress_limit:.2e}: the original's stress by finite differences)"
            lines.append(
                f"{c.name:<22} {c.n_atoms:>5} {c.n_particles if c.n_particles is not None else '-':>9} "
                f"{fmt(c.energy_error_per_atom):>10} {fmt(c.max_force_error):>10} {fmt(c.max_stress_error):>10} "
                f"{fmt(c.max_atomic_energy_error):>10}  {result}"
            )
            lines += [f"{'':<22} {part.strip()}" for part in c.notes.split(";") if "not reproducible" in part]
        n_fail = len(self.failures)
        lines.append(
            f"{'PASSED' if self.passed else 'FAILED'}: {len(self.cases) - n_fail} passed, {n_fail} failed "
            f"({self.seconds:.1f} s)"
        )
        return "\n".join(lines)


#: Units of the report's numbers (ASE's: eV, Angstrom).
UNITS = {
    "energy": "eV", "energy_error_per_atom": "eV/atom", "max_force_error": "eV/A",
    "max_stress_error": "eV/A^3", "max_atomic_energy_error": "eV", "seconds": "s",
    "max_atomic_virial_error": "eV",
}


def report_environment(adapter, spec) -> Dict[str, object]:
    """What produced a report: versions, time, machine."""
    import datetime
    import platform

    import torch

    from .._version import __version__

    return {
        "kim_gnn_version": __version__,
        "torch_version": torch.__version__,
        "architecture": adapter.name,
        "architecture_package": adapter.package,
        "architecture_package_version": adapter.package_version(),
        "model_built_with": spec.architecture_version,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def _sample(case: Case, expected: "Expected", got: dict) -> dict:
    return {
        "name": case.name,
        "n_atoms": len(case.atoms),
        "energy": (float(expected.energy), float(got["energy"])),
        "energies": (expected.energies, got["energies"]),
        "forces": (np.asarray(expected.forces), np.asarray(got["forces"])),
    }


def _load_user_structures(structures, spec) -> List[Case]:
    """Read user structures and refuse, up front and by name, any that no
    model can be evaluated on (empty, NaN coordinates, unknown species)."""
    import ase.io
    from ase import Atoms

    cases = []
    for k, item in enumerate(structures):
        if isinstance(item, Atoms):
            cases.append(Case(f"user_{k}", item.copy()))
            continue
        path = os.fspath(item)
        if not os.path.isfile(path):
            raise KimGnnError(f"no such structure file: {path}")
        try:
            frames = ase.io.read(path, index=":")
        except Exception as exc:
            raise KimGnnError(f"cannot read structures from {path} ({first_line(exc, 160)})") from None
        for f, atoms in enumerate(frames):
            label = os.path.basename(path) + (f"[{f}]" if len(frames) > 1 else "")
            cases.append(Case(label, atoms))
    for case in cases:
        try:
            check_structure(case.atoms, spec.influence_distance, spec.cutoff)
            species_indices(case.atoms.get_chemical_symbols(), spec.species)
        except KimGnnError as exc:
            raise KimGnnError(f"structure {case.name}: {exc}") from None
    return cases


def run_converted_in_fresh_process(model_file: str, jobs: List[dict], progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Evaluate ``jobs`` with the converted model in a new interpreter with
    default torch settings, in which every registered adapter's
    ``import_names`` are unimportable; returns one dict (or {'error': ...})
    per job."""
    from ..adapters import blocked_import_names

    run = run_fresh("evaluate", {"model": model_file, "jobs": jobs}, blocked=blocked_import_names(), progress=progress)
    if run.returncode != 0 or run.result is None:
        raise KimGnnError("the fresh process running the converted model failed:\n" + "\n".join(run.stderr[-20:]))
    return run.result


def _atoms_job(case: Case) -> dict:
    a = case.atoms
    return {
        "name": case.name,
        "numbers": np.asarray(a.numbers),
        "positions": np.asarray(a.positions, dtype=np.float64),
        "cell": np.asarray(a.cell.array, dtype=np.float64),
        "pbc": np.asarray(a.pbc, dtype=bool),
        "skin": case.skin,
        "virials": True,
    }


def finite_difference_stress(evaluate: Callable, atoms, step: float) -> np.ndarray:
    """Stress (ASE sign, eV/A^3) as (1/V) dE/d(strain), from the energies of
    symmetrically strained copies of ``atoms``: central differences at
    ``step`` and ``step / 2``, Richardson-extrapolated. For an original model
    that gives no stress itself (e.g. NequIP's ForceOutput)."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    volume = abs(np.linalg.det(cell))

    def energy(strain):
        a = atoms.copy()
        deform = np.eye(3) + strain
        a.set_cell(cell @ deform, scale_atoms=False)
        a.positions = np.asarray(atoms.positions) @ deform
        return float(evaluate(a).energy)

    stress = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            unit = np.zeros((3, 3))
            unit[i, j] += 0.5
            unit[j, i] += 0.5
            stress[i, j] = stress[j, i] = richardson_derivative(lambda h: energy(h * unit), step) / volume
    return stress


def _compare(case: Case, expected: Expected, got: dict, tol: Dict[str, float]) -> CaseReport:
    n = len(case.atoms)
    report = CaseReport(name=case.name, n_atoms=n, passed=False, notes=case.notes)
    report.n_particles = int(got["num_particles"])
    report.n_edges = [int(e) for e in got["num_edges"]]
    # The contract: element 0 is per-particle energies [N], zero on
    # non-contributing particles. Anything else fails (never skipped).
    shape = tuple(got.get("energies_shape", ()))
    if shape != (report.n_particles,):
        report.error = (
            f"converted model: its output has shape {list(shape)}, not per-particle energies "
            f"[{report.n_particles}] (the driver copies N energies from it)"
        )
        return report
    if got.get("padding_energy", 0.0) != 0.0:
        report.error = (
            f"converted model: non-contributing particles have energies (up to {got['padding_energy']:.3g} eV); "
            "the contract requires zeros there"
        )
        return report
    report.energy_original = float(expected.energy)
    report.energy_converted = float(got["energy"])
    de = abs(got["energy"] - expected.energy) / n
    report.energy_error_per_atom = float(de)
    ok = de <= tol["energy_per_atom"] * max(1.0, abs(expected.energy) / n)

    forces_scale = max(1.0, float(np.abs(expected.forces).max(initial=0.0)))
    report.max_force_error = float(np.abs(got["forces"] - expected.forces).max(initial=0.0))
    ok &= report.max_force_error <= tol["forces"] * forces_scale

    if expected.energies is not None:
        energies = got["energies"]
        if energies is None or np.shape(energies) != (n,):
            report.error = "converted model: gives no per-atom energies"
            return report
        err = np.abs(np.asarray(energies) - expected.energies)
        report.max_atomic_energy_error = float(np.nan if not np.all(np.isfinite(err)) else err.max(initial=0.0))
        ok &= report.max_atomic_energy_error <= tol["atomic_energy"] * max(1.0, float(np.abs(expected.energies).max(initial=0.0)))

    if expected.stress is not None:
        if got["stress"] is None:
            report.error = "converted model: no stress for a periodic structure"
            return report
        report.max_stress_error = float(np.abs(got["stress"] - expected.stress).max())
        limit = expected.stress_tolerance
        report.stress_limit_finite_difference = limit is not None
        if limit is None:
            limit = tol["stress"] * max(1.0, float(np.abs(expected.stress).max()))
        report.stress_limit = float(limit)
        ok &= report.max_stress_error <= limit
    report.passed = bool(ok and np.all(np.isfinite(got["forces"])) and np.isfinite(got["energy"]))
    return report


def _structure_changed(case: Case, fingerprint: str, reference_fingerprint: str, got: dict) -> Optional[str]:
    """Why the two sides did not evaluate the structure the battery built
    (None when they did): the fresh process rebuilt other bytes, or the
    structure (or its reference) was changed in place while the original ran."""
    if structure_fingerprint(case.atoms) != fingerprint or structure_fingerprint(case.reference) != reference_fingerprint:
        return "harness: the structure was changed in place while the original model was evaluated"
    if got.get("structure_sha256") != fingerprint:
        return (f"harness: the fresh process evaluated another structure (fingerprint {got.get('structure_sha256')} "
                f"instead of {fingerprint})")
    return None


def _moved_atoms(first, again, limit: float, most: int = 8) -> str:
    """The atoms (indices, at most ``most``) whose values moved by more than
    ``limit`` between two calls, e.g. ``3, 17 (of 16)``: where a call that
    is not reproducible went wrong (one edge's message: its two ends)."""
    first, again = np.asarray(first), np.asarray(again)
    if first.shape != again.shape or first.size == 0:
        return "?"
    moved = np.abs(again - first).reshape(len(first), -1).max(axis=1) > limit
    atoms = np.flatnonzero(moved)
    text = ", ".join(str(i) for i in atoms[:most]) + (", ..." if len(atoms) > most else "")
    return f"{text or 'none'} (of {len(first)})"


def _repeat_differences(report: CaseReport, expected: Expected, original_again, got: dict, tol: Dict[str, float]) -> None:
    """Each side called again on the first structure (warm, after every
    other structure): the largest change of energy per atom and forces,
    in the report; a change beyond a tenth of the tolerance (far above
    rounding) is noted with the side that made it and the atoms whose
    per-atom energies and forces moved. Pass/fail stays the comparison's."""
    n = report.n_atoms
    # side -> ((energy, energies, forces) of the first call, the same called again)
    again = {}
    if original_again is not None:
        again["original"] = ((expected.energy, expected.energies, expected.forces),
                             (original_again.energy, original_again.energies, original_again.forces))
    if got.get("repeat") is not None:
        repeat = got["repeat"]
        again["converted"] = ((got["energy"], got["energies"], got["forces"]),
                              (repeat["energy"], repeat.get("energies"), repeat["forces"]))
    report.repeat_differences = {}
    for side, ((first_energy, first_energies, first_forces), (energy, energies, forces)) in again.items():
        d = {"energy_per_atom": float(abs(energy - first_energy) / n),
             "forces": float(np.abs(np.asarray(forces) - np.asarray(first_forces)).max(initial=0.0))}
        report.repeat_differences[side] = d
        if d["energy_per_atom"] > tol["energy_per_atom"] / 10 or d["forces"] > tol["forces"] / 10:
            where = f"forces moved on atoms {_moved_atoms(first_forces, forces, tol['forces'] / 100)}"
            if first_energies is not None and energies is not None:
                where += (f", per-atom energies on atoms "
                          f"{_moved_atoms(first_energies, energies, tol['energy_per_atom'] / 100)}")
            report.notes = "; ".join(filter(None, [report.notes, (
                f"the {side} model is not reproducible here: called again it gave |dE|/atom "
                f"{d['energy_per_atom']:.2e} eV, max|dF| {d['forces']:.2e} eV/A ({where})")]))


def _original_with_stress(reference_model, atoms, model_dtype: str, tol: Dict[str, float]):
    """The original's result, with a stress wherever the structure has one:
    by finite differences of the original's energy if the original gives
    none. Returns (result, stress tolerance or None for the default)."""
    r = reference_model.evaluate(atoms)
    if r.stress is not None or not np.all(atoms.pbc):
        return r, None
    step = FD_STRAIN[model_dtype]
    r.stress = finite_difference_stress(reference_model.evaluate, atoms, step)
    # The finite differences' own error grows with the model's rounding error.
    noise = FD_NOISE[model_dtype] * max(1.0, abs(r.energy)) / step / abs(np.linalg.det(atoms.cell.array))
    return r, max(tol["stress"] * max(1.0, float(np.abs(r.stress).max())), 10.0 * noise)


def verify(
    original,
    converted,
    structures: Optional[Sequence] = None,
    properties: bool = True,
    include_builtin: Optional[bool] = None,
    progress: Optional[Callable[[str], None]] = None,
    seed: int = 0,
) -> VerificationReport:
    """Compare a converted model with the original periodic model.

    ``original``: the file the conversion started from (e.g. ``deployed.pth``,
    ``my_mace.model``), or the in-memory MACE module.
    ``converted``: a converted ``model.pt``, a KIM portable model directory,
    or an in-memory converted module. ``structures``: ASE ``Atoms`` or files
    ASE reads; without them the built-in battery runs, and ``properties``
    adds rotation, translation, permutation, supercell and padding checks.
    """
    start = time.time()
    if isinstance(original, os.PathLike):
        original = os.fspath(original)
    original_label = original if isinstance(original, str) else f"<in-memory {type(original).__name__}>"
    adapter = detect_adapter(original)

    with tempfile.TemporaryDirectory(prefix="kim-gnn-converted-") as tmp:
        model_file, converted_label = converted_model_file(converted, tmp)
        spec = read_spec(model_file)
        if spec.architecture and spec.architecture != adapter.name:
            raise KimGnnError(
                f"the converted model is a {spec.architecture} model but the original is a {adapter.name} model"
            )
        # The converted model's spec says how it was converted (e.g. which MACE head).
        reference_model = adapter.original(original, spec)
        tol = tolerances_for(spec.model_dtype)

        cases: List[Case] = []
        if include_builtin is None:
            include_builtin = structures is None
        if include_builtin:
            cases += battery(spec.species, spec.cutoff, seed)
            if properties:
                cases += property_cases(spec.species, spec.cutoff, seed)
        if structures:
            cases += _load_user_structures(structures, spec)
        if not cases:
            raise KimGnnError("nothing to verify: no structures")

        report = VerificationReport(
            original=original_label, converted=converted_label, architecture=adapter.name,
            model_dtype=spec.model_dtype, tolerances=tol, environment=report_environment(adapter, spec),
        )

        # What each side must evaluate, to the last bit: a structure changed on
        # the way (mutated in place, rebuilt differently in the fresh process)
        # is an error of the harness, never a small difference.
        fingerprints = [structure_fingerprint(c.atoms) for c in cases]
        reference_fingerprints = [structure_fingerprint(c.reference) for c in cases]

        # Original side, in this process (no kim_gnn staged code involved).
        expectations: Dict[int, Optional[Expected]] = {}
        errors: Dict[int, str] = {}
        reference_cache: Dict[str, object] = {}
        for k, case in enumerate(cases):
            if progress:
                progress(f"original  [{k + 1}/{len(cases)}] {case.name}")
            try:
                # by content: the property checks' reference structures are copies of battery structures
                key = reference_fingerprints[k]
                if key not in reference_cache:
                    reference_cache[key] = _original_with_stress(reference_model, case.reference, spec.model_dtype, tol)
                r, stress_tolerance = reference_cache[key]
                e = Expected(r.energy, r.energies, r.forces, r.stress)
                expectations[k] = case.map_result(e) if case.map_result else e
                if stress_tolerance is not None:
                    expectations[k].stress_tolerance = stress_tolerance
                    case.notes = "; ".join(filter(None, [case.notes, "original stress by finite differences"]))
            except KimGnnError as exc:
                errors[k] = f"original model: {exc}"

        # The first structure once more on the original, last (warm): see _repeat_differences.
        repeat_original = None
        if 0 in expectations and cases[0].map_result is None:
            try:
                repeat_original = reference_model.evaluate(cases[0].reference)
            except KimGnnError as exc:
                errors[0] = f"original model: called again: {exc}"

        # Converted side, in a fresh process.
        wrapped = None if progress is None else (lambda msg: progress("converted " + msg))
        results = run_converted_in_fresh_process(model_file, [_atoms_job(c) for c in cases], wrapped)

    for k, (case, got) in enumerate(zip(cases, results)):
        if k not in errors and "error" not in got:
            problem = _structure_changed(case, fingerprints[k], reference_fingerprints[k], got)
            if problem:
                errors[k] = problem
        if k in errors or "error" in got:
            report.cases.append(CaseReport(
                name=case.name, n_atoms=len(case.atoms), passed=False, notes=case.notes,
                error=errors.get(k) or f"converted model: {got['error']}",
            ))
            continue
        report.cases.append(_compare(case, expectations[k], got, tol))
        report.cases[-1].structure_sha256 = fingerprints[k]
        if k == 0:
            _repeat_differences(report.cases[-1], expectations[0], repeat_original, got, tol)
        check_case_atomic_virials(report.cases[-1], reference_model, case.atoms, got, spec.model_dtype)
        report.samples.append(_sample(case, expectations[k], got))
    report.seconds = time.time() - start
    return report
