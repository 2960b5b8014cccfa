// The model's inputs from what the KIM API hands over (no KIM API, no
// torch): the checks on species codes and coordinates, and the contract's
// species / coordinates / contributions arrays, with the dummy partner of
// a single isolated particle.
#ifndef KIM_GNN_MODEL_INPUTS_HPP
#define KIM_GNN_MODEL_INPUTS_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "contract_facts.hpp"

namespace kim_gnn
{
// "" or the error: a species code the model does not have, a non-finite
// coordinate.
inline std::string CheckParticles(int const n,
                                  int const * const speciesCodes,
                                  double const * const coordinates,
                                  std::vector<std::string> const & elements)
{
  int const numSpecies = static_cast<int>(elements.size());
  for (int i = 0; i < n; ++i)
  {
    if (speciesCodes[i] < 0 || speciesCodes[i] >= numSpecies)
    {
      std::string list;
      for (std::string const & e : elements) list += (list.empty() ? "" : " ") + e;
      return "particle " + std::to_string(i) + " has species code "
             + std::to_string(speciesCodes[i])
             + ", which this model does not have (its species: " + list
             + ", codes 0 to " + std::to_string(numSpecies - 1) + ")";
    }
    for (int c = 0; c < 3; ++c)
      if (!std::isfinite(coordinates[3 * i + c]))
        return "particle " + std::to_string(i)
               + " has a non-finite (NaN or inf) coordinate";
  }
  return "";
}

// The contract's model inputs for n >= 1 particles; m = n, or 2 for a
// single particle (its dummy partner: not contributing, the same species,
// at kDummyParticleCoordinate, no edges).
struct ModelArrays
{
  int m = 0;
  std::vector<double> coordinates;
  std::vector<std::int64_t> species;
  std::vector<std::int64_t> contributions;

  // atomicNumbers non-empty: pass atomic numbers (KIM_MODEL_ELEMENTS_MAP).
  void Fill(int const n,
            double const * const kimCoordinates,
            int const * const speciesCodes,
            int const * const particleContributing,
            std::vector<std::int64_t> const & atomicNumbers)
  {
    m = n == 1 ? 2 : n;
    coordinates.resize(3 * static_cast<std::size_t>(m));
    species.resize(m);
    contributions.resize(m);
    std::copy(kimCoordinates,
              kimCoordinates + 3 * static_cast<std::size_t>(n),
              coordinates.begin());
    for (int i = 0; i < n; ++i)
    {
      species[i] = atomicNumbers.empty()
                       ? static_cast<std::int64_t>(speciesCodes[i])
                       : atomicNumbers[speciesCodes[i]];
      contributions[i]
          = particleContributing[i] ? kContributing : kNotContributing;
    }
    if (n == 1)
    {
      coordinates[3] = coordinates[4] = coordinates[5]
          = kDummyParticleCoordinate;
      species[1] = species[0];
      contributions[1] = kNotContributing;
    }
  }
};
}  // namespace kim_gnn

#endif  // KIM_GNN_MODEL_INPUTS_HPP
