"""The kim_gnn op library (csrc/): values and gradients against aten's
index_add_ / index_select, edge cases, bad input, determinism across calls
and thread counts, TorchScript, CUDA where there is a GPU.

Skipped, with the reason, where the library is not built (CI builds it:
scripts/setup.sh installs kim-gnn with --no-build-isolation)."""

import functools
import os
import subprocess
import sys

import pytest
from skip_policy import missing, require_op_library
import torch

from kim_gnn import kernels
from kim_gnn.errors import KimGnnError

require_op_library(module_level=True)

ops = torch.ops.kim_gnn


def csr(index, num_rows):
    """Stable sorting permutation of index and the row pointer of the sorted index."""
    perm = torch.argsort(index, stable=True)
    ptr = torch.searchsorted(index[perm].contiguous(), torch.arange(num_rows + 1, dtype=index.dtype))
    return perm, ptr


def random_graph(num_edges, num_rows, seed=0, empty_row=None):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, num_rows, (num_edges,), generator=g)
    if empty_row is not None:
        index[index == empty_row] = (empty_row + 1) % num_rows
    return index


def index_add_reference(src, index, num_rows):
    out = torch.zeros((num_rows,) + tuple(src.shape[1:]), dtype=src.dtype)
    return out.index_add_(0, index, src)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(), (5,), (3, 4)])
def test_segment_sum_equals_index_add(dtype, shape):
    num_rows, num_edges = 40, 500
    index = random_graph(num_edges, num_rows, empty_row=7)
    src = torch.randn((num_edges,) + shape, dtype=dtype)
    perm, ptr = csr(index, num_rows)
    out = ops.segment_sum(src[perm], ptr)
    expected = index_add_reference(src[perm], index[perm], num_rows)
    assert out.shape == expected.shape
    # same entries summed in the same order from zero: the same bits
    assert torch.equal(out, expected)
    assert torch.all(out[7] == 0)  # a receiver with no edges


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gather_equals_index_select_and_its_backward_index_add(dtype):
    num_rows, num_edges, features = 30, 400, 6
    index = random_graph(num_edges, num_rows, seed=1, empty_row=3)
    perm, ptr = csr(index, num_rows)
    x = torch.randn(num_rows, features, dtype=dtype, requires_grad=True)
    out = ops.gather(x, index, perm, ptr)
    assert torch.equal(out, x.detach().index_select(0, index))
    grad_out = torch.randn(num_edges, features, dtype=dtype)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    expected = index_add_reference(grad_out[perm], index[perm], num_rows)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    assert torch.all(grad[3] == 0)


def test_gradcheck_float64():
    num_rows, num_edges = 12, 60
    index = random_graph(num_edges, num_rows, seed=2, empty_row=0)
    perm, ptr = csr(index, num_rows)
    src = torch.randn(num_edges, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: ops.segment_sum(s, ptr), (src,))
    x = torch.randn(num_rows, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: ops.gather(a, index, perm, ptr), (x,))
    # the two chained as a layer chains them: gather senders, sum into receivers
    receivers = random_graph(num_edges, num_rows, seed=3)
    order = torch.argsort(receivers, stable=True)
    senders = index[order]
    s_perm, s_ptr = csr(senders, num_rows)
    _, r_ptr = csr(receivers[order], num_rows)
    y = torch.randn(num_rows, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a: ops.segment_sum(ops.gather(a, senders, s_perm, s_ptr).sin(), r_ptr), (y,))


def test_empty_inputs():
    ptr = torch.zeros(5, dtype=torch.int64)
    src = torch.zeros((0, 3), dtype=torch.float64, requires_grad=True)
    out = ops.segment_sum(src, ptr)
    assert out.shape == (4, 3) and torch.all(out == 0)
    out.sum().backward()
    assert src.grad.shape == (0, 3)
    assert ops.segment_sum(torch.zeros((0,), dtype=torch.float64), torch.zeros(1, dtype=torch.int64)).shape == (0,)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.int64)
    out = ops.gather(x, empty, empty, torch.zeros(5, dtype=torch.int64))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert torch.all(x.grad == 0)


def test_int32_indices_give_the_int64_results():
    num_rows, num_edges = 20, 300
    index = random_graph(num_edges, num_rows, seed=4)
    perm, ptr = csr(index, num_rows)
    src = torch.randn(num_edges, 5, dtype=torch.float64)
    assert torch.equal(ops.segment_sum(src, ptr.int()), ops.segment_sum(src, ptr))
    x = torch.randn(num_rows, 5, dtype=torch.float64, requires_grad=True)
    grads = []
    for cast in (lambda t: t, lambda t: t.int()):
        out = ops.gather(x, cast(index), cast(perm), cast(ptr))
        grads.append(torch.autograd.grad(out, x, src)[0])
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("call,message", [
    (lambda: ops.segment_sum(torch.ones(3, 2), torch.tensor([0, 2, 1, 3])), "non-decreasing"),
    (lambda: ops.segment_sum(torch.ones(3, 2), torch.tensor([0, 1, 2])), "ptr[-1] = 2 but there are 3 entries"),
    (lambda: ops.segment_sum(torch.ones(3, 2), torch.tensor([1, 2, 3])), "ptr[0] must be 0"),
    (lambda: ops.segment_sum(torch.ones(3, 2), torch.tensor([0.0, 3.0])), "ptr must be int64 or int32"),
    (lambda: ops.segment_sum(torch.ones(3, 2, dtype=torch.float16), torch.tensor([0, 3])), "float64 or float32"),
    (lambda: ops.segment_sum(torch.ones(3, 2), torch.tensor([[0, 3]])), "ptr must be 1-D"),
    (lambda: ops.gather(torch.ones(3, 2), torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([0, 1, 1, 2])),
     "perm and ptr do not sort index"),
    (lambda: ops.gather(torch.ones(3, 2), torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([0, 1, 2])),
     "expected rows of x + 1 = 4"),
    (lambda: ops.gather(torch.ones(3, 2), torch.tensor([0, 2]), torch.tensor([0]), torch.tensor([0, 1, 1, 2])),
     "perm has 1 entries, index 2"),
])
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(RuntimeError) as info:
        call()
    assert message in str(info.value).splitlines()[0]
    assert "kim_gnn::" in str(info.value).splitlines()[0]


def test_the_device_side_checks_on_the_cpu():
    """The checks gather and segment_sum run off the CPU (tensor ops),
    exercised here on the CPU through kim_gnn::_check_gather_plan."""
    index = random_graph(80, 9, seed=12, empty_row=4)
    perm, ptr = csr(index, 9)
    ops._check_gather_plan(index, perm, ptr)  # consistent: no error
    ops._check_gather_plan(index.int(), perm.int(), ptr.int())
    empty = torch.zeros(0, dtype=torch.int64)
    ops._check_gather_plan(empty, empty, torch.zeros(3, dtype=torch.int64))
    bad_perm = perm.clone()
    bad_perm[[0, -1]] = bad_perm[[-1, 0]]
    for args, message in [
        ((index, bad_perm, ptr), "perm and ptr do not sort index"),
        ((index, perm + 1, ptr), "perm holds entries outside 0..79"),
        ((index, perm, ptr.flip(0)), "ptr is not a CSR row pointer"),
        ((index, perm, ptr[:-1]), "ptr is not a CSR row pointer"),
        ((index, perm, empty), "ptr must be 1-D with at least one entry"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            ops._check_gather_plan(*args)


def test_second_derivative_raises_clearly():
    num_rows, num_edges = 10, 50
    index = random_graph(num_edges, num_rows, seed=5)
    perm, ptr = csr(index, num_rows)
    x = torch.randn(num_rows, 3, dtype=torch.float64, requires_grad=True)
    energy = ops.segment_sum(ops.gather(x, index, perm, ptr) ** 2, ptr).sum()
    (force,) = torch.autograd.grad(energy, x)  # one backward: fine
    assert force.shape == x.shape
    energy = ops.segment_sum(ops.gather(x, index, perm, ptr) ** 2, ptr).sum()
    with pytest.raises(RuntimeError, match="a second derivative is not supported"):
        (force,) = torch.autograd.grad(energy, x, create_graph=True)
        force.sum().backward()


def _big_case(dtype=torch.float64):
    num_rows, num_edges, features = 3000, 60000, 16
    index = random_graph(num_edges, num_rows, seed=6)
    perm, ptr = csr(index, num_rows)
    src = torch.randn(num_edges, features, dtype=dtype, generator=torch.Generator().manual_seed(7))
    x = torch.randn(num_rows, features, dtype=dtype, generator=torch.Generator().manual_seed(8))
    return index, perm, ptr, src, x


def _outputs(index, perm, ptr, src, x):
    out = ops.segment_sum(src[perm], ptr)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ops.gather(xg, index, perm, ptr), xg, src)
    return out, grad


def test_repeated_calls_and_thread_counts_are_bit_identical():
    case = _big_case()
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4, 1):
            torch.set_num_threads(threads)
            results.append(_outputs(*case))
            results.append(_outputs(*case))
    finally:
        torch.set_num_threads(previous)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0])
        assert torch.equal(grad, results[0][1])



def test_rows_of_unequal_length_split_between_threads():
    # The CPU kernels split the rows between threads by their entries (a
    # pruned plan's sender rows hold most entries in the first rows): one
    # row with a third of the entries, dense rows, then sparse and empty
    # ones. Values as index_add_'s, bits the same at every thread count.
    num_rows = 4000
    dense = torch.arange(1000).repeat_interleave(20)
    sparse = torch.arange(1000, 3000, 2)  # rows 3000.. and every odd row above 1000: empty
    index = torch.cat([torch.full((15000,), 7), dense, sparse])
    index = index[torch.randperm(index.shape[0], generator=torch.Generator().manual_seed(3))]
    perm, ptr = csr(index, num_rows)
    src = torch.randn(index.shape[0], 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = torch.randn(num_rows, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 7):
            torch.set_num_threads(threads)
            results.append(_outputs(index, perm, ptr, src, x))
    finally:
        torch.set_num_threads(previous)
    out, grad = results[0]
    torch.testing.assert_close(out, index_add_reference(src, index, num_rows), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, index_add_reference(src, index, num_rows), rtol=1e-12, atol=1e-12)
    sorted_src = src[perm].requires_grad_(True)
    torch.set_num_threads(2)
    try:
        (expanded,) = torch.autograd.grad(ops.segment_sum(sorted_src, ptr), sorted_src, x)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(expanded, x[index[perm]])  # the backward of the sum: each entry its row's gradient
    for other_out, other_grad in results[1:]:
        assert torch.equal(other_out, out)
        assert torch.equal(other_grad, grad)


def test_torchscript_and_freeze():
    class Layer(torch.nn.Module):
        def forward(self, x: torch.Tensor, index: torch.Tensor, perm: torch.Tensor, ptr: torch.Tensor):
            return torch.ops.kim_gnn.segment_sum(torch.ops.kim_gnn.gather(x, index, perm, ptr), ptr)

    num_rows = 8
    index = torch.sort(random_graph(40, num_rows, seed=9)).values
    perm, ptr = csr(index, num_rows)
    x = torch.randn(num_rows, 3, dtype=torch.float64)
    frozen = torch.jit.freeze(torch.jit.script(Layer()).eval())
    assert torch.equal(frozen(x, index, perm, ptr), Layer()(x, index, perm, ptr))


def test_library_is_plain_libtorch():
    """No libtorch_python / libpython: a C++ process can dlopen it."""
    path = kernels.library_path()
    with open(path, "rb") as fh:
        data = fh.read()
    assert b"libtorch_python" not in data
    assert b"libpython" not in data
    code = (f"import torch; torch.ops.load_library({path!r}); "
            "print(torch.ops.kim_gnn.segment_sum(torch.ones(2, 1), torch.tensor([0, 2])).item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2.0"


def test_missing_library_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KIM_GNN_OPS_LIBRARY", str(tmp_path / "nothing.so"))
    with pytest.raises(KimGnnError, match="op library is not built .* build it with pip install --no-build-isolation"):
        kernels.library_path()


def cuda(test):
    """A CUDA test: marked ``cuda``, so deselected where torch sees no CUDA
    device (tests/conftest.py: CI has none; a GPU machine runs them with
    ``-m cuda``). Where there is a device it needs the op library built with
    CUDA: without it the test skips, or fails where every component is
    required (tests/skip_policy.py)."""
    @functools.wraps(test)
    def run():
        if not kernels.build_info().get("cuda"):
            missing("the op library was built without CUDA (no CUDA toolkit or a CPU torch at build time)")
        test()

    return pytest.mark.cuda(run)


@cuda
def test_cuda_matches_cpu_and_is_deterministic():
    index, perm, ptr, src, x = _big_case()
    cpu = _outputs(index, perm, ptr, src, x)
    dev = [t.cuda() for t in (index, perm, ptr, src, x)]
    first = _outputs(*dev)
    for _ in range(3):
        again = _outputs(*dev)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    # one thread per row sums in CSR order on both devices
    torch.testing.assert_close(first[0].cpu(), cpu[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(first[1].cpu(), cpu[1], rtol=1e-12, atol=1e-12)


@cuda
def test_cuda_gradcheck_and_empty():
    index = random_graph(50, 10, seed=11).cuda()
    perm = torch.argsort(index, stable=True)
    ptr = torch.searchsorted(index[perm].contiguous(), torch.arange(11, device="cuda"))
    x = torch.randn(10, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: ops.segment_sum(ops.gather(a, index, perm, ptr)[perm], ptr), (x,))
    out = ops.segment_sum(torch.zeros((0, 2), device="cuda"), torch.zeros(4, dtype=torch.int64, device="cuda"))
    assert out.shape == (3, 2) and torch.all(out == 0)


def test_cuda_tests_are_deselected_by_their_marker_not_skipped():
    """The CUDA tests are marked ``cuda`` and carry no skip of their own:
    where torch sees no CUDA device tests/conftest.py deselects them and says
    how many in one summary line (tests/test_conftest.py runs that on a small
    suite), so CI shows no skip for them."""
    for test in (test_cuda_matches_cpu_and_is_deterministic, test_cuda_gradcheck_and_empty):
        names = {m.name for m in test.pytestmark}
        assert "cuda" in names and "skipif" not in names and "skip" not in names, (test.__name__, names)
    assert os.path.isfile(kernels.library_path())


class _KernelBlocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from kim_gnn.runtime.aggregation import KernelAggregation

        self.aggregation = KernelAggregation()

    def forward(self, values: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor, num_in: int,
                num_out: int, edge_chunk: int):
        route = self.aggregation.plan(senders, receivers, num_in, num_out)
        sizes = self.aggregation.block_sizes(receivers, route, edge_chunk)
        blocks = list(torch.split(values, sizes))
        return sizes, route[0], self.aggregation.scatter_blocks(blocks, receivers, num_out, route)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("edge_chunk", [1, 5, 7, 1000])
def test_kernel_blocks_end_at_receivers_and_sum_as_one_segment_sum(dtype, edge_chunk):
    """``KernelAggregation.block_sizes`` ends every block at a receiver
    boundary of the receiver-sorted edges, and ``scatter_blocks`` of those
    blocks gives the bits and the gradients of one ``segment_sum`` of all
    edges (each receiver summed within one block, in the kernel's order),
    empty receivers (in the middle and at the end) included; blocks split
    elsewhere are summed as their concatenation."""
    module = torch.jit.script(_KernelBlocks())
    receivers = torch.sort(random_graph(60, 9, seed=3, empty_row=4)).values
    receivers[receivers == 8] = 7  # the last receiver has no edge
    senders = random_graph(60, 11, seed=4)
    values = torch.randn(60, 3, 2, dtype=dtype, generator=torch.Generator().manual_seed(5))
    leaf = values.clone().requires_grad_(True)
    sizes, ptr, out = module(leaf, senders, receivers, 11, 9, edge_chunk)
    assert sum(sizes) == 60 and all(s > 0 for s in sizes)
    ends = torch.cumsum(torch.tensor(sizes), 0)
    assert all(int(e) in ptr.tolist() for e in ends), (sizes, ptr)
    if edge_chunk < 60:
        assert len(sizes) > 1
    weights = torch.arange(out.numel(), dtype=dtype).view(out.shape)
    (out * weights).sum().backward()
    whole_leaf = values.clone().requires_grad_(True)
    whole = ops.segment_sum(whole_leaf, ptr)
    (whole * weights).sum().backward()
    assert out.shape == (9, 3, 2) and torch.equal(out, whole) and torch.equal(leaf.grad, whole_leaf.grad)
    # blocks that do not end at receivers: the concatenation's sum
    from kim_gnn.runtime.aggregation import KernelAggregation

    route = KernelAggregation().plan(senders, receivers, 11, 9)
    odd = KernelAggregation().scatter_blocks(list(torch.split(values, [7, 53])), receivers, 9, route)
    assert torch.equal(odd, ops.segment_sum(values, ptr))
