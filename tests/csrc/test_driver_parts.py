"""The driver's parts that need neither the KIM API nor torch
(csrc/driver/configuration.hpp, model_inputs.hpp, torch_errors.hpp,
virial.hpp, contract_facts.hpp), compiled on their own with a small main
(about 3 s, as tests/csrc/test_driver_graph_builder.py does for
staged_graphs.hpp) and driven through stdin/argv.

The parts that need them (the creation steps, the model runner, the
compute routine) are tested through the real KIM API in
tests/kim_e2e/test_driver_errors.py and test_particle_virial.py."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from kim_gnn import contract
from kim_gnn.kim_driver import driver_source_dir

HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "configuration.hpp"
#include "contract_facts.hpp"
#include "model_inputs.hpp"
#include "torch_errors.hpp"
#include "virial.hpp"

using namespace kim_gnn;

// iostreams do not read "nan" / "inf": strtod does
static double Read(std::istream & in)
{
  std::string word;
  in >> word;
  return std::strtod(word.c_str(), nullptr);
}

static std::string Stdin()
{
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

int main(int argc, char ** argv)
{
  std::string const command = argc > 1 ? argv[1] : "";
  std::printf("%s", "");
  if (command == "param")
  {
    Parameters p;
    std::string const error = ParseParamFile(Stdin(), &p);
    if (!error.empty()) { std::printf("error: %s\n", error.c_str()); return 0; }
    std::printf("elements:");
    for (std::string const & e : p.elements) std::printf(" %s", e.c_str());
    std::printf("\ncutoff: %.17g\nlayers: %d\nmodel: %s\nforces: %d\ninputs: %d\n", p.cutoff, p.numLayers,
                p.modelFileName.c_str(), p.returnsForces ? 1 : 0, p.numInputs);
  }
  else if (command == "files")  // files MODEL basename...
  {
    std::vector<std::string> names(argv + 3, argv + argc);
    std::string param;
    std::string error = FindParamFile(names, &param);
    if (error.empty()) error = CheckModelFileListed(names, argv[2]);
    std::printf("%s\n", error.empty() ? ("ok " + param).c_str() : ("error: " + error).c_str());
  }
  else if (command == "device")
  {
    DeviceKind const k = ClassifyDevice(EnvironmentValue("KIM_MODEL_EXECUTION_DEVICE"));
    std::printf("%s\n", k == DeviceKind::kCpu ? "cpu" : k == DeviceKind::kCuda ? "cuda" : "unsupported");
  }
  else if (command == "timing")
  {
    Timing const t = TimingFromEnvironment();
    std::printf("%d [%s]\n", t.enabled ? 1 : 0, t.file.c_str());
  }
  else if (command == "ops")  // ops BUILT_IN
  {
    std::string loaded, warning;
    std::string const error = LoadOpsLibrary(argv[2], &loaded, &warning);
    std::printf("error [%s]\nloaded [%s]\nwarning [%s]\n", error.c_str(), loaded.c_str(), warning.c_str());
  }
  else if (command == "torch-message")
    std::printf("%s\n", TorchMessageText(Stdin()).c_str());
  else if (command == "ops-hint")
    std::printf("[%s]\n", OpsHint(Stdin()).c_str());
  else if (command == "inputs")  // n, species, coords, contributing, numAtomicNumbers, atomicNumbers, elements...
  {
    std::istringstream in(Stdin());
    int n, numElements;
    in >> n >> numElements;
    std::vector<std::string> elements(numElements);
    for (std::string & e : elements) in >> e;
    std::vector<int> codes(n), contributing(n);
    std::vector<double> x(3 * n);
    for (int & c : codes) in >> c;
    for (double & v : x) v = Read(in);
    for (int & c : contributing) in >> c;
    int numZ;
    in >> numZ;
    std::vector<std::int64_t> z(numZ);
    for (std::int64_t & v : z) in >> v;
    std::string const error = CheckParticles(n, codes.data(), x.data(), elements);
    if (!error.empty()) { std::printf("error: %s\n", error.c_str()); return 0; }
    ModelArrays a;
    for (int repeat = 0; repeat < 2; ++repeat) a.Fill(n, x.data(), codes.data(), contributing.data(), z);
    std::printf("%d\n", a.m);
    for (int i = 0; i < a.m; ++i)
      std::printf("%lld %lld %.17g %.17g %.17g\n", (long long) a.species[i], (long long) a.contributions[i],
                  a.coordinates[3 * i], a.coordinates[3 * i + 1], a.coordinates[3 * i + 2]);
  }
  else if (command == "fold")  // n m lists; per list: E, index (2E), vectors (3E), gradients (3E)
  {
    std::istringstream in(Stdin());
    int n, m, lists;
    in >> n >> m >> lists;
    std::vector<double> w(6 * n, 0.0);
    for (int j = 0; j < lists; ++j)
    {
      long long e;
      in >> e;
      std::vector<std::int64_t> index(2 * e);
      std::vector<double> r(3 * e), g(3 * e);
      for (std::int64_t & v : index) in >> v;
      for (double & v : r) v = Read(in);
      for (double & v : g) v = Read(in);
      std::string const error = FoldEdgeVirials(n, m, e, index.data(), r.data(), g.data(), w.data());
      if (!error.empty()) { std::printf("error: %s\n", error.c_str()); return 0; }
    }
    for (double v : w) std::printf("%.17g\n", v);
  }
  else if (command == "global")  // m, coordinates, forces
  {
    std::istringstream in(Stdin());
    int m;
    in >> m;
    std::vector<double> x(3 * m), f(3 * m);
    for (double & v : x) v = Read(in);
    for (double & v : f) v = Read(in);
    double v[6];
    GlobalVirial(m, x.data(), f.data(), v);
    for (double c : v) std::printf("%.17g\n", c);
  }
  else if (command == "sum-check")  // n, particle virials (6n), virial (6), tolerance
  {
    std::istringstream in(Stdin());
    int n;
    in >> n;
    std::vector<double> w(6 * n), v(6);
    for (double & x : w) x = Read(in);
    for (double & x : v) x = Read(in);
    double const tolerance = Read(in);
    std::string const error = CheckParticleVirialSum(n, w.data(), v.data(), tolerance);
    std::printf("%s\n", error.empty() ? "ok" : ("error: " + error).c_str());
  }
  else
    return 2;
  return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler (c++/g++) is installed")
    root = tmp_path_factory.mktemp("driver-parts")
    (root / "harness.cpp").write_text(HARNESS)
    exe = root / "harness"
    proc = subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-pedantic", f"-I{driver_source_dir()}",
                           "harness.cpp", "-o", str(exe), "-ldl"], cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout

    def run(*args, stdin="", env=None):
        full = {k: v for k, v in os.environ.items()
                if k not in ("KIM_MODEL_EXECUTION_DEVICE", "KIM_GNN_DRIVER_TIMING", "KIM_GNN_OPS_LIBRARY")}
        full.update(env or {})
        proc = subprocess.run([str(exe), *map(str, args)], input=stdin, stdout=subprocess.PIPE, text=True, env=full,
                              timeout=60)
        assert proc.returncode == 0, proc
        return proc.stdout

    return run


# --- file.param ------------------------------------------------------------------

def _param(**overrides):
    spec = contract.StagedModelSpec(species=["Si", "C"], cutoff=3.5, num_layers=2)
    text = contract.render_param_file(spec)
    for old, new in overrides.items():
        assert old in text, (old, text)
        text = text.replace(old, new)
    return text


def test_param_file_as_kim_gnn_writes_it(harness):
    out = harness("param", stdin=_param())
    assert out.splitlines() == ["elements: Si C", "cutoff: 3.5", "layers: 2", f"model: {contract.MODEL_FILE_NAME}",
                                "forces: 0", "inputs: 5"]
    parsed = contract.parse_param_file(_param())  # the Python reader agrees
    assert (parsed["species"], parsed["cutoff"], parsed["num_layers"], parsed["num_inputs"]) == (["Si", "C"], 3.5, 2, 5)


@pytest.mark.parametrize("text,message", [
    ("2\nSi C\nGraph\n", "malformed .param file: expected at least 8 values (number of elements, elements, "
                         "preprocessing, cutoff, layers, model file, returns forces, number of inputs), found 3"),
    ("x\nSi\nGraph\n3.0\n1\nm.pt\nFalse\n4\n", "malformed .param file: a number could not be read"),
    ("1x\nSi\nGraph\n3.0\n1\nm.pt\nFalse\n4\n", "malformed .param file: number of elements '1x' is not a positive integer"),
    ("0\nSi\nGraph\n3.0\n1\nm.pt\nFalse\n4\n", "malformed .param file: number of elements '0' is not a positive integer"),
    ("2\nSi\nGraph\n3.0\n1\nm.pt\nFalse\n4\n", ".param file lists 1 elements but says 2"),
    ("1\nSi\nDescriptor\n3.0\n1\nm.pt\nFalse\n4\n",
     ".param file preprocessing is 'Descriptor'; this driver runs graph models only ('Graph')"),
    ("1\nSi\nGraph\n-3.0\n1\nm.pt\nFalse\n4\n", ".param file cutoff '-3.0' is not a positive number"),
    ("1\nSi\nGraph\ninf\n1\nm.pt\nFalse\n4\n", ".param file cutoff 'inf' is not a positive number"),
    ("1\nSi\nGraph\n3.0A\n1\nm.pt\nFalse\n4\n", ".param file cutoff '3.0A' is not a positive number"),
    ("1\nSi\nGraph\nabc\n1\nm.pt\nFalse\n4\n", "malformed .param file: a number could not be read"),
    ("1\nSi\nGraph\n3.0\n0\nm.pt\nFalse\n3\n", ".param file number of layers '0' is not a positive integer"),
    ("1\nSi\nGraph\n3.0\n1\nm.pt\nyes\n4\n", ".param file 'returns forces' is 'yes', expected True or False"),
    ("1\nSi\nGraph\n3.0\n2\nm.pt\nFalse\n4\n",
     ".param file says 4 model inputs; a graph model of 2 layers takes 5 (species, coordinates, the layers' edge "
     "lists, contributions)"),
])
def test_param_file_errors(harness, text, message):
    assert harness("param", stdin=text).strip() == f"error: {message}"


def test_param_file_comments_and_blank_lines_are_skipped(harness):
    text = "# comment\n\n 1 \n  Si \n# c\nGraph\n3.0\n1\n  m.pt  \nTrue\n4\n"
    assert harness("param", stdin=text).splitlines()[:5] == ["elements: Si", "cutoff: 3", "layers: 1", "model: m.pt",
                                                             "forces: 1"]


@pytest.mark.parametrize("names,model,expected", [
    (["file.param", "model.pt"], "model.pt", "ok file.param"),
    (["model.pt"], "model.pt", "error: the model has no .param file"),
    (["a.param", "b.param", "model.pt"], "model.pt", "error: the model has more than one .param file"),
    (["file.param", "model.pt"], "other.pt",
     "error: the .param file names the model file 'other.pt', which is not one of the model's parameter files"),
    ([".param", "model.pt"], "model.pt", "error: the model has no .param file"),  # a suffix needs a name
])
def test_parameter_file_list(harness, names, model, expected):
    assert harness("files", model, *names).strip() == expected


# --- environment ---------------------------------------------------------------

@pytest.mark.parametrize("value,kind", [(None, "cpu"), ("", "cpu"), (" cpu ", "cpu"), ("cuda", "cuda"),
                                        ("cuda:1", "cuda"), ("cudax", "cuda"), ("tpu", "unsupported"),
                                        ("CPU", "unsupported")])
def test_execution_device_classes(harness, value, kind):
    env = {} if value is None else {"KIM_MODEL_EXECUTION_DEVICE": value}
    assert harness("device", env=env).strip() == kind


@pytest.mark.parametrize("value,expected", [(None, "0 []"), ("", "0 []"), ("0", "0 []"), ("1", "1 []"),
                                            (" /tmp/t.jsonl ", "1 [/tmp/t.jsonl]")])
def test_timing_setting(harness, value, expected):
    env = {} if value is None else {"KIM_GNN_DRIVER_TIMING": value}
    assert harness("timing", env=env).strip() == expected


def test_ops_library_choice(harness, tmp_path):
    broken = tmp_path / "libbroken.so"
    broken.write_text("not a shared library\n")
    missing = tmp_path / "libmissing.so"
    # nothing named: nothing loaded
    assert harness("ops", "").splitlines() == ["error []", "loaded []", "warning []"]
    # the built-in library is gone: silently none (it was removed after the install)
    assert harness("ops", missing).splitlines() == ["error []", "loaded []", "warning []"]
    # the built-in library is there but broken: a warning, no error
    out = harness("ops", broken).splitlines()
    assert out[0] == "error []" and out[1] == "loaded []"
    assert out[2].startswith(f"warning [cannot load the kim-gnn op library {broken} (")
    # named by the environment: an error, whether missing or broken
    for path in (missing, broken):
        out = harness("ops", "", env={"KIM_GNN_OPS_LIBRARY": str(path)}).splitlines()
        assert out[0].startswith(f"error [cannot load the kim-gnn op library {path} (")
        assert out[0].endswith(" named by KIM_GNN_OPS_LIBRARY]")
    # the environment's empty value means none, over the built-in one
    assert harness("ops", broken, env={"KIM_GNN_OPS_LIBRARY": ""}).splitlines() == ["error []", "loaded []",
                                                                                      "warning []"]
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6",
                             "/usr/lib/x86_64-linux-gnu/libm.so.6") if os.path.exists(p)), None)
    if libc:
        assert harness("ops", libc).splitlines()[1] == f"loaded [{libc}]"


# --- torch error texts -------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript\n"
     "  File x\nRuntimeError: ValueError: bad species 7\n", "bad species 7"),
    ("Traceback\nbuiltins.ValueError: wrong shape\nmore\n", "wrong shape"),
    ("something\nRuntimeError: it broke\n", "it broke"),
    ("first line\n\n second line \nthird\nfourth\n", "first line | second line | third"),
    ("The autograd engine was called while holding the GIL. If you are using the C++ API ...",
     'the autograd engine was called while holding Python\'s GIL: in a Python process that imported torch, create '
     'the calculator with KIM(name, options={"release_GIL": True})'),
])
def test_torch_message_text(harness, text, expected):
    assert harness("torch-message", stdin=text).rstrip("\n") == expected


def test_ops_hint(harness):
    assert harness("ops-hint", stdin="some other error").strip() == "[]"
    for text in ("Unknown builtin op: kim_gnn::segment_sum", "Unknown builtin op: foo::bar"):
        hint = harness("ops-hint", stdin=text).strip()
        assert "custom torch ops that are not loaded" in hint and "KIM_GNN_OPS_LIBRARY" in hint


# --- the model's inputs ------------------------------------------------------------

def _inputs(harness, n, codes, x, contributing, atomic_numbers=(), elements=("Si", "C")):
    lines = [f"{n} {len(elements)}", " ".join(elements), " ".join(map(str, codes)),
             " ".join(repr(float(v)) for v in np.ravel(x)), " ".join(map(str, contributing)),
             " ".join(map(str, [len(atomic_numbers), *atomic_numbers]))]
    out = harness("inputs", stdin="\n".join(lines) + "\n").splitlines()
    if out[0].startswith("error: "):
        return out[0][len("error: "):]
    m = int(out[0])
    rows = [line.split() for line in out[1:1 + m]]
    return (np.array([int(r[0]) for r in rows]), np.array([int(r[1]) for r in rows]),
            np.array([[float(v) for v in r[2:]] for r in rows]))


def test_model_inputs_invert_the_contributing_flag(harness):
    x = np.arange(9.0).reshape(3, 3)
    species, contributions, coords = _inputs(harness, 3, [1, 0, 1], x, [1, 0, 1])
    assert species.tolist() == [1, 0, 1]
    assert contributions.tolist() == [contract.CONTRIBUTING, contract.NOT_CONTRIBUTING, contract.CONTRIBUTING]
    np.testing.assert_array_equal(coords, x)
    species, _, _ = _inputs(harness, 3, [1, 0, 1], x, [1, 0, 1], atomic_numbers=(14, 6))
    assert species.tolist() == [6, 14, 6]


def test_single_particle_gets_the_contracts_dummy_partner(harness):
    species, contributions, coords = _inputs(harness, 1, [1], [[0.5, -1.0, 2.0]], [1])
    assert species.tolist() == [1, 1]
    assert contributions.tolist() == [contract.CONTRIBUTING, contract.NOT_CONTRIBUTING]
    np.testing.assert_array_equal(coords, [[0.5, -1.0, 2.0], list(contract.DUMMY_PARTICLE_POSITION)])


@pytest.mark.parametrize("codes,x,message", [
    ([0, 2], np.zeros((2, 3)), "particle 1 has species code 2, which this model does not have (its species: Si C, "
                               "codes 0 to 1)"),
    ([-1, 0], np.zeros((2, 3)), "particle 0 has species code -1"),
    ([0, 1], [[0, 0, 0], [0, np.nan, 0]], "particle 1 has a non-finite (NaN or inf) coordinate"),
    ([0, 1], [[np.inf, 0, 0], [0, 0, 0]], "particle 0 has a non-finite (NaN or inf) coordinate"),
])
def test_model_input_errors(harness, codes, x, message):
    assert _inputs(harness, 2, codes, x, [1, 1]).startswith(message)


# --- virials -------------------------------------------------------------------

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # KIM's order


def _fold(harness, n, m, lists):
    lines = [f"{n} {m} {len(lists)}"]
    for index, vectors, grads in lists:
        lines.append(str(index.shape[1]))
        lines.append(" ".join(map(str, index.ravel())))
        lines.append(" ".join(repr(float(v)) for v in vectors.ravel()))
        lines.append(" ".join(repr(float(v)) for v in grads.ravel()))
    out = harness("fold", stdin="\n".join(lines) + "\n").split("\n")
    if out[0].startswith("error: "):
        return out[0][len("error: "):]
    return np.array([float(v) for v in out if v.strip()]).reshape(n, 6)


def _reference_fold(n, lists):
    w = np.zeros((n, 6))
    for index, vectors, grads in lists:
        for e in range(index.shape[1]):
            outer = np.outer(vectors[e], grads[e])
            sym = 0.5 * (outer + outer.T)
            voigt = np.array([sym[a, b] for a, b in VOIGT])
            for p in index[:, e]:
                if p < n:
                    w[p] += 0.5 * voigt
    return w


def test_particle_virials_fold_half_half_in_kims_voigt_order(harness):
    rng = np.random.default_rng(0)
    n, m = 7, 9
    x = rng.normal(size=(m, 3))
    lists = []
    for e in (12, 0, 30):  # several lists (one per layer), one of them empty
        index = rng.integers(0, m, size=(2, e))
        vectors = x[index[1]] - x[index[0]]
        lists.append((index, vectors, rng.normal(size=(e, 3))))
    got = _fold(harness, n, m, lists)
    np.testing.assert_allclose(got, _reference_fold(n, lists), rtol=0, atol=1e-14)

    # one edge by hand: r = (1, 2, 3), g = (4, 5, 6): xx 4, yy 10, zz 18, yz (12 + 15) / 2, xz (6 + 12) / 2,
    # xy (5 + 8) / 2; each end gets half
    one = [(np.array([[0], [1]]), np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 5.0, 6.0]]))]
    half = 0.5 * np.array([4.0, 10.0, 18.0, 13.5, 9.0, 6.5])
    np.testing.assert_array_equal(_fold(harness, 2, 2, one), [half, half])
    # the share of a particle >= n (the dummy partner) is dropped
    np.testing.assert_array_equal(_fold(harness, 1, 2, one), [half])


def test_particle_virials_sum_to_the_global_virial(harness):
    """With edge vectors r_e = x_q - x_p and forces F = -dE/dx collected from
    the edge forces, the per-particle virials sum to GlobalVirial."""
    rng = np.random.default_rng(1)
    m = 6
    x = rng.normal(size=(m, 3))
    index = np.array([[p, q] for p in range(m) for q in range(m) if p != q]).T
    vectors = x[index[1]] - x[index[0]]
    grads = rng.normal(size=(index.shape[1], 3))
    dedx = np.zeros((m, 3))
    np.add.at(dedx, index[1], grads)
    np.add.at(dedx, index[0], -grads)
    forces = -dedx
    lines = [str(m), " ".join(repr(float(v)) for v in x.ravel()), " ".join(repr(float(v)) for v in forces.ravel())]
    global_virial = np.array([float(v) for v in harness("global", stdin="\n".join(lines) + "\n").split()])
    full = np.einsum("pa,pb->ab", x, dedx)
    full = 0.5 * (full + full.T)
    np.testing.assert_allclose(global_virial, [full[a, b] for a, b in VOIGT], rtol=0, atol=1e-12)
    per_particle = _fold(harness, m, m, [(index, vectors, grads)])
    np.testing.assert_allclose(per_particle.sum(axis=0), global_virial, rtol=0, atol=1e-12)


def test_non_finite_edge_forces_and_bad_indices_are_errors(harness):
    index = np.array([[0, 1], [1, 0]])
    vectors = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    grads = np.array([[0.1, 0, 0], [np.nan, 0, 0]])
    assert _fold(harness, 2, 2, [(index, vectors, grads)]) == (
        "the edge forces dE/dr of edge 1 are not finite (NaN or inf): no per-particle virial")
    grads[1, 0] = np.inf
    assert _fold(harness, 2, 2, [(index, vectors, grads)]).startswith("the edge forces dE/dr of edge 1 are not finite")
    assert _fold(harness, 2, 2, [(np.array([[0], [5]]), vectors[:1], grads[:1] * 0)]) == (
        "the model's edge_index holds particle 5, outside 0 .. 1")


def test_particle_virials_must_sum_to_the_virial(harness):
    """A missing share (edge vectors the energy does not depend on, so zero
    edge forces) is caught; rounding is not."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 6))

    def check(particle, virial, tolerance=1e-3):
        text = " ".join(repr(float(v)) for v in [*np.ravel(particle), *virial, tolerance])
        return harness("sum-check", stdin=f"{len(particle)} {text}\n").strip()

    assert check(w, w.sum(axis=0)) == "ok"
    assert check(w, w.sum(axis=0) * (1 + 1e-6)) == "ok"
    assert check(np.zeros_like(w), w.sum(axis=0)).startswith(
        "error: the per-particle virials do not sum to the virial from the forces (largest difference ")
    assert check(w[:4], w.sum(axis=0)).startswith("error: ")
