"""Build the kim_gnn op library, ``kim_gnn/lib/libkim_gnn_ops.so``.

A plain shared library linked against libtorch / libc10 only (no
libtorch_python, no Python symbols), so that a C++ process (a KIM model
driver) can ``dlopen`` it as well as Python (``torch.ops.load_library``). Its
RUNPATH points at the ``torch/lib`` it was built against ($ORIGIN-relative
and absolute).

Run by ``setup.py`` during ``pip install [-e] . --no-build-isolation`` (torch
must be importable in the build environment), or by hand::

    python csrc/build_ops.py [--force] [--verbose]

The CUDA kernels (``csrc/cuda/*.cu``) are compiled only when torch is a CUDA
build and ``nvcc`` is found (``$CUDA_HOME/bin/nvcc`` or on ``PATH``);
``TORCH_CUDA_ARCH_LIST`` picks the architectures. A library that is up to
date (same sources, same torch, same CUDA choice) is not rebuilt: the key is
kept in ``kim_gnn/lib/build-info.json``.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB_DIR = os.path.join(ROOT, "kim_gnn", "lib")


def _lib_name() -> str:
    """``kim_gnn.kernels.LIB_NAME``, the one place the library's file name is
    set, read from its source (this script runs before kim_gnn is importable)."""
    import ast

    with open(os.path.join(ROOT, "kim_gnn", "kernels.py")) as fh:
        for node in ast.parse(fh.read()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LIB_NAME" for t in node.targets):
                return ast.literal_eval(node.value)
    raise RuntimeError("kim_gnn/kernels.py sets no LIB_NAME")


LIB_NAME = _lib_name()
INFO_NAME = "build-info.json"
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


class BuildError(Exception):
    pass


def _sources(cuda: bool):
    found = []
    for sub in ("", "cpu") + (("cuda",) if cuda else ()):
        folder = os.path.join(HERE, sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".cpp", ".cu")) and (cuda or not name.endswith(".cu")):
                found.append(os.path.join(folder, name))
    return found


def _key(torch, cuda: bool) -> str:
    """What the library depends on: every source and header under csrc/,
    this script, the torch version and the CUDA choice."""
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(HERE)):
        for name in sorted(files):
            if name.endswith((".cpp", ".cu", ".h", ".cuh", ".py")):
                path = os.path.join(folder, name)
                h.update(os.path.relpath(path, HERE).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    h.update(f"torch={torch.__version__};cuda={cuda};abi={int(torch._C._GLIBCXX_USE_CXX11_ABI)}".encode())
    return h.hexdigest()


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def _why_no_cuda(torch, nvcc):
    """None when the CUDA kernels can be built, else why not."""
    if not torch.version.cuda:
        return "torch is a CPU-only build"
    if nvcc is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    try:
        out = subprocess.run([nvcc, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        release = out.split("release ")[1].split(",")[0]
    except (OSError, IndexError):
        return f"{nvcc} --version did not say its release"
    if release.split(".")[0] != torch.version.cuda.split(".")[0]:
        # the library would link another CUDA runtime than torch's
        return f"nvcc is CUDA {release} but torch was built with CUDA {torch.version.cuda}"
    return None


def _cuda_arch_flags():
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    flags = []
    for arch in archs.replace(",", ";").replace(" ", ";").split(";"):
        if not arch:
            continue
        ptx = arch.endswith("+PTX")
        num = arch.replace("+PTX", "").replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def up_to_date(lib_dir: str = LIB_DIR):
    """(True, info) when the library in lib_dir was built from these sources
    for the torch that is importable now."""
    import torch

    info_path = os.path.join(lib_dir, INFO_NAME)
    if not (os.path.isfile(os.path.join(lib_dir, LIB_NAME)) and os.path.isfile(info_path)):
        return False, None
    try:
        with open(info_path) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return False, None
    return info.get("key") == _key(torch, bool(info.get("cuda"))), info


def _run(cmd, verbose: bool):
    if verbose:
        print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{os.path.basename(cmd[0])} failed:\n{proc.stdout[-4000:]}")
    return proc.stdout


def build(lib_dir: str = LIB_DIR, force: bool = False, verbose: bool = False, cuda=None) -> dict:
    """Build (or keep) the library; returns its build info. Raises BuildError
    with a message saying why it could not be built."""
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        raise BuildError(
            f"torch is not importable in the build environment ({exc}); install torch first and build with "
            "`pip install --no-build-isolation ...`"
        ) from None
    nvcc = _nvcc()
    why_not = _why_no_cuda(torch, nvcc)
    if cuda is None:
        cuda = why_not is None
        if why_not and torch.version.cuda:
            print(f"kim-gnn: building the op library without CUDA: {why_not}", file=sys.stderr)
    elif cuda and why_not:
        raise BuildError(f"CUDA kernels asked for, but {why_not}")
    key = _key(torch, cuda)
    ok, info = up_to_date(lib_dir)
    if ok and not force and bool(info.get("cuda")) == cuda:
        info["reused"] = True
        return info

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler ({cxx!r} not found; install g++ or set CXX)")
    torch_lib = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "lib"))
    includes = []
    for path in cpp_extension.include_paths():
        includes += ["-isystem", path]
    defines = [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    if cuda:
        defines.append("-DKIM_GNN_WITH_CUDA")
        cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        includes += ["-isystem", os.path.join(cuda_home, "include")]
    cxx_flags = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-Wall", "-Wno-unused-function"] + defines + includes

    os.makedirs(lib_dir, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="kim-gnn-build-") as tmp:
        jobs = []
        for source in _sources(cuda):
            obj = os.path.join(tmp, os.path.relpath(source, HERE).replace(os.sep, "_") + ".o")
            if source.endswith(".cu"):
                cmd = [nvcc, "-c", source, "-o", obj, "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                       "--expt-relaxed-constexpr"] + defines + includes + _cuda_arch_flags()
            else:
                cmd = [cxx, "-c", source, "-o", obj] + cxx_flags
            jobs.append((cmd, obj))
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            list(pool.map(lambda job: _run(job[0], verbose), jobs))
        rel = os.path.relpath(torch_lib, os.path.realpath(lib_dir))
        libs = ["-lc10", "-ltorch", "-ltorch_cpu"]
        if cuda:
            cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
            libs += ["-lc10_cuda", "-ltorch_cuda", f"-L{os.path.join(cuda_home, 'lib64')}", "-lcudart"]
        out_tmp = os.path.join(tmp, LIB_NAME)
        _run([cxx, "-shared", "-fopenmp", "-o", out_tmp] + [o for _, o in jobs]
             + [f"-L{torch_lib}", f"-Wl,-rpath,$ORIGIN/{rel}", f"-Wl,-rpath,{torch_lib}", "-Wl,--enable-new-dtags"]
             + libs, verbose)
        final = os.path.join(lib_dir, LIB_NAME)
        shutil.copyfile(out_tmp, final + ".tmp")
        os.chmod(final + ".tmp", 0o755)
        os.replace(final + ".tmp", final)
    info = {
        "key": key,
        "library": LIB_NAME,
        "torch_version": torch.__version__,
        "cuda": cuda,
        "torch_cuda": torch.version.cuda,
        "compiler": cxx,
        "nvcc": nvcc if cuda else None,
        "seconds": round(time.time() - start, 1),
        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(lib_dir, INFO_NAME), "w") as fh:
        json.dump(info, fh, indent=2)
    info["reused"] = False
    return info


def describe(info: dict) -> str:
    where = os.path.join(LIB_DIR, LIB_NAME)
    how = "up to date, kept" if info.get("reused") else f"built in {info.get('seconds')} s"
    devices = "CPU and CUDA" if info.get("cuda") else "CPU only"
    return f"kim-gnn: op library {where} ({devices}, torch {info.get('torch_version')}): {how}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build kim_gnn/lib/libkim_gnn_ops.so")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--verbose", action="store_true", help="print the compiler commands")
    parser.add_argument("--cpu-only", action="store_true", help="do not build the CUDA kernels")
    args = parser.parse_args(argv)
    try:
        info = build(force=args.force, verbose=args.verbose, cuda=False if args.cpu_only else None)
    except BuildError as exc:
        print(f"kim-gnn: error: the op library was not built: {exc}", file=sys.stderr)
        return 2
    print(describe(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
