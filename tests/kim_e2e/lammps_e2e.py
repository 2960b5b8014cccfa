"""Run a KIM model in LAMMPS (Debian ``lammps``, KIM package) under ``mpirun``
and read the results back in ASE's frame, units and atom order.

Used by ``test_lammps.py`` (and ``benchmarks/bench_driver.py``). Everything
here is plain subprocess work: a LAMMPS data file written by ASE
(``ase.io.lammpsdata``; triclinic cells are rotated into LAMMPS's restricted
form, a along x and b in the xy plane), an input script with ``kim init`` /
``kim interactions``, a dump sorted by atom id, and the thermo output at full
precision. Forces and the pressure tensor are rotated back with ASE's
``Prism``.

Units: LAMMPS ``metal`` (eV, Angstrom, bar, ps). LAMMPS converts its
virial to bar with its own constant ``nktv2p`` (below), not with CODATA's
1 eV/A^3 = 1.602176634e6 bar; the two differ by 8e-8 relative, far above a
float64 comparison, so stresses are converted back with LAMMPS's number.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

def unavailable(reason: str, module_level: bool = False):
    """In a test: skip with the reason, or fail where the end-to-end stack is
    required (``KIM_GNN_E2E_REQUIRED=1``: scripts/test.sh as root, so CI;
    or ``KIM_GNN_TESTS_REQUIRED=1``: tests/skip_policy.py)."""
    import pytest

    if os.environ.get("KIM_GNN_E2E_REQUIRED") == "1" or os.environ.get("KIM_GNN_TESTS_REQUIRED") == "1":
        pytest.fail(f"end-to-end test cannot run: {reason} (KIM_GNN_E2E_REQUIRED=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


#: LAMMPS ``metal`` units: pressure [bar] = virial [eV] / volume [A^3] * NKTV2P
#: (``force->nktv2p`` in LAMMPS's update.cpp).
NKTV2P_METAL = 1.6021765e6

#: Open MPI settings for running as root in a container on a small machine:
#: more ranks than cores, no ptrace-based single copy (often forbidden in
#: containers), no ssh/rsh agent needed for a single node.
OPENMPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_mpi_yield_when_idle": "1",  # waiting ranks give their core to the others (4 ranks, 2 cores)
    "OMPI_MCA_plm_rsh_agent": "false",  # one node: no ssh/rsh is ever started (none need be installed)
    # One thread per rank: ranks x threads must not exceed the cores much,
    # or torch's intra-op threads stall each other.
    "OMP_NUM_THREADS": "1",
}

#: Seconds any one LAMMPS run may take before the test fails (a run of the
#: small structures here takes a few seconds).
TIMEOUT = 300


class LammpsError(RuntimeError):
    """LAMMPS exited with an error; ``output`` holds its log/screen tail."""

    def __init__(self, message: str, output: str = "", returncode: Optional[int] = None, log: str = ""):
        super().__init__(message + ("\n" + output[-6000:] if output else ""))
        self.output = output
        self.returncode = returncode
        self.log = log


def lammps_executable() -> Optional[str]:
    for name in ("lmp", "lmp_mpi", "lmp_serial", "lammps"):
        path = shutil.which(name)
        if path:
            return path
    return None


def mpirun_executable() -> Optional[str]:
    return shutil.which("mpirun") or shutil.which("mpiexec")


def lammps_missing_reason() -> Optional[str]:
    """Why LAMMPS runs cannot happen here, or None."""
    lmp = lammps_executable()
    if lmp is None:
        return "LAMMPS is not installed (Debian: apt-get install lammps; scripts/install_kim_stack.sh)"
    try:
        out = subprocess.run([lmp, "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{lmp} -h failed ({exc})"
    packages = out.split("Installed packages:", 1)[-1].split("List of individual style options", 1)[0]
    if "KIM" not in packages.split():
        return f"{lmp} was built without the KIM package (no 'kim init'/'kim interactions')"
    return None


def mpirun_missing_reason() -> Optional[str]:
    if mpirun_executable() is None:
        return "mpirun is not installed (Debian: apt-get install openmpi-bin; scripts/install_kim_stack.sh)"
    return None


def mpi_command(nprocs: int) -> List[str]:
    """``mpirun -np N`` with the flags this machine needs (root, oversubscribe)."""
    cmd = [mpirun_executable(), "-np", str(nprocs)]
    if "openmpi" in os.path.realpath(cmd[0]).lower() or _is_openmpi(cmd[0]):
        cmd += ["--oversubscribe"]
        if os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    return cmd


_OPENMPI: Dict[str, bool] = {}


def _is_openmpi(mpirun: str) -> bool:
    if mpirun not in _OPENMPI:
        try:
            out = subprocess.run([mpirun, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        _OPENMPI[mpirun] = "Open MPI" in out or "OpenRTE" in out
    return _OPENMPI[mpirun]


@dataclass
class LammpsRun:
    """What one LAMMPS run gave, in ASE's frame and atom order.

    ``stress`` is ASE's sign convention (eV/A^3, -pressure tensor without
    the kinetic part where velocities are zero); ``pressure_bar`` and
    ``pressure_tensor_bar`` are LAMMPS's own numbers (its frame: xx yy zz
    xy xz yz).
    """

    energy: float
    forces: np.ndarray
    energies: np.ndarray
    pressure_bar: float
    pressure_tensor_bar: np.ndarray
    stress: np.ndarray
    thermo: List[Dict[str, float]] = field(default_factory=list)
    nprocs: int = 1
    seconds: float = 0.0
    log: str = ""


def write_data(path, atoms, species: Sequence[str], velocities: bool = False):
    """LAMMPS data file of ``atoms`` (types in ``species`` order, masses);
    returns the ASE ``Prism`` that maps ASE's frame to LAMMPS's."""
    from ase.calculators.lammps import Prism
    from ase.io.lammpsdata import write_lammps_data

    prism = Prism(np.asarray(atoms.cell.array), pbc=atoms.pbc)
    with open(path, "w") as fh:
        write_lammps_data(fh, atoms, specorder=list(species), masses=True, units="metal", atom_style="atomic",
                          prismobj=prism, velocities=velocities)
    return prism


def _boundary(atoms) -> str:
    return " ".join("p" if p else "f" for p in atoms.pbc)


def input_script(model: str, species: Sequence[str], atoms, *, nve_steps: int = 0, timestep_ps: float = 0.001,
                 temperature: float = 0.0, seed: int = 4928459, thermo_every: int = 10) -> str:
    """The LAMMPS input: ``kim init``, the data file, ``kim interactions``,
    per-atom energies, a full-precision dump of forces, then ``run 0`` (or
    an NVE run of ``nve_steps`` from velocities at ``temperature``)."""
    lines = [
        f"kim init {model} metal",
        f"boundary {_boundary(atoms)}",
        "atom_modify map array",
        "read_data data.lmp",
        f"kim interactions {' '.join(species)}",
        "compute pea all pe/atom",
        "thermo_style custom step temp pe ke etotal press pxx pyy pzz pxy pxz pyz",
        "thermo_modify format float %.17g",
    ]
    if nve_steps:
        lines += [
            f"velocity all create {temperature} {seed} mom yes rot no dist gaussian",
            f"timestep {timestep_ps}",
            # rebuild the neighbor lists (and migrate atoms between ranks) every 10 steps,
            # whether or not atoms moved: the driver sees the particle set change
            "neigh_modify every 10 delay 0 check no",
            "fix nve all nve",
            f"thermo {thermo_every}",
            f"run {nve_steps}",
        ]
    else:
        lines += [
            "dump forces all custom 1 forces.dump id type fx fy fz c_pea",
            "dump_modify forces sort id format float %.17g",
            "run 0",
        ]
    return "\n".join(lines) + "\n"


def thermo_tables(log: str) -> List[Dict[str, float]]:
    """Rows of every thermo table in a LAMMPS log (header 'Step ...' to 'Loop time')."""
    rows: List[Dict[str, float]] = []
    header = None
    for line in log.splitlines():
        words = line.split()
        if words and words[0] == "Step":
            header = words
            continue
        if header is not None:
            if line.startswith("WARNING"):
                continue  # LAMMPS may warn in the middle of a thermo table
            if line.startswith("Loop time") or len(words) != len(header):
                header = None
                continue
            try:
                rows.append(dict(zip(header, map(float, words))))
            except ValueError:
                header = None
    return rows


def _read_dump(path: Path, n: int):
    lines = path.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
    columns = lines[start].split()[2:]
    data = np.array([[float(x) for x in line.split()] for line in lines[start + 1:start + 1 + n]])
    if data.shape != (n, len(columns)):
        raise LammpsError(f"dump {path} has {data.shape[0]} atoms, expected {n}")
    col = {name: k for k, name in enumerate(columns)}
    ids = data[:, col["id"]].astype(int)
    if not np.array_equal(ids, np.arange(1, n + 1)):
        raise LammpsError(f"dump {path} is not sorted by atom id 1..{n}")
    forces = data[:, [col["fx"], col["fy"], col["fz"]]]
    return forces, data[:, col["c_pea"]]


def run_lammps(atoms, model: str, species: Sequence[str], workdir, *, nprocs: int = 1, env=None,
               nve_steps: int = 0, timestep_ps: float = 0.001, temperature: float = 0.0,
               seed: int = 4928459, thermo_every: int = 10, timeout: float = TIMEOUT) -> LammpsRun:
    """Run the KIM model ``model`` on ``atoms`` in LAMMPS on ``nprocs`` MPI
    ranks (1: no mpirun) in ``workdir``; ``env``: the environment (the KIM
    collection variables, ``LD_LIBRARY_PATH``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    prism = write_data(workdir / "data.lmp", atoms, species)
    (workdir / "in.lmp").write_text(input_script(model, species, atoms, nve_steps=nve_steps, timestep_ps=timestep_ps,
                                                 temperature=temperature, seed=seed, thermo_every=thermo_every))
    run_env = dict(os.environ if env is None else env)
    run_env.update(OPENMPI_ENV)
    cmd = [lammps_executable(), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none", "-nocite"]
    if nprocs > 1:
        cmd = mpi_command(nprocs) + cmd
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LammpsError(f"LAMMPS on {nprocs} rank(s) did not finish within {timeout} s",
                          _log_text(workdir)) from None
    seconds = time.perf_counter() - start
    log = _log_text(workdir)
    if proc.returncode != 0 or "ERROR" in log:
        raise LammpsError(f"LAMMPS on {nprocs} rank(s) exited with {proc.returncode} ({' '.join(cmd)} in {workdir})",
                          proc.stdout + "\n--- log.lammps ---\n" + log, proc.returncode, log)
    thermo = thermo_tables(log)
    if not thermo:
        raise LammpsError("no thermo output in the LAMMPS log", log)
    first = thermo[0]
    tensor_bar = np.array([first[k] for k in ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")])
    xx, yy, zz, xy, xz, yz = tensor_bar
    pressure_lmp = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    stress = -prism.tensor2_to_ase(pressure_lmp) / NKTV2P_METAL
    if nve_steps:
        forces = np.full((len(atoms), 3), np.nan)
        energies = np.full(len(atoms), np.nan)
    else:
        forces_lmp, energies = _read_dump(workdir / "forces.dump", len(atoms))
        forces = prism.vector_to_ase(forces_lmp)
    return LammpsRun(
        energy=first["PotEng"], forces=forces, energies=energies, pressure_bar=first["Press"],
        pressure_tensor_bar=tensor_bar, stress=stress, thermo=thermo, nprocs=nprocs, seconds=seconds, log=log,
    )


def _log_text(workdir: Path) -> str:
    log = workdir / "log.lammps"
    return log.read_text(errors="replace") if log.exists() else ""


def kim_error_lines(log: str) -> List[str]:
    """The ``ERROR`` lines of a LAMMPS log (for tests of failing models)."""
    return [line for line in log.splitlines() if re.search(r"\bERROR\b", line)]
