#include "csr.h"

#include <ATen/Dispatch.h>
#include <c10/core/GradMode.h>

#include "cpu/csr_cpu.h"
#ifdef KIM_GNN_WITH_CUDA
#include "cuda/csr_cuda.h"
#endif

namespace kim_gnn {

void check_index(const char* op, const char* name, const at::Tensor& index, const at::Tensor& like) {
  TORCH_CHECK(index.scalar_type() == at::kLong || index.scalar_type() == at::kInt, "kim_gnn::", op, ": ", name,
              " must be int64 or int32, got ", index.scalar_type());
  TORCH_CHECK(index.dim() == 1, "kim_gnn::", op, ": ", name, " must be 1-D, got shape ", index.sizes());
  TORCH_CHECK(index.device() == like.device(), "kim_gnn::", op, ": ", name, " is on ", index.device(),
              " but the values are on ", like.device());
}

void check_values(const char* op, const char* name, const at::Tensor& values) {
  TORCH_CHECK(values.scalar_type() == at::kDouble || values.scalar_type() == at::kFloat, "kim_gnn::", op, ": ", name,
              " must be float64 or float32, got ", values.scalar_type());
  TORCH_CHECK(values.dim() >= 1, "kim_gnn::", op, ": ", name, " must have at least one dimension");
  TORCH_CHECK(values.is_cpu() || values.is_cuda(), "kim_gnn::", op, ": ", name, " is on ", values.device(),
              "; the kernels run on CPU and CUDA devices");
#ifndef KIM_GNN_WITH_CUDA
  TORCH_CHECK(!values.is_cuda(), "kim_gnn::", op,
              ": the kim_gnn op library was built without CUDA (no CUDA toolkit or a CPU-only torch at build time); "
              "rebuild it with both present, or run on the CPU");
#endif
}

void check_ptr(const char* op, const at::Tensor& ptr, int64_t entries, const at::Tensor& like) {
  check_index(op, "ptr", ptr, like);
  TORCH_CHECK(ptr.size(0) >= 1, "kim_gnn::", op, ": ptr must hold at least one entry (rows + 1)");
  if (ptr.is_cpu()) {
    at::Tensor p = ptr.contiguous();
    AT_DISPATCH_INDEX_TYPES(p.scalar_type(), "kim_gnn_check_ptr", [&] {
      const index_t* data = p.data_ptr<index_t>();
      const int64_t n = p.size(0);
      TORCH_CHECK(data[0] == 0, "kim_gnn::", op, ": ptr[0] must be 0, got ", static_cast<int64_t>(data[0]));
      for (int64_t i = 1; i < n; ++i) {
        TORCH_CHECK(data[i] >= data[i - 1], "kim_gnn::", op, ": ptr must be non-decreasing (ptr[", i, "] = ",
                    static_cast<int64_t>(data[i]), " < ptr[", i - 1, "] = ", static_cast<int64_t>(data[i - 1]), ")");
      }
      TORCH_CHECK(static_cast<int64_t>(data[n - 1]) == entries, "kim_gnn::", op, ": ptr[-1] = ",
                  static_cast<int64_t>(data[n - 1]), " but there are ", entries, " entries");
    });
  } else {
    check_ptr_tensor_ops(op, ptr, entries);
  }
}

void check_ptr_tensor_ops(const char* op, const at::Tensor& ptr, int64_t entries) {
  // One synchronisation: the checks as tensor ops on ptr's device.
  TORCH_CHECK(ptr.dim() == 1 && ptr.size(0) >= 1, "kim_gnn::", op, ": ptr must be 1-D with at least one entry");
  at::Tensor p = ptr.to(at::kLong);
  at::Tensor bad = p[0].ne(0).logical_or(p[-1].ne(entries));
  if (p.size(0) > 1) {
    bad = bad.logical_or(p.slice(0, 1).lt(p.slice(0, 0, -1)).any());
  }
  TORCH_CHECK(!bad.item<bool>(), "kim_gnn::", op,
              ": ptr is not a CSR row pointer (ptr[0] == 0, non-decreasing, ptr[-1] == ", entries, " entries)");
}

at::Tensor as_rows(const at::Tensor& src) {
  const int64_t n = src.size(0);
  int64_t features = 1;
  for (int64_t d = 1; d < src.dim(); ++d) {
    features *= src.size(d);
  }
  return src.contiguous().view({n, features});
}

at::Tensor csr_sum(const at::Tensor& src, const at::Tensor& ptr, const at::Tensor& perm) {
  at::Tensor p = ptr.contiguous();
  at::Tensor q = perm.defined() ? perm.to(ptr.scalar_type()).contiguous() : perm;
  if (src.is_cuda()) {
#ifdef KIM_GNN_WITH_CUDA
    return cuda::csr_sum(src, p, q);
#endif
  }
  return cpu::csr_sum(src, p, q);
}

at::Tensor csr_expand(const at::Tensor& rows, const at::Tensor& ptr, int64_t num_entries) {
  at::Tensor p = ptr.contiguous();
  if (rows.is_cuda()) {
#ifdef KIM_GNN_WITH_CUDA
    return cuda::csr_expand(rows, p, num_entries);
#endif
  }
  return cpu::csr_expand(rows, p, num_entries);
}

void refuse_double_backward(const char* op) {
  TORCH_CHECK(!c10::GradMode::is_enabled(), "kim_gnn::", op,
              ": a second derivative is not supported (the kim_gnn kernels have first derivatives only: forces "
              "are one backward of the energy); convert the model without --kernels for higher derivatives");
}

}  // namespace kim_gnn
