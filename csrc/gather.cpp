// kim_gnn::gather(Tensor x, Tensor index, Tensor perm, Tensor ptr) -> Tensor
//
// out[e] = x[index[e]] (index_select along dim 0), with a deterministic
// backward. The backward of a gather is a scatter-add into the gathered rows;
// here it is a CSR sum over the entries sorted by their row: perm [E] sorts
// the entries by index (stably), ptr [N+1] is the row pointer of the sorted
// index (N = x.size(0)), so grad_x[n] = sum of grad_out[perm[j]] for
// ptr[n] <= j < ptr[n+1], in that order. Both are inputs because the caller
// has them (or computes them once per graph and reuses them for every layer).
// First derivatives only.
#include <torch/autograd.h>
#include <torch/library.h>

#include <ATen/Dispatch.h>

#include "csr.h"

namespace kim_gnn {

namespace {

// The check below with tensor ops on the tensors' device (two syncs): used
// off the CPU, and on the CPU by kim_gnn::_check_gather_plan (tests).
void check_sorted_by_tensor_ops(const at::Tensor& index, const at::Tensor& perm, const at::Tensor& ptr) {
  const int64_t rows = ptr.size(0) - 1;
  const int64_t entries = index.size(0);
  at::Tensor q = perm.to(at::kLong);
  at::Tensor bad = q.lt(0).logical_or(q.ge(entries)).any();
  TORCH_CHECK(!bad.item<bool>(), "kim_gnn::gather: perm holds entries outside 0..", entries - 1);
  at::Tensor counts = ptr.to(at::kLong).diff();
  at::Tensor rows_of = at::repeat_interleave(at::arange(rows, counts.options()), counts, /*dim=*/0,
                                             /*output_size=*/entries);
  TORCH_CHECK(index.to(at::kLong).index_select(0, q).equal(rows_of),
              "kim_gnn::gather: perm and ptr do not sort index");
}

// perm sorts index and ptr is its row pointer: index[perm[j]] == n for
// ptr[n] <= j < ptr[n+1] (CPU: a loop; elsewhere: tensor ops).
void check_sorted_by(const at::Tensor& index, const at::Tensor& perm, const at::Tensor& ptr) {
  const int64_t rows = ptr.size(0) - 1;
  const int64_t entries = index.size(0);
  if (index.is_cpu()) {
    at::Tensor i = index.to(at::kLong).contiguous();
    at::Tensor q = perm.to(at::kLong).contiguous();
    at::Tensor p = ptr.to(at::kLong).contiguous();
    const int64_t* id = i.data_ptr<int64_t>();
    const int64_t* pe = q.data_ptr<int64_t>();
    const int64_t* pt = p.data_ptr<int64_t>();
    for (int64_t n = 0; n < rows; ++n) {
      for (int64_t j = pt[n]; j < pt[n + 1]; ++j) {
        TORCH_CHECK(pe[j] >= 0 && pe[j] < entries, "kim_gnn::gather: perm[", j, "] = ", pe[j], " is outside 0..",
                    entries - 1);
        TORCH_CHECK(id[pe[j]] == n, "kim_gnn::gather: perm and ptr do not sort index (index[perm[", j, "]] = ",
                    id[pe[j]], ", expected ", n, ")");
      }
    }
    return;
  }
  check_sorted_by_tensor_ops(index, perm, ptr);
}

class Gather : public torch::autograd::Function<Gather> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& index,
                            const at::Tensor& perm, const at::Tensor& ptr) {
    check_values("gather", "x", x);
    check_index("gather", "index", index, x);
    check_index("gather", "perm", perm, x);
    TORCH_CHECK(perm.size(0) == index.size(0), "kim_gnn::gather: perm has ", perm.size(0), " entries, index ",
                index.size(0));
    check_ptr("gather", ptr, index.size(0), x);
    TORCH_CHECK(ptr.size(0) == x.size(0) + 1, "kim_gnn::gather: ptr has ", ptr.size(0),
                " entries, expected rows of x + 1 = ", x.size(0) + 1);
    check_sorted_by(index, perm, ptr);
    ctx->save_for_backward({perm, ptr});
    ctx->saved_data["sizes"] = x.sizes().vec();
    return x.index_select(0, index);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    refuse_double_backward("gather");
    const auto saved = ctx->get_saved_variables();
    const std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
    at::Tensor grad_x = csr_sum(as_rows(grads[0]), saved[1], saved[0]).view(sizes);
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor gather(const at::Tensor& x, const at::Tensor& index, const at::Tensor& perm, const at::Tensor& ptr) {
  return Gather::apply(x, index, perm, ptr);
}

// The device-side checks of gather's arguments, run on any device (the
// tests run them on the CPU, where gather itself checks with loops).
void check_gather_plan(const at::Tensor& index, const at::Tensor& perm, const at::Tensor& ptr) {
  check_ptr_tensor_ops("gather", ptr, index.size(0));
  check_sorted_by_tensor_ops(index, perm, ptr);
}

}  // namespace

}  // namespace kim_gnn

TORCH_LIBRARY_FRAGMENT(kim_gnn, m) {
  m.def("gather(Tensor x, Tensor index, Tensor perm, Tensor ptr) -> Tensor", &kim_gnn::gather);
  m.def("_check_gather_plan(Tensor index, Tensor perm, Tensor ptr) -> ()", &kim_gnn::check_gather_plan);
}
