#include "csr_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

namespace kim_gnn {
namespace cpu {

namespace {

// Rows per task: about at::internal::GRAIN_SIZE scalar additions each.
int64_t row_grain(int64_t rows, int64_t entries, int64_t features) {
  const int64_t per_row = std::max<int64_t>(1, features * std::max<int64_t>(1, entries / std::max<int64_t>(1, rows)));
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_row);
}

template <typename scalar_t, typename index_t>
void csr_sum_rows(const scalar_t* __restrict__ src, const index_t* __restrict__ ptr, const index_t* __restrict__ perm,
                  scalar_t* __restrict__ out, int64_t rows, int64_t entries, int64_t features) {
  at::parallel_for(0, rows, row_grain(rows, entries, features), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* __restrict__ o = out + r * features;
      std::fill(o, o + features, scalar_t(0));
      for (int64_t j = ptr[r]; j < static_cast<int64_t>(ptr[r + 1]); ++j) {
        int64_t e = j;
        if (perm != nullptr) {
          e = perm[j];
          TORCH_CHECK(e >= 0 && e < entries, "kim_gnn: permutation entry ", e, " is outside 0..", entries - 1);
        }
        const scalar_t* __restrict__ s = src + e * features;
        for (int64_t f = 0; f < features; ++f) {
          o[f] += s[f];
        }
      }
    }
  });
}

template <typename scalar_t, typename index_t>
void csr_expand_rows(const scalar_t* __restrict__ rows_data, const index_t* __restrict__ ptr, scalar_t* __restrict__ out,
                     int64_t rows, int64_t entries, int64_t features) {
  at::parallel_for(0, rows, row_grain(rows, entries, features), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* __restrict__ s = rows_data + r * features;
      for (int64_t j = ptr[r]; j < static_cast<int64_t>(ptr[r + 1]); ++j) {
        std::memcpy(out + j * features, s, sizeof(scalar_t) * features);
      }
    }
  });
}

}  // namespace

at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm) {
  const int64_t rows = ptr.size(0) - 1;
  const int64_t entries = src.size(0);
  const int64_t features = src.size(1);
  at::Tensor out = at::empty({rows, features}, src.options());
  if (rows == 0) {
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "kim_gnn_csr_sum_cpu", [&] {
    using scalar_type = scalar_t;
    AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "kim_gnn_csr_sum_cpu_index", [&] {
      csr_sum_rows<scalar_type, index_t>(src.data_ptr<scalar_type>(), ptr.data_ptr<index_t>(),
                                         perm.defined() ? perm.data_ptr<index_t>() : nullptr,
                                         out.data_ptr<scalar_type>(), rows, entries, features);
    });
  });
  return out;
}

at::Tensor csr_expand(const at::Tensor& rows_data, const at::Tensor& ptr, int64_t num_entries) {
  const int64_t rows = ptr.size(0) - 1;
  const int64_t features = rows_data.size(1);
  at::Tensor out = at::empty({num_entries, features}, rows_data.options());
  if (rows == 0 || num_entries == 0) {
    return out.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES(rows_data.scalar_type(), "kim_gnn_csr_expand_cpu", [&] {
    using scalar_type = scalar_t;
    AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "kim_gnn_csr_expand_cpu_index", [&] {
      csr_expand_rows<scalar_type, index_t>(rows_data.data_ptr<scalar_type>(), ptr.data_ptr<index_t>(),
                                            out.data_ptr<scalar_type>(), rows, num_entries, features);
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace kim_gnn
