// Shared by the kim_gnn ops: argument checks and the device dispatch to the
// kernels in cpu/ and cuda/ (built only with a CUDA toolkit and a CUDA torch:
// KIM_GNN_WITH_CUDA).
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace kim_gnn {

// Checks ptr as a CSR row pointer over `entries` entries (1-D, int32/int64,
// on src's device, ptr[0] == 0, non-decreasing, ptr[-1] == entries).
void check_ptr(const char* op, const at::Tensor& ptr, int64_t entries, const at::Tensor& like);

// The same with tensor ops on ptr's device (what check_ptr does off the CPU).
void check_ptr_tensor_ops(const char* op, const at::Tensor& ptr, int64_t entries);

// Checks an index tensor (1-D, int32/int64, on like's device).
void check_index(const char* op, const char* name, const at::Tensor& index, const at::Tensor& like);

// Checks a floating tensor the kernels take (float32 / float64, at least 1-D).
void check_values(const char* op, const char* name, const at::Tensor& values);

// src viewed as [size(0), prod(other sizes)], contiguous.
at::Tensor as_rows(const at::Tensor& src);

// Device dispatch of cpu::csr_sum / cuda::csr_sum (see cpu/csr_cpu.h).
at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm);
// Device dispatch of cpu::csr_expand / cuda::csr_expand.
at::Tensor csr_expand(const at::Tensor& rows, const at::Tensor& ptr, int64_t num_entries);

// Raised by the backward of every op when autograd asks for a graph of the
// gradient (create_graph=True): the ops have first derivatives only.
void refuse_double_backward(const char* op);

}  // namespace kim_gnn
