// kim_gnn::segment_sum(Tensor src, Tensor ptr) -> Tensor
//
// Receiver-sorted (CSR) segment sum: out[r] = sum of src[ptr[r] .. ptr[r+1]-1]
// along dim 0, in that order, whatever the device or the number of threads.
// src [E, ...] float32/float64 with its entries sorted by row; ptr [R+1]
// int64/int32 with ptr[0] = 0, non-decreasing, ptr[R] = E; out [R, ...].
// Rows with no entries are zero. Backward: each entry gets its row's gradient
// (csr_expand), no reduction at all. First derivatives only.
#include <torch/autograd.h>
#include <torch/library.h>

#include "csr.h"

namespace kim_gnn {

namespace {

class SegmentSum : public torch::autograd::Function<SegmentSum> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& src, const at::Tensor& ptr) {
    check_values("segment_sum", "src", src);
    check_ptr("segment_sum", ptr, src.size(0), src);
    std::vector<int64_t> sizes = src.sizes().vec();
    sizes[0] = ptr.size(0) - 1;
    at::Tensor out = csr_sum(as_rows(src), ptr, at::Tensor()).view(sizes);
    ctx->save_for_backward({ptr});
    ctx->saved_data["entries"] = src.size(0);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    refuse_double_backward("segment_sum");
    const at::Tensor ptr = ctx->get_saved_variables()[0];
    const int64_t entries = ctx->saved_data["entries"].toInt();
    const at::Tensor& grad = grads[0];
    std::vector<int64_t> sizes = grad.sizes().vec();
    sizes[0] = entries;
    at::Tensor grad_src = csr_expand(as_rows(grad), ptr, entries).view(sizes);
    return {grad_src, at::Tensor()};
  }
};

at::Tensor segment_sum(const at::Tensor& src, const at::Tensor& ptr) { return SegmentSum::apply(src, ptr); }

}  // namespace

}  // namespace kim_gnn

TORCH_LIBRARY(kim_gnn, m) {
  m.def("segment_sum(Tensor src, Tensor ptr) -> Tensor", &kim_gnn::segment_sum);
}
