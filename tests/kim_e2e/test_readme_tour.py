"""The README's tour, step 4 ("Run it in LAMMPS"), as written: its command
block and its ``in.si``, in the session's KIM collection.

``kim-gnn install-driver`` is the one line not run here: the session's
``kim_collection`` fixture has built and installed the same driver with
``kim_gnn.kim_driver.install_driver`` (what that command calls), so it is not
compiled twice. The other lines run as written: ``kim-gnn convert``, then
``kim-api-collections-management install user``, then ``lmp -in in.si``
(``lmp`` being LAMMPS under whichever of its Debian names is installed).
"""

import math
import os
import re
import shlex
import shutil
import subprocess
import sys

from lammps_e2e import lammps_executable, lammps_missing_reason, unavailable

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")


def tour_lammps_step():
    """(command lines, in.si text) of the README's step 4."""
    text = open(README).read()
    start = text.index("**4. Run it in LAMMPS**")
    commands = re.compile(r"^```\n(.*?)^```", re.S | re.M).search(text, start)
    script = re.compile(r"^```text\n(.*?)^```", re.S | re.M).search(text, start)
    assert commands and script, "the README's step 4 lost its command block or its in.si"
    return [line.strip() for line in commands.group(1).splitlines() if line.strip()], script.group(1)


def test_readme_tour_runs_in_lammps(kim_collection, nequip_models, tmp_path):
    reason = lammps_missing_reason()
    if reason:
        unavailable(reason)
    lines, in_si = tour_lammps_step()
    assert lines[0] == "kim-gnn install-driver", lines
    (tmp_path / "kim-gnn-example").mkdir()
    shutil.copy(nequip_models.deployed(num_layers=2, species=("Si",)), tmp_path / "kim-gnn-example" / "deployed.pth")
    (tmp_path / "in.si").write_text(in_si)
    env = kim_collection.env
    env["OMP_NUM_THREADS"] = "1"
    output = ""
    for line in lines[1:]:
        args = shlex.split(line)
        if args[0] == "kim-gnn":
            args = [sys.executable, "-m", "kim_gnn.cli", *args[1:]]
        elif args[0] == "lmp":
            args = [lammps_executable(), *args[1:]]
        proc = subprocess.run(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=1200)
        assert proc.returncode == 0, f"{line} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
        output = proc.stdout
    assert "ERROR" not in output, output[-4000:]
    # thermo_style custom step pe press: the row of step 0 after its header
    rows = re.findall(r"^\s*Step\s+PotEng\s+Press\s*\n\s*0\s+(\S+)\s+(\S+)", output, re.M)
    assert rows, output[-4000:]
    energy, pressure = map(float, rows[0])
    assert math.isfinite(energy) and math.isfinite(pressure) and energy != 0.0, rows
