#include "csr_cuda.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace kim_gnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t work) { return (work + kThreads - 1) / kThreads; }

// out[r, f] = sum over j in [ptr[r], ptr[r+1]) of src[perm ? perm[j] : j, f],
// one thread per (r, f), entries in CSR order: a fixed sum order.
template <typename scalar_t, typename index_t>
__global__ void csr_sum_kernel(const scalar_t* __restrict__ src, const index_t* __restrict__ ptr,
                               const index_t* __restrict__ perm, scalar_t* __restrict__ out, int64_t rows,
                               int64_t entries, int64_t features) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * features) {
    return;
  }
  const int64_t r = t / features;
  const int64_t f = t - r * features;
  const int64_t begin = ptr[r];
  const int64_t end = ptr[r + 1];
  CUDA_KERNEL_ASSERT(begin >= 0 && begin <= end && end <= entries);
  scalar_t acc = scalar_t(0);
  for (int64_t j = begin; j < end; ++j) {
    int64_t e = j;
    if (perm != nullptr) {
      e = perm[j];
      CUDA_KERNEL_ASSERT(e >= 0 && e < entries);
    }
    acc += src[e * features + f];
  }
  out[t] = acc;
}

// out[e, f] = rows[r, f] for ptr[r] <= e < ptr[r+1] (r by binary search in ptr).
template <typename scalar_t, typename index_t>
__global__ void csr_expand_kernel(const scalar_t* __restrict__ rows_data, const index_t* __restrict__ ptr,
                                  scalar_t* __restrict__ out, int64_t rows, int64_t entries, int64_t features) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= entries * features) {
    return;
  }
  const int64_t e = t / features;
  const int64_t f = t - e * features;
  // the last r with ptr[r] <= e
  int64_t lo = 0;
  int64_t hi = rows;  // ptr[rows] == entries > e
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(ptr[mid]) <= e) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  out[t] = rows_data[lo * features + f];
}

}  // namespace

at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm) {
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t rows = ptr.size(0) - 1;
  const int64_t entries = src.size(0);
  const int64_t features = src.size(1);
  at::Tensor out = at::empty({rows, features}, src.options());
  if (rows == 0 || features == 0) {
    return out;
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "kim_gnn_csr_sum_cuda", [&] {
    using scalar_type = scalar_t;
    AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "kim_gnn_csr_sum_cuda_index", [&] {
      csr_sum_kernel<scalar_type, index_t><<<blocks_for(rows * features), kThreads, 0, stream>>>(
          src.data_ptr<scalar_type>(), ptr.data_ptr<index_t>(), perm.defined() ? perm.data_ptr<index_t>() : nullptr,
          out.data_ptr<scalar_type>(), rows, entries, features);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor csr_expand(const at::Tensor& rows_data, const at::Tensor& ptr, int64_t num_entries) {
  const c10::cuda::CUDAGuard guard(rows_data.device());
  const int64_t rows = ptr.size(0) - 1;
  const int64_t features = rows_data.size(1);
  at::Tensor out = at::empty({num_entries, features}, rows_data.options());
  if (rows == 0 || num_entries == 0 || features == 0) {
    return out.zero_();
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(rows_data.scalar_type(), "kim_gnn_csr_expand_cuda", [&] {
    using scalar_type = scalar_t;
    AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "kim_gnn_csr_expand_cuda_index", [&] {
      csr_expand_kernel<scalar_type, index_t><<<blocks_for(num_entries * features), kThreads, 0, stream>>>(
          rows_data.data_ptr<scalar_type>(), ptr.data_ptr<index_t>(), out.data_ptr<scalar_type>(), rows, num_entries,
          features);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace cuda
}  // namespace kim_gnn
