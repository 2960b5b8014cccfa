#!/usr/bin/env bash
# Install what the KIM API tests (tests/core/test_kim_item_build.py) and the
# end-to-end tests (tests/kim_e2e) need on Debian 12: the KIM API 2.3 from
# Debian (libkim-api-dev: CMake configs, pkg-config module,
# kim-api-collections-management), the tools to build and install KIM items
# with it, LAMMPS with its KIM package and Open MPI, Debian's OpenKIM models
# (known-good models the LAMMPS harness is checked against) and what kimpy's
# build needs (scripts/install_kimpy.sh: pkg-config, g++, the Python headers).
#
# Safe to run again: it only calls apt-get when a package is missing, and runs
# `apt-get update` only when a missing package is unknown to the local package
# lists (or the first install attempt fails). With everything present it does
# no more than a dpkg-query. Run as root (or with passwordless sudo); it never
# prompts.
set -euo pipefail

PACKAGES=(
    libkim-api-dev   # KIM API 2.3.0 (pulls libkim-api2); /usr/share/cmake/kim-api*
    cmake            # KIM items are CMake projects
    make
    g++              # the KIM items macros use /usr/bin/c++, the compiler kim-api was built with
    pkg-config       # libkim-api.pc, used to compile small KIM API programs
    xxd              # embeds parameter files; without it CMake's hex fallback is very slow for large model.pt
    wget             # kim-api-collections-management refuses to run without wget or curl
    ca-certificates  # ... which it uses, over https, only to fetch items from openkim.org
    xz-utils         # ... and to unpack them
    lammps           # LAMMPS 2022-01-06 built with the KIM package (kim init / kim interactions)
    openmpi-bin      # mpirun for LAMMPS on 2 and 4 ranks
    openkim-models   # Debian's OpenKIM models (Stillinger-Weber Si: the LAMMPS harness's known-good model)
)

# kimpy compiles against the interpreter's headers: Debian's python3-dev when
# the interpreter is Debian's own and lacks them (an interpreter built
# elsewhere, e.g. pyenv, ships its headers).
PY=${PYTHON:-python3}
if command -v "$PY" >/dev/null 2>&1; then
    py_include=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])" 2>/dev/null || true)
    py_prefix=$("$PY" -c "import sys; print(sys.base_prefix)" 2>/dev/null || true)
    if [ -n "$py_include" ] && [ ! -f "$py_include/Python.h" ] && [ "$py_prefix" = /usr ]; then
        PACKAGES+=(python3-dev)
    fi
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_kim_stack.sh: this script needs a Debian-based system (apt-get, dpkg-query)" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "KIM stack: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_kim_stack.sh: missing ${missing[*]}; run as root (or with passwordless sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)

known_to_apt() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

updated=no
for pkg in "${missing[@]}"; do
    if ! known_to_apt "$pkg"; then
        echo "KIM stack: apt-get update ($pkg is not in the package lists)"
        "${APT[@]}" update
        updated=yes
        break
    fi
done

echo "KIM stack: installing ${missing[*]}"
if ! "${APT[@]}" install --no-install-recommends "${missing[@]}"; then
    if [ "$updated" = yes ]; then
        exit 1
    fi
    echo "KIM stack: install failed with the current package lists; apt-get update and retry"
    "${APT[@]}" update
    "${APT[@]}" install --no-install-recommends "${missing[@]}"
fi

for pkg in "${PACKAGES[@]}"; do
    if ! installed "$pkg"; then
        echo "install_kim_stack.sh: $pkg is still not installed" >&2
        exit 1
    fi
done
echo "KIM stack: KIM API $(pkg-config --modversion libkim-api), $(cmake --version | head -n 1), LAMMPS $(dpkg-query -W -f='${Version}' lammps), $(mpirun --version 2>/dev/null | head -n 1)"
