// kim_compute: the smallest KIM simulator the tests need to drive a KIM
// portable model without kimpy or LAMMPS (e.g. on a GPU machine that has
// neither): it reads particles (species, position, contributing) from a
// file, builds full neighbor lists for every particle by brute force, asks
// the model for energy, forces, particle energies, the virial and, with
// --particle-virial, per-particle virials, and prints them as JSON with
// every double written exactly (%.17g).
//
//   kim_compute ITEM CONFIG [--repeat R] [--warmup W] [--particle-virial]
//
// CONFIG: the particle count N on the first line, then N lines
// "species x y z contributing". With --repeat R the model computes R times
// on the same input, after W untimed warm-up calls (--warmup, default 0);
// "identical_repeats" says whether every one of the R calls gave the same
// bits as the first of them (whose outputs are printed), "warmup_identical"
// whether the warm-up calls did too, and "compute_seconds" holds each of the
// R calls' wall time.
//
// Built and run by tests/kim_e2e/test_driver_device.py.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "KIM_SimulatorHeaders.hpp"

namespace {

struct Particles {
  int n = 0;
  std::vector<std::string> species;
  std::vector<double> coordinates;
  std::vector<int> contributing;
};

struct NeighborLists {
  // neighbors[list][particle]
  std::vector<std::vector<std::vector<int>>> neighbors;
};

int Fail(std::string const & message) {
  std::fprintf(stderr, "kim_compute: %s\n", message.c_str());
  return 1;
}

bool ReadParticles(char const * path, Particles & p, std::string & error) {
  std::ifstream in(path);
  if (!in) {
    error = std::string("cannot read ") + path;
    return false;
  }
  if (!(in >> p.n) || p.n < 0) {
    error = std::string(path) + ": the first line must be the particle count";
    return false;
  }
  p.species.resize(p.n);
  p.coordinates.resize(3 * p.n);
  p.contributing.resize(p.n);
  for (int i = 0; i < p.n; ++i) {
    if (!(in >> p.species[i] >> p.coordinates[3 * i] >> p.coordinates[3 * i + 1] >> p.coordinates[3 * i + 2]
          >> p.contributing[i])) {
      error = std::string(path) + ": particle line " + std::to_string(i + 1) + " is not 'species x y z contributing'";
      return false;
    }
  }
  return true;
}

void BuildNeighborLists(Particles const & p, int count, double const * cutoffs, NeighborLists & lists) {
  lists.neighbors.assign(count, std::vector<std::vector<int>>(p.n));
  for (int k = 0; k < count; ++k) {
    double const c2 = cutoffs[k] * cutoffs[k];
    for (int i = 0; i < p.n; ++i) {
      for (int j = 0; j < p.n; ++j) {
        if (i == j) continue;
        double r2 = 0.0;
        for (int d = 0; d < 3; ++d) {
          double const dx = p.coordinates[3 * j + d] - p.coordinates[3 * i + d];
          r2 += dx * dx;
        }
        if (r2 < c2) lists.neighbors[k][i].push_back(j);
      }
    }
  }
}

int GetNeighbors(void * data, int numberOfLists, double const * /*cutoffs*/, int list, int particle,
                 int * numberOfNeighbors, int const ** neighbors) {
  NeighborLists * lists = static_cast<NeighborLists *>(data);
  if (list < 0 || list >= numberOfLists || list >= static_cast<int>(lists->neighbors.size())) return 1;
  std::vector<std::vector<int>> const & of = lists->neighbors[list];
  if (particle < 0 || particle >= static_cast<int>(of.size())) return 1;
  *numberOfNeighbors = static_cast<int>(of[particle].size());
  *neighbors = of[particle].empty() ? nullptr : of[particle].data();
  return 0;
}

void PrintArray(char const * name, std::vector<double> const & values, bool last = false) {
  std::printf("\"%s\": [", name);
  for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%.17g", i ? ", " : "", values[i]);
  std::printf("]%s\n", last ? "" : ",");
}

struct Outputs {
  double energy = 0.0;
  std::vector<double> forces, particleEnergy, virial, particleVirial;
  bool operator==(Outputs const & o) const {
    return std::memcmp(&energy, &o.energy, sizeof(double)) == 0 && forces == o.forces
           && particleEnergy == o.particleEnergy && virial == o.virial && particleVirial == o.particleVirial;
  }
};

}  // namespace

int main(int argc, char ** argv) {
  if (argc < 3) return Fail("usage: kim_compute ITEM CONFIG [--repeat R] [--warmup W] [--particle-virial]");
  std::string const item = argv[1];
  int repeat = 1;
  int warmup = 0;
  bool wantParticleVirial = false;
  for (int a = 3; a < argc; ++a) {
    if (std::strcmp(argv[a], "--repeat") == 0 && a + 1 < argc) {
      repeat = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--warmup") == 0 && a + 1 < argc) {
      warmup = std::atoi(argv[++a]);
    } else if (std::strcmp(argv[a], "--particle-virial") == 0) {
      wantParticleVirial = true;
    } else {
      return Fail(std::string("unknown argument ") + argv[a]);
    }
  }
  if (repeat < 1) return Fail("--repeat must be at least 1");
  if (warmup < 0) return Fail("--warmup must not be negative");

  Particles p;
  std::string error;
  if (!ReadParticles(argv[2], p, error)) return Fail(error);

  KIM::Model * model = nullptr;
  int unitsAccepted = 0;
  if (KIM::Model::Create(KIM::NUMBERING::zeroBased, KIM::LENGTH_UNIT::A, KIM::ENERGY_UNIT::eV, KIM::CHARGE_UNIT::e,
                         KIM::TEMPERATURE_UNIT::K, KIM::TIME_UNIT::ps, item, &unitsAccepted, &model))
    return Fail("KIM::Model::Create failed for " + item + " (see kim.log)");
  if (!unitsAccepted) return Fail(item + " does not accept A/eV units");

  std::vector<int> codes(p.n);
  for (int i = 0; i < p.n; ++i) {
    int supported = 0;
    if (model->GetSpeciesSupportAndCode(KIM::SpeciesName(p.species[i]), &supported, &codes[i]) || !supported)
      return Fail(item + " does not support species " + p.species[i]);
  }

  double influence = 0.0;
  model->GetInfluenceDistance(&influence);
  int listCount = 0;
  double const * cutoffs = nullptr;
  int const * paddingNotRequired = nullptr;
  model->GetNeighborListPointers(&listCount, &cutoffs, &paddingNotRequired);
  NeighborLists lists;
  BuildNeighborLists(p, listCount, cutoffs, lists);

  KIM::ComputeArguments * args = nullptr;
  if (model->ComputeArgumentsCreate(&args)) return Fail("ComputeArgumentsCreate failed");
  Outputs out;
  out.forces.assign(3 * p.n, 0.0);
  out.particleEnergy.assign(p.n, 0.0);
  out.virial.assign(6, 0.0);
  if (wantParticleVirial) out.particleVirial.assign(6 * p.n, 0.0);
  int error_code = args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::numberOfParticles, &p.n)
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::particleSpeciesCodes, codes.data())
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::particleContributing, p.contributing.data())
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::coordinates, p.coordinates.data())
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialEnergy, &out.energy)
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialForces, out.forces.data())
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialParticleEnergy,
                                               out.particleEnergy.data())
                   || args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialVirial, out.virial.data());
  if (!error_code && wantParticleVirial)
    error_code = args->SetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialParticleVirial,
                                          out.particleVirial.data());
  if (!error_code)
    error_code = args->SetCallbackPointer(KIM::COMPUTE_CALLBACK_NAME::GetNeighborList, KIM::LANGUAGE_NAME::cpp,
                                          reinterpret_cast<KIM::Function *>(&GetNeighbors), &lists);
  if (error_code) return Fail("setting the compute arguments failed (see kim.log)");

  Outputs first;
  std::vector<Outputs> warmups;
  bool identical = true;
  std::vector<double> seconds;
  for (int r = -warmup; r < repeat; ++r) {
    auto const start = std::chrono::steady_clock::now();
    if (model->Compute(args)) return Fail("KIM::Model::Compute failed for " + item + " (see kim.log)");
    double const took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r < 0) {
      warmups.push_back(out);
      continue;
    }
    seconds.push_back(took);
    if (r == 0) {
      first = out;
    } else if (!(out == first)) {
      identical = false;
    }
  }
  bool warmupIdentical = true;
  for (Outputs const & w : warmups) warmupIdentical = warmupIdentical && w == first;

  std::printf("{\"item\": \"%s\", \"particles\": %d, \"influence_distance\": %.17g,\n", item.c_str(), p.n, influence);
  std::printf("\"neighbor_lists\": %d, \"repeats\": %d, \"identical_repeats\": %s,\n", listCount, repeat,
              identical ? "true" : "false");
  std::printf("\"warmups\": %d, \"warmup_identical\": %s,\n", warmup, warmupIdentical ? "true" : "false");
  std::printf("\"energy\": %.17g,\n", first.energy);
  PrintArray("compute_seconds", seconds);
  PrintArray("forces", first.forces);
  PrintArray("particle_energy", first.particleEnergy);
  PrintArray("particle_virial", first.particleVirial);
  PrintArray("virial", first.virial, true);
  std::printf("}\n");

  model->ComputeArgumentsDestroy(&args);
  KIM::Model::Destroy(&model);
  return 0;
}
