"""The driver's staged-graph builder (csrc/driver/staged_graphs.hpp) gives
exactly the contract's edge sets, compiled on its own (no KIM API, no
torch: about 2 s) and fed neighbor lists as KIM hands them: full lists with
a skin beyond the cutoff, in any order, and also with repeated entries and
one-sided (asymmetric) entries, which the TorchML driver's hash set absorbs.

The reference is the contract's algorithm written with Python sets
(docs/contract.md), and, for symmetric lists, kim_gnn.graphs."""

import shutil
import subprocess

import numpy as np
import pytest
from skip_policy import missing

from kim_gnn import contract
from kim_gnn.kim_driver import driver_source_dir

HARNESS = r"""
#include <cstdio>
#include <vector>
#include "staged_graphs.hpp"

int main()
{
  int n, layers;
  double cutoff;
  if (std::scanf("%d %d %lf", &n, &layers, &cutoff) != 3) return 2;
  std::vector<double> x(3 * n);
  std::vector<int> contributing(n);
  for (int i = 0; i < 3 * n; ++i) std::scanf("%lf", &x[i]);
  for (int i = 0; i < n; ++i) std::scanf("%d", &contributing[i]);
  std::vector<std::vector<int> > neighbors(n);
  for (int i = 0; i < n; ++i)
  {
    int count;
    std::scanf("%d", &count);
    neighbors[i].resize(count);
    for (int a = 0; a < count; ++a) std::scanf("%d", &neighbors[i][a]);
  }
  kim_gnn::StagedGraphBuilder builder;
  for (int repeat = 0; repeat < 2; ++repeat)  // buffers reused: same answer
  {
    builder.Build(n, x.data(), contributing.data(), cutoff, layers,
                  [&](int i, int * count, int const ** list) {
                    *count = static_cast<int>(neighbors[i].size());
                    *list = neighbors[i].data();
                  });
    for (int k = 0; k < layers; ++k)
    {
      long long const e = builder.NumEdges(k);
      std::printf("stage %d %lld\n", k, e);
      for (long long a = 0; a < e; ++a)
        std::printf("%lld %lld\n", (long long) builder.edges[k][a], (long long) builder.edges[k][e + a]);
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        missing("no C++ compiler (c++/g++) is installed")
    root = tmp_path_factory.mktemp("graph-builder")
    (root / "harness.cpp").write_text(HARNESS)
    exe = root / "harness"
    proc = subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-pedantic", f"-I{driver_source_dir()}",
                           "harness.cpp", "-o", str(exe)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout

    def run(positions, contributing, neighbors, cutoff, layers):
        lines = [f"{len(positions)} {layers} {cutoff!r}"]
        lines += [" ".join(repr(float(v)) for v in p) for p in positions]
        lines.append(" ".join(str(int(c)) for c in contributing))
        lines += [" ".join(map(str, [len(nb), *nb])) for nb in neighbors]
        out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", stdout=subprocess.PIPE, text=True,
                             check=True, timeout=120).stdout.split("\n")
        runs, at = [], 0
        for _ in range(2):
            stages = []
            for k in range(layers):
                head = out[at].split()
                assert head[:2] == ["stage", str(k)]
                count = int(head[2])
                pairs = [tuple(map(int, line.split())) for line in out[at + 1: at + 1 + count]]
                at += 1 + count
                stages.append(pairs)
            runs.append(stages)
        assert runs[0] == runs[1]
        return runs[0]

    return run


def contract_edges(positions, contributing, neighbors, cutoff, layers):
    """docs/contract.md, literally (sets)."""
    stage = {i for i, c in enumerate(contributing) if c}
    graphs = []
    for _ in range(layers):
        edges, nxt = set(), set()
        for i in stage:
            for j in neighbors[i]:
                d = positions[j] - positions[i]
                if j != i and float(d @ d) <= cutoff * cutoff:
                    edges.add((i, j))
                    edges.add((j, i))
                    nxt.add(j)
        graphs.append(edges)
        stage = nxt
    return graphs


def structure(rng, n_contributing=12, n_padding=60, box=7.0):
    positions = rng.uniform(0.0, box, size=(n_contributing + n_padding, 3))
    positions[n_contributing:] += rng.choice([-1.0, 1.0], size=(n_padding, 3)) * rng.uniform(0, 3.0, size=(n_padding, 3))
    contributing = np.zeros(len(positions), dtype=int)
    contributing[:n_contributing] = 1
    return positions, contributing


def full_neighbor_lists(positions, reach, rng):
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=2)
    lists = []
    for i in range(len(positions)):
        nb = [int(j) for j in np.flatnonzero(d[i] <= reach) if j != i]
        rng.shuffle(nb)
        lists.append(nb)
    return lists


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("layers", [1, 3])
def test_symmetric_lists_give_the_contract_edges(builder, seed, layers):
    rng = np.random.default_rng(seed)
    cutoff = 2.5
    positions, contributing = structure(rng)
    # a pair exactly at the cutoff is kept (inclusive test on raw coordinates)
    positions[0] = [1.0, 1.0, 1.0]
    positions[1] = [1.0 + cutoff, 1.0, 1.0]  # exactly rc apart in floating point
    neighbors = full_neighbor_lists(positions, cutoff * 1.3, rng)  # KIM lists carry a skin
    got = builder(positions, contributing, neighbors, cutoff, layers)
    want = contract_edges(positions, contributing, neighbors, cutoff, layers)
    for k in range(layers):
        assert len(got[k]) == len(set(got[k])), "duplicate edges"
        assert set(got[k]) == want[k], k
        assert all(i != j for i, j in got[k])
    assert (0, 1) in got[0] and (1, 0) in got[0]

    # and kim_gnn.graphs (vesin), which assumes symmetric lists, agrees
    from kim_gnn.graphs import staged_edge_lists

    flags = np.where(contributing == 1, contract.CONTRIBUTING, contract.NOT_CONTRIBUTING)
    python = staged_edge_lists(positions, flags, cutoff, layers)
    for k in range(layers):
        assert set(map(tuple, python[k].T.tolist())) == want[k]


@pytest.mark.parametrize("seed", range(3))
def test_repeated_and_one_sided_entries(builder, seed):
    rng = np.random.default_rng(100 + seed)
    cutoff, layers = 2.5, 2
    positions, contributing = structure(rng)
    neighbors = full_neighbor_lists(positions, cutoff * 1.2, rng)
    for i in range(len(neighbors)):
        if neighbors[i] and rng.random() < 0.3:
            neighbors[i] = neighbors[i] + neighbors[i][: 2]  # repeats
        if neighbors[i] and rng.random() < 0.3:
            neighbors[i] = neighbors[i][1:]  # drops one direction of a pair
    neighbors[0] = neighbors[0] + [0]  # a self entry is ignored
    got = builder(positions, contributing, neighbors, cutoff, layers)
    want = contract_edges(positions, contributing, neighbors, cutoff, layers)
    for k in range(layers):
        assert len(got[k]) == len(set(got[k]))
        assert set(got[k]) == want[k]


def test_no_contributing_particles_and_isolated_particles(builder):
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    assert builder(positions, [0, 0, 0], [[1], [0], []], 2.0, 2) == [[], []]
    got = builder(positions, [0, 0, 1], [[1], [0], []], 2.0, 2)
    assert got == [[], []]
    got = builder(positions, [1, 0, 0], [[1], [0], []], 2.0, 2)
    assert sorted(got[0]) == [(0, 1), (1, 0)] and sorted(got[1]) == [(0, 1), (1, 0)]
