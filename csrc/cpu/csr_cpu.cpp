#include "csr_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

namespace kim_gnn {
namespace cpu {

namespace {

// Calls fn(begin, end) on contiguous row ranges that together cover 0..rows,
// in parallel: one range per thread, of about equal cost, where row r costs
// its entries plus one (the row's own write), times `features`. Splitting by
// rows alone (at::parallel_for over 0..rows) is unbalanced when the rows'
// lengths are: the sender rows of a pruned plan are sorted by level, so the
// first half holds about twice the entries of the second (68% at 4096 atoms),
// and the first of two threads did that much of the work. Each row is still
// summed by one thread in its own order: the result does not depend on the
// split.
template <typename index_t, typename F>
void for_balanced_rows(const index_t* __restrict__ ptr, int64_t rows, int64_t features, const F& fn) {
  const int64_t entries = static_cast<int64_t>(ptr[rows]);
  const int64_t total = entries + rows;  // cost of rows 0..r-1: ptr[r] + r
  const int64_t work = total * std::max<int64_t>(1, features);
  int64_t tasks = std::min<int64_t>(at::get_num_threads(), std::max<int64_t>(1, work / at::internal::GRAIN_SIZE));
  if (at::in_parallel_region()) {
    tasks = 1;
  }
  if (tasks <= 1) {
    fn(int64_t(0), rows);
    return;
  }
  // first row whose cumulative cost reaches `target` (ptr[r] + r is increasing)
  const auto first_row_at = [&](int64_t target) {
    int64_t lo = 0;
    int64_t hi = rows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (static_cast<int64_t>(ptr[mid]) + mid < target) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  };
  at::parallel_for(0, tasks, 1, [&](int64_t task_begin, int64_t task_end) {
    for (int64_t t = task_begin; t < task_end; ++t) {
      const int64_t begin = first_row_at(total * t / tasks);
      const int64_t end = t + 1 == tasks ? rows : first_row_at(total * (t + 1) / tasks);
      if (begin < end) {
        fn(begin, end);
      }
    }
  });
}

template <typename scalar_t, typename index_t>
void csr_sum_rows(const scalar_t* __restrict__ src, const index_t* __restrict__ ptr, const index_t* __restrict__ perm,
                  scalar_t* __restrict__ out, int64_t rows, int64_t entries, int64_t features) {
  for_balanced_rows(ptr, rows, features, [&](int64_t begin, int64_t end) {
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
  for_balanced_rows(ptr, rows, features, [&](int64_t begin, int64_t end) {
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
