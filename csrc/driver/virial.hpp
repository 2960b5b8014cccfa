// The virial outputs from plain arrays (no KIM API, no torch), in KIM's
// Voigt order (xx, yy, zz, yz, xz, xy) and sign: the KIM virial is
// sum_p x_p (x) dE/dx_p.
//
//  - GlobalVirial: from the forces on every particle the model saw.
//  - FoldEdgeVirials: the per-particle virial by the edge-force
//    decomposition (docs/per-atom-virials.md): for every edge e = (p, q)
//    with edge vector r_e = x_q - x_p and edge force g_e = dE/dr_e, the
//    symmetrised w_e = sym(r_e (x) g_e) goes half to p and half to q. As the
//    energy depends on the coordinates only through the edge vectors,
//    sum_e w_e = sum_p x_p (x) dE/dx_p, so the per-particle virials sum to
//    the global one.
#ifndef KIM_GNN_VIRIAL_HPP
#define KIM_GNN_VIRIAL_HPP

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kim_gnn
{
// KIM virial = -sum_p x_p (x) F_p over the m particles (coordinates and
// forces m x 3).
inline void GlobalVirial(int const m,
                         double const * const coordinates,
                         double const * const forces,
                         double * const virial)
{
  double v[6] = {0, 0, 0, 0, 0, 0};
  for (int p = 0; p < m; ++p)
  {
    double const * const x = coordinates + 3 * p;
    double const * const fq = forces + 3 * p;
    v[0] -= x[0] * fq[0];
    v[1] -= x[1] * fq[1];
    v[2] -= x[2] * fq[2];
    v[3] -= 0.5 * (x[1] * fq[2] + x[2] * fq[1]);
    v[4] -= 0.5 * (x[0] * fq[2] + x[2] * fq[0]);
    v[5] -= 0.5 * (x[0] * fq[1] + x[1] * fq[0]);
  }
  for (int c = 0; c < 6; ++c) virial[c] = v[c];
}

// Add one edge list's shares to particleVirial (n x 6, zeroed by the
// caller). edgeIndex: [2, E] row-major (senders, then receivers), in the
// caller's numbering; vectors and gradients: E x 3. Shares of particles
// >= n (the dummy partner) are dropped. Returns "" or the error (a
// non-finite edge force, an index out of range).
inline std::string FoldEdgeVirials(int const n,
                                   int const m,
                                   std::int64_t const numEdges,
                                   std::int64_t const * const edgeIndex,
                                   double const * const vectors,
                                   double const * const gradients,
                                   double * const particleVirial)
{
  for (std::int64_t e = 0; e < numEdges; ++e)
  {
    double const * const r = vectors + 3 * e;
    double const * const g = gradients + 3 * e;
    if (!(std::isfinite(g[0]) && std::isfinite(g[1]) && std::isfinite(g[2])))
      return "the edge forces dE/dr of edge " + std::to_string(e)
             + " are not finite (NaN or inf): no per-particle virial";
    std::int64_t const ends[2] = {edgeIndex[e], edgeIndex[numEdges + e]};
    double const half[6] = {0.5 * r[0] * g[0],
                            0.5 * r[1] * g[1],
                            0.5 * r[2] * g[2],
                            0.25 * (r[1] * g[2] + r[2] * g[1]),
                            0.25 * (r[0] * g[2] + r[2] * g[0]),
                            0.25 * (r[0] * g[1] + r[1] * g[0])};
    for (std::int64_t const p : ends)
    {
      if (p < 0 || p >= m)
        return "the model's edge_index holds particle " + std::to_string(p)
               + ", outside 0 .. " + std::to_string(m - 1);
      if (p >= n) continue;
      double * const w = particleVirial + 6 * p;
      for (int c = 0; c < 6; ++c) w[c] += half[c];
    }
  }
  return "";
}

// The per-particle virials (n x 6, every share folded in) must sum to the
// virial from the forces: a model whose returned edge vectors are not the
// ones its energy was computed from breaks this. tolerance: relative to
// the largest component of sum_i |w_i| (float32 models round at 1e-7).
inline std::string CheckParticleVirialSum(int const n,
                                          double const * const particleVirial,
                                          double const * const virial,
                                          double const tolerance)
{
  double sum[6] = {0, 0, 0, 0, 0, 0};
  double absSum[6] = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < 6; ++c)
    {
      sum[c] += particleVirial[6 * i + c];
      absSum[c] += std::fabs(particleVirial[6 * i + c]);
    }
  double scale = 0.0, worst = 0.0;
  for (int c = 0; c < 6; ++c)
  {
    scale = std::fmax(scale, std::fmax(absSum[c], std::fabs(virial[c])));
    worst = std::fmax(worst, std::fabs(sum[c] - virial[c]));
  }
  if (worst <= tolerance * scale) return "";
  return "the per-particle virials do not sum to the virial from the forces "
         "(largest difference "
         + std::to_string(worst) + " eV of " + std::to_string(scale)
         + " eV): the edge vectors the model returns are not the ones its "
           "energy was computed from";
}
}  // namespace kim_gnn

#endif  // KIM_GNN_VIRIAL_HPP
