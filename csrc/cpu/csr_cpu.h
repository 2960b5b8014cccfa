// CPU kernels behind the kim_gnn ops (csrc/segment_sum.cpp, csrc/gather.cpp).
//
// Every reduction runs over a CSR layout: row r owns the entries
// ptr[r] .. ptr[r+1]-1, which one thread sums in that order. Rows are split
// between threads (at::parallel_for over ranges of rows of about equal
// entries), never the entries of a row, so the result does not depend on the
// number of threads or on the call.
#pragma once

#include <ATen/ATen.h>

namespace kim_gnn {
namespace cpu {

// out[r] = sum_{j = ptr[r]}^{ptr[r+1]-1} src[perm ? perm[j] : j], out [R, F].
// src [E, F] contiguous; ptr [R+1]; perm [ptr[R]] or undefined (identity).
at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm);

// out[e] = rows[r] for ptr[r] <= e < ptr[r+1], out [E, F] (E = ptr[R]):
// the backward of csr_sum without perm.
at::Tensor csr_expand(const at::Tensor& rows, const at::Tensor& ptr, int64_t num_entries);

}  // namespace cpu
}  // namespace kim_gnn
