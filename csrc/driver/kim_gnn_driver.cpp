// kim-gnn's KIM model driver for staged graph models (the portable-model
// format of docs/contract.md): the extern "C" create routine the KIM API
// calls, and Destroy. The work is in named parts (kim_gnn_driver.hpp).
//
// Written from the KIM API's public headers (KIM_ModelDriverHeaders.hpp) and
// its example drivers, and from the contract. It reads the same file.param
// and .pt as the OpenKIM TorchML driver, builds the contract's staged graphs
// from the KIM neighbor list (staged_graphs.hpp), calls the frozen
// TorchScript model with L + 3 positional inputs and returns energy, forces,
// per-particle energies, the virial and per-particle virials. Every failure,
// including exceptions thrown inside TorchScript, becomes a KIM error with a
// logged message: the simulator is never aborted.

#include "kim_gnn_driver.hpp"

extern "C" int kim_gnn_model_driver_create(
    KIM::ModelDriverCreate * const modelDriverCreate,
    KIM::LengthUnit const requestedLengthUnit,
    KIM::EnergyUnit const requestedEnergyUnit,
    KIM::ChargeUnit const requestedChargeUnit,
    KIM::TemperatureUnit const requestedTemperatureUnit,
    KIM::TimeUnit const requestedTimeUnit)
{
  // The models work in Angstrom and eV only: SetUnits says so.
  (void) requestedLengthUnit;
  (void) requestedEnergyUnit;
  (void) requestedChargeUnit;
  (void) requestedTemperatureUnit;
  (void) requestedTimeUnit;
  return kim_gnn::KimGnnDriver::Create(modelDriverCreate);
}

int kim_gnn::KimGnnDriver::Destroy(KIM::ModelDestroy * const modelDestroy)
{
  KimGnnDriver * driver = nullptr;
  modelDestroy->GetModelBufferPointer(reinterpret_cast<void **>(&driver));
  delete driver;
  return false;
}
