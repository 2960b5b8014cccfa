// Staged edge lists of the TorchML driver contract, built from a KIM
// neighbor list (docs/contract.md, kim_gnn/graphs.py):
//
//   S_0 = contributing particles
//   for k in 0 .. L-1:
//     E_k = {(i, j), (j, i) : i in S_k, j in neighbors(i), |x_j - x_i|^2 <= rc^2}
//     S_{k+1} = {j : same condition}
//
// Deduplication uses no hash set of pairs: every accepted pair is recorded
// once as (lo, hi), the records are bucketed by lo with a counting sort, and
// a per-particle stamp array drops repeats inside a bucket. This is O(N + E)
// per stage, exact for any neighbor list (symmetric or not, with or without
// repeated entries), and every buffer is kept between calls.
#ifndef KIM_GNN_STAGED_GRAPHS_HPP
#define KIM_GNN_STAGED_GRAPHS_HPP

#include <algorithm>
#include <cstdint>
#include <vector>

namespace kim_gnn
{
class StagedGraphBuilder
{
 public:
  // edges[k] holds edge_index_k as one [2, E_k] row-major block: the E_k
  // source indices, then the E_k target indices.
  std::vector<std::vector<std::int64_t> > edges;

  std::int64_t NumEdges(int k) const
  {
    return static_cast<std::int64_t>(edges[k].size() / 2);
  }

  // getNeighbors(i, &count, &list) gives particle i's neighbors.
  // coordinates: n x 3 doubles. contributing[i] != 0: particle i contributes.
  template<class GetNeighbors>
  void Build(int const n,
             double const * const coordinates,
             int const * const contributing,
             double const cutoff,
             int const numLayers,
             GetNeighbors getNeighbors)
  {
    double const cutoffSq = cutoff * cutoff;
    if (static_cast<int>(edges.size()) != numLayers) edges.resize(numLayers);
    inStage_.assign(n, 0);
    nextStage_.assign(n, 0);
    for (int i = 0; i < n; ++i) inStage_[i] = contributing[i] ? 1 : 0;

    for (int k = 0; k < numLayers; ++k)
    {
      lo_.clear();
      hi_.clear();
      std::fill(nextStage_.begin(), nextStage_.end(), 0);
      for (int i = 0; i < n; ++i)
      {
        if (!inStage_[i]) continue;
        int count = 0;
        int const * list = nullptr;
        getNeighbors(i, &count, &list);
        double const * const xi = coordinates + 3 * i;
        for (int a = 0; a < count; ++a)
        {
          int const j = list[a];
          if (j == i || j < 0 || j >= n) continue;
          double const * const xj = coordinates + 3 * j;
          double const dx = xj[0] - xi[0];
          double const dy = xj[1] - xi[1];
          double const dz = xj[2] - xi[2];
          if (dx * dx + dy * dy + dz * dz <= cutoffSq)
          {
            nextStage_[j] = 1;
            lo_.push_back(i < j ? i : j);
            hi_.push_back(i < j ? j : i);
          }
        }
      }
      Deduplicate(n, edges[k]);
      inStage_.swap(nextStage_);
    }
  }

 private:
  std::vector<char> inStage_;
  std::vector<char> nextStage_;
  std::vector<int> lo_;
  std::vector<int> hi_;
  std::vector<int> bucketStart_;
  std::vector<int> bucketed_;
  std::vector<int> stamp_;
  std::vector<int> uniqueLo_;
  std::vector<int> uniqueHi_;

  // Unique (lo, hi) pairs, each written in both directions.
  void Deduplicate(int const n, std::vector<std::int64_t> & out)
  {
    std::size_t const m = lo_.size();
    bucketStart_.assign(n + 1, 0);
    for (std::size_t e = 0; e < m; ++e) ++bucketStart_[lo_[e] + 1];
    for (int i = 0; i < n; ++i) bucketStart_[i + 1] += bucketStart_[i];
    bucketed_.resize(m);
    // counting sort by lo: bucketStart_ is used as the fill cursor, then
    // restored by shifting
    for (std::size_t e = 0; e < m; ++e) bucketed_[bucketStart_[lo_[e]]++] = hi_[e];
    for (int i = n; i > 0; --i) bucketStart_[i] = bucketStart_[i - 1];
    bucketStart_[0] = 0;

    stamp_.assign(n, -1);
    uniqueLo_.clear();
    uniqueHi_.clear();
    for (int i = 0; i < n; ++i)
    {
      for (int b = bucketStart_[i]; b < bucketStart_[i + 1]; ++b)
      {
        int const j = bucketed_[b];
        if (stamp_[j] == i) continue;
        stamp_[j] = i;
        uniqueLo_.push_back(i);
        uniqueHi_.push_back(j);
      }
    }
    std::size_t const u = uniqueLo_.size();
    out.resize(4 * u);
    std::int64_t * const src = out.data();
    std::int64_t * const dst = out.data() + 2 * u;
    for (std::size_t e = 0; e < u; ++e)
    {
      src[2 * e] = uniqueLo_[e];
      dst[2 * e] = uniqueHi_[e];
      src[2 * e + 1] = uniqueHi_[e];
      dst[2 * e + 1] = uniqueLo_[e];
    }
  }
};

}  // namespace kim_gnn

#endif  // KIM_GNN_STAGED_GRAPHS_HPP
