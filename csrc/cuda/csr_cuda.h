// CUDA kernels behind the kim_gnn ops: the same contract as cpu/csr_cpu.h.
//
// One thread per (row, feature) sums the row's entries in CSR order, so the
// sum order is fixed: no atomics, the same bits on every call.
#pragma once

#include <ATen/ATen.h>

namespace kim_gnn {
namespace cuda {

at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm);
at::Tensor csr_expand(const at::Tensor& rows, const at::Tensor& ptr, int64_t num_entries);

}  // namespace cuda
}  // namespace kim_gnn
