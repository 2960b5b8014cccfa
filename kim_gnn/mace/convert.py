"""Recognise a MACE / ScaleShiftMACE model (mace-torch 0.3.x) and rewrite it
as a staged KIM model.

Accepted: the whole pickled module that ``mace_run_train`` saves
(``*.model``) or the same module in memory, of class ``MACE`` or
``ScaleShiftMACE``, built on e3nn, with these parts:

    node_embedding, spherical_harmonics, radial_embedding
      (Bessel / Gaussian / Chebyshev basis, optional Agnesi or Soft transform),
    optional ZBL pair_repulsion_fn,
    interactions: RealAgnostic{,Residual,Density,DensityResidual}InteractionBlock,
    products: EquivariantProductBasisBlock,
    readouts: Linear / NonLinear / NonLinearBias readout blocks,
    atomic_energies_fn (E0), scale_shift (ScaleShiftMACE).

Everything else is refused by name: other model classes (dipoles,
dielectric, charges, fields), per-structure embeddings, cuEquivariance and
OpenEquivariance layers, and the interaction blocks TorchScript cannot
compile.

One module (about 550 lines) on purpose: the accepted parts above are checked
in the order they are listed, each refusal (by class name, with the way out
where there is one) next to its check; the staged form lives in staged.py and
the original's periodic evaluation in reference.py.
"""

import copy
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import torch

from .. import contract
from .._version import __version__
from ..contract import StagedModelSpec
from ..errors import KimGnnError, UnsupportedModelError, first_line, warn_not_applied
from ..reference import default_dtype
from ..torchscript_graphs import drop_whole_dimension_slices
from ..archives import has_torchscript_member, load_pickled, pickle_bytes, zip_names

SUPPORTED_MODEL_CLASSES = ("MACE", "ScaleShiftMACE")
SUPPORTED_INTERACTIONS = (
    "RealAgnosticInteractionBlock",
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
)
#: Interaction blocks of mace-torch 0.3.x that TorchScript cannot compile.
UNSCRIPTABLE_INTERACTIONS = (
    "RealAgnosticResidualNonLinearInteractionBlock",
    "RealAgnosticAttResidualInteractionBlock",
)
READOUT_KINDS = {"LinearReadoutBlock": "linear", "NonLinearReadoutBlock": "nonlinear",
                 "NonLinearBiasReadoutBlock": "nonlinear_bias"}
RADIAL_BASES = ("BesselBasis", "GaussianBasis", "ChebychevBasis")
DISTANCE_TRANSFORMS = ("AgnesiTransform", "SoftTransform")

#: Pickle module names that mark a model built on an accelerated backend.
ACCELERATED_BACKENDS = {
    "cuequivariance": ("cuEquivariance", "mace.cli.convert_cueq_e3nn"),
    "openequivariance": ("OpenEquivariance", "mace.cli.convert_oeq_e3nn"),
}


@dataclass
class MACEModelInfo:
    model_class: str
    r_max: float
    num_layers: int
    species: List[str]
    atomic_numbers: List[int]
    heads: List[str]
    head: str
    model_dtype: torch.dtype
    interactions: List[str]
    readouts: List[str]
    correlation: List[int]
    max_ell: int
    pair_repulsion: bool
    distance_transform: str
    radial_basis: str
    num_parameters: int
    mace_version: str
    source_file: str = ""
    sha256: str = ""
    details: Dict[str, str] = field(default_factory=dict)

    @property
    def influence_distance(self) -> float:
        return self.r_max * self.num_layers


def import_mace():
    """Import mace-torch quietly: on import it prints a notice about
    cuEquivariance to stdout, where kim-gnn writes its results (JSON)."""
    import contextlib
    import io
    import sys

    if "mace.modules" in sys.modules:
        return sys.modules["mace"]
    buffer = io.StringIO()
    try:
        # e3nn 0.4.4 torch.loads its constants on import; with
        # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (which it needs on torch >= 2.6)
        # torch warns about it on every command. Nothing a user can act on.
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            import mace.data  # noqa: F401
            import mace.modules  # noqa: F401
            import mace.tools  # noqa: F401
    except ImportError as exc:
        from ..adapters import environment_hint

        raise KimGnnError(f"MACE models need mace-torch installed ({exc}); {environment_hint('mace')}") from None
    for line in buffer.getvalue().splitlines():
        if line.strip() and "cuequivariance" not in line.lower():
            print(line, file=sys.stderr)
    return sys.modules["mace"]


def _convert_back_command(backend_module: str, path: str) -> str:
    out = os.path.splitext(os.path.basename(path))[0] + "_e3nn.model"
    return (
        f"python -c \"import torch; from {backend_module} import run; "
        f"torch.save(run('{path}'), '{out}')\""
    )


def _refuse_accelerated_file(path: str, data: bytes) -> None:
    for marker, (name, module) in ACCELERATED_BACKENDS.items():
        if marker.encode() in data:
            raise UnsupportedModelError(
                f"{path} is a MACE model built on {name} layers; convert it back to e3nn first "
                f"(with mace-torch and {name} installed):\n    {_convert_back_command(module, path)}\n"
                "then convert the e3nn model"
            )


def load_mace_model(path) -> torch.nn.Module:
    """Load a pickled MACE ``.model`` file, or fail with a clear message."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KimGnnError(f"no such file: {path}")
    data = pickle_bytes(path)
    if data is None:
        raise KimGnnError(f"{path} is not a PyTorch archive (torch.save) that could hold a MACE model")
    _refuse_accelerated_file(path, data)
    names = zip_names(path)
    if has_torchscript_member(names):
        if any("/mace/" in n for n in names):
            raise UnsupportedModelError(
                f"{path} is a compiled (TorchScript) MACE model; convert the .model file it was compiled from"
            )
        raise UnsupportedModelError(f"{path} is a TorchScript file, not a pickled MACE .model")
    import_mace()  # the pickle refers to its classes
    try:
        obj = load_pickled(path, quiet=True)
    except Exception as exc:
        raise KimGnnError(f"{path} cannot be loaded as a MACE model ({first_line(exc)})") from None
    if isinstance(obj, dict):
        keys = ", ".join(sorted(map(str, obj))[:5])
        raise UnsupportedModelError(
            f"{path} holds a dict ({keys}), not a model: it is a training checkpoint or state dict; "
            "convert the .model file that mace_run_train writes next to it"
        )
    if not isinstance(obj, torch.nn.Module):
        raise UnsupportedModelError(f"{path} holds a {type(obj).__name__}, not a MACE model")
    return obj


def _class_name(module) -> str:
    return type(module).__name__


def _model_dtype(model) -> torch.dtype:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    dtypes |= {b.dtype for b in model.buffers() if b.is_floating_point()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes)) or "none"
        raise UnsupportedModelError(
            f"the model's floating-point parameters and buffers are of dtype(s) {names}; expected all float32 "
            "or all float64 (use model.float() or model.double())"
        )
    return next(iter(dtypes))


def _refuse_accelerated_module(model) -> None:
    for name, module in model.named_modules():
        kind = type(module).__module__ or ""
        for marker, (backend, command_module) in ACCELERATED_BACKENDS.items():
            if kind.startswith(marker):
                raise UnsupportedModelError(
                    f"module {name!r} ({type(module).__name__}) is a {backend} layer; convert the model back "
                    f"to e3nn first: `from {command_module} import run; model = run(model)`"
                )
        for attr, backend, command_module in (("cueq_config", "cuEquivariance", "mace.cli.convert_cueq_e3nn"),
                                              ("oeq_config", "OpenEquivariance", "mace.cli.convert_oeq_e3nn")):
            config = getattr(module, attr, None)
            if config is not None and getattr(config, "enabled", True):
                raise UnsupportedModelError(
                    f"module {name or 'model'!r} is configured for {backend} ({attr}); convert the model back "
                    f"to e3nn first: `from {command_module} import run; model = run(model)`"
                )


def choose_head(heads: List[str], head: Optional[str]) -> str:
    """The head to convert: the one asked for, else the only one, else the
    one named 'default' (any case), as MACE's own calculator chooses."""
    if head is not None:
        if head in heads:
            return head
        # Head names are matched exactly first, then ignoring case (mace-torch
        # names its default head "Default"; users type "default").
        folded = [h for h in heads if h.lower() == head.lower()]
        if len(folded) == 1:
            return folded[0]
        raise KimGnnError(f"the model has no head {head!r}; its heads are: {', '.join(heads)}")
    if len(heads) == 1:
        return heads[0]
    defaults = [h for h in heads if h.lower() == "default"]
    if not defaults:
        raise KimGnnError(
            f"the model has several heads ({', '.join(heads)}) and none is named 'default'; choose one with --head"
        )
    return defaults[0]


def _symbols(atomic_numbers: List[int]) -> List[str]:
    from ase.data import chemical_symbols

    bad = [z for z in atomic_numbers if not 0 < z < len(chemical_symbols)]
    if bad:
        raise UnsupportedModelError(f"the model's atomic numbers {bad} are not elements")
    if len(set(atomic_numbers)) != len(atomic_numbers):
        raise UnsupportedModelError(f"the model lists atomic numbers {atomic_numbers} with repeats")
    return [chemical_symbols[z] for z in atomic_numbers]


def _mace_version() -> str:
    try:
        from importlib.metadata import version

        return version("mace-torch")
    except Exception:
        return ""


def inspect_mace(model_or_path, head: Optional[str] = None) -> MACEModelInfo:
    """What a MACE model is, checked part by part; refuses what cannot be
    converted exactly, naming the part."""
    model, source_file, sha = _load_source(model_or_path)
    return _info(model, head, source_file, sha)


def _load_source(model_or_path):
    """(model, source file name, its SHA-256) of a ``.model`` path or an in-memory module."""
    if isinstance(model_or_path, torch.nn.Module):
        return model_or_path, "<in-memory model>", ""
    path = os.fspath(model_or_path)
    return load_mace_model(path), os.path.basename(path), contract.file_sha256(path)


def _info(model, head: Optional[str], source_file: str = "", sha: str = "") -> MACEModelInfo:
    cls = _class_name(model)
    if cls not in SUPPORTED_MODEL_CLASSES:
        raise UnsupportedModelError(
            f"unsupported model class {cls!r}: kim-gnn converts energy models of class "
            f"{' or '.join(SUPPORTED_MODEL_CLASSES)}"
        )
    _refuse_accelerated_module(model)
    for attr in ("joint_embedding", "embedding_readout"):
        if hasattr(model, attr):
            specs = ", ".join(getattr(model, "embedding_specs", {}) or {}) or attr
            raise UnsupportedModelError(
                f"the model embeds per-structure inputs ({specs}) through {attr!r}: not a function of positions "
                "and species alone, cannot be a KIM model"
            )
    if getattr(model, "lammps_mliap", False):
        raise UnsupportedModelError("the model is set up for LAMMPS ML-IAP (lammps_mliap=True); convert the plain model")

    interactions = [_class_name(m) for m in model.interactions]
    for i, kind in enumerate(interactions):
        if kind in UNSCRIPTABLE_INTERACTIONS:
            raise UnsupportedModelError(
                f"interaction {i} is a {kind}, which TorchScript cannot compile in mace-torch "
                f"{_mace_version() or '0.3.x'}; the KIM TorchML driver runs TorchScript only"
            )
        if kind not in SUPPORTED_INTERACTIONS:
            raise UnsupportedModelError(
                f"interaction {i} is a {kind}; supported interaction blocks: {', '.join(SUPPORTED_INTERACTIONS)}"
            )
    products = [_class_name(m) for m in model.products]
    if len(products) != len(interactions) or any(p != "EquivariantProductBasisBlock" for p in products):
        raise UnsupportedModelError(f"unsupported product blocks {products} (expected EquivariantProductBasisBlock per interaction)")
    readouts = [_class_name(m) for m in model.readouts]
    for i, kind in enumerate(readouts):
        if kind not in READOUT_KINDS:
            raise UnsupportedModelError(f"readout {i} is a {kind}; supported readouts: {', '.join(READOUT_KINDS)}")
    if len(readouts) not in (1, len(interactions)):
        raise UnsupportedModelError(f"{len(readouts)} readouts for {len(interactions)} interactions: unsupported layout")

    radial = model.radial_embedding
    basis = _class_name(radial.bessel_fn)
    if basis not in RADIAL_BASES:
        raise UnsupportedModelError(f"unsupported radial basis {basis}")
    transform = _class_name(radial.distance_transform) if hasattr(radial, "distance_transform") else "None"
    if transform != "None" and transform not in DISTANCE_TRANSFORMS:
        raise UnsupportedModelError(f"unsupported distance transform {transform}")
    pair = hasattr(model, "pair_repulsion")
    if pair and _class_name(model.pair_repulsion_fn) != "ZBLBasis":
        raise UnsupportedModelError(f"unsupported pair repulsion {_class_name(model.pair_repulsion_fn)}")
    if cls == "ScaleShiftMACE" and _class_name(model.scale_shift) != "ScaleShiftBlock":
        raise UnsupportedModelError(f"unsupported scale/shift block {_class_name(model.scale_shift)}")

    heads = [str(h) for h in (getattr(model, "heads", None) or ["Default"])]
    chosen = choose_head(heads, head)
    atomic_numbers = [int(z) for z in model.atomic_numbers.tolist()]
    correlation = [int(p.symmetric_contractions.contractions[0].correlation)
                   if hasattr(p.symmetric_contractions, "contractions") else -1 for p in model.products]
    sh = model.spherical_harmonics
    max_ell = max(ir.l for _, ir in sh.irreps_out) if hasattr(sh, "irreps_out") else -1
    return MACEModelInfo(
        model_class=cls,
        r_max=float(model.r_max),
        num_layers=len(interactions),
        species=_symbols(atomic_numbers),
        atomic_numbers=atomic_numbers,
        heads=heads,
        head=chosen,
        model_dtype=_model_dtype(model),
        interactions=interactions,
        readouts=readouts,
        correlation=correlation,
        max_ell=max_ell,
        pair_repulsion=pair,
        distance_transform=transform,
        radial_basis=basis,
        num_parameters=sum(p.numel() for p in model.parameters()),
        mace_version=_mace_version(),
        source_file=source_file,
        sha256=sha,
    )


def _copy_model(model):
    """A deep copy to compile (e3nn's compile replaces submodules in place).

    mace's ``EmptyParam`` (the zero weights of symmetric-contraction paths that
    vanish, e.g. with ``use_so3``) cannot be deep-copied by ``copy.deepcopy``;
    those are copied by hand through the memo."""
    memo = {}
    for p in model.parameters():
        if type(p) is not torch.nn.Parameter:
            try:
                copy.deepcopy(p)
            except TypeError:
                memo[id(p)] = type(p)(p.data.clone())
    return copy.deepcopy(model, memo)


def _head_readout(readout, kind: str, head: int, num_heads: int, dtype: torch.dtype):
    from .staged import LinearHeadReadout, NonLinearHeadReadout

    if kind == "linear":
        return LinearHeadReadout(readout, head)
    mask = None
    if num_heads > 1 and getattr(readout, "num_heads", 1) > 1:
        # MACE's mask_head: hidden channels in blocks of width/num_heads, one block per head.
        width = readout.linear_1.irreps_out.dim
        mask = torch.zeros(width // num_heads, num_heads, dtype=dtype)
        mask[:, head] = 1
        mask = mask.t().reshape(width).contiguous()
    return NonLinearHeadReadout(readout, head, mask, with_mid=(kind == "nonlinear_bias"))


#: Parts of a RealAgnostic* interaction block that ReceiverInteraction calls itself.
INTERACTION_PARTS = {"linear_up", "conv_tp_weights", "conv_tp", "linear", "skip_tp", "reshape"}


def receiver_interaction_reason(block, kind: str) -> str:
    """"" where the block has exactly the parts ``ReceiverInteraction``
    reimplements the order of; else why not (the block then runs whole:
    still pruned, only not on receivers alone)."""
    density = "Density" in kind
    parts = INTERACTION_PARTS | ({"density_fn"} if density else set())
    children = {name for name, _ in block.named_children()}
    if kind not in SUPPORTED_INTERACTIONS:
        return f"{kind} is not one of the RealAgnostic blocks it knows"
    if hasattr(block, "conv_fusion"):
        return f"{kind} uses a fused convolution (conv_fusion)"
    if children != parts:
        extra, missing = sorted(children - parts), sorted(parts - children)
        return (f"{kind} parts differ from mace-torch 0.3's" + (f" (extra: {' '.join(extra)})" if extra else "")
                + (f" (missing: {' '.join(missing)})" if missing else ""))
    if not isinstance(getattr(block, "avg_num_neighbors", None), (int, float)):
        return f"{kind}'s avg_num_neighbors is not a number"
    return ""


def _receiver_interaction(block, kind: str, kernels: str = "aten"):
    """The block as a ReceiverInteraction where it has exactly the parts that
    one reimplements the order of, else whole (still pruned, only not on
    receivers alone)."""
    from ..runtime import make_aggregation
    from .staged import ReceiverInteraction, WholeInteraction

    if receiver_interaction_reason(block, kind):
        return WholeInteraction(block)
    return ReceiverInteraction(block, residual="Residual" in kind, density="Density" in kind,
                               aggregation=make_aggregation(kernels))


def _numbers(indices: List[int]) -> str:
    return " ".join(str(i + 1) for i in indices)


#: bytes of the product basis's largest per-node intermediate a block of nodes may hold (see product_chunk)
PRODUCT_BLOCK_BYTES = 8 << 20


def product_chunk(product: torch.nn.Module, dtype: torch.dtype) -> int:
    """How many nodes one call of a product basis block runs on
    (``ChunkedProduct``; 0: all at once).

    The symmetric contraction of correlation nu forms, per node, a tensor of
    num_features * numel(U_nu) / (num_params * num_ell) elements ([n, 32, 3, 9, 9]
    for 32 channels, max_ell 2, correlation 3, l = 1 out), and copies of it
    for the backward. Over a few hundred nodes these pass glibc's largest
    mmap threshold (32 MiB): every call then maps them anew and pays a page
    fault per 4 KiB page (on the benchmark's 2-core machine, a pruned 512-atom
    cell's 1230 receivers cost 1.3 times per node what the original's 512 do).
    Blocks of at most PRODUCT_BLOCK_BYTES keep them on the heap."""
    contractions = getattr(getattr(product, "symmetric_contractions", None), "contractions", None)
    if contractions is None:
        return 0
    per_node = 0
    for contraction in contractions:
        correlation = int(getattr(contraction, "correlation", 0))
        u = getattr(contraction, f"U_matrix_{correlation}", None)
        num_features = int(getattr(contraction, "num_features", 0))
        if not isinstance(u, torch.Tensor) or u.dim() < 2 or num_features <= 0:
            return 0
        per_node = max(per_node, num_features * u.numel() // (u.shape[-1] * u.shape[-2]))
    itemsize = torch.empty((), dtype=dtype).element_size()
    return max(1, PRODUCT_BLOCK_BYTES // (per_node * itemsize)) if per_node else 0


def applied_optimisations(interactions: list, reasons: List[str], prune: bool, kernels: str,
                          pair_repulsion: bool):
    """(the spec's details on what was applied, one warning line per
    optimisation asked for but not applied). Interactions are numbered from 1."""
    receiver = [i for i, m in enumerate(interactions) if type(m).__name__ == "ReceiverInteraction"]
    whole = [i for i, m in enumerate(interactions) if type(m).__name__ != "ReceiverInteraction"]
    details = {
        "pruned": "true" if prune else "false",
        "receiver_only_interactions": str(len(receiver)),
        "whole_interactions": str(len(whole)),
    }
    lines: List[str] = []
    whole_reason = "; ".join(sorted({r for r in reasons if r}))
    if prune and whole:
        details["whole_interactions_reason"] = whole_reason
        lines.append(f"receiver-only interactions not applied to interaction(s) {_numbers(whole)} of "
                     f"{len(interactions)} (they run whole: pruned, but their node-wise work on every particle "
                     f"they see): {whole_reason}")
    # The kernels sum where kim-gnn's own modules do: receiver-only
    # interactions (gather, message and density sums) and the ZBL term.
    parts = []
    if kernels == "kim_gnn":
        if receiver:
            parts.append(f"interactions {_numbers(receiver)}")
        if pair_repulsion:
            parts.append("ZBL")
    details["kernels"] = "kim_gnn" if parts else "aten"
    details["kernels_applied"] = "; ".join(parts) if parts else "none"
    if kernels == "kim_gnn" and whole:
        details["kernels_not_applied"] = f"interaction(s) {_numbers(whole)} (run whole, e3nn/aten sums)"
        lines.append(f"--kernels kim_gnn not applied to interaction(s) {_numbers(whole)}: they run whole, "
                     "their sums stay aten")
    return details, lines


def convert_mace(model_or_path: Union[str, "os.PathLike[str]", torch.nn.Module], head: Optional[str] = None,
                 prune: bool = True, kernels: Optional[str] = None):
    """Convert a MACE or ScaleShiftMACE model (a ``.model`` file or the module
    itself) into a staged TorchScript model that follows the TorchML driver
    contract.

    ``head``: for multi-head models, which head to keep (default: the only
    head, else the one named 'default'). The choice is recorded in the saved
    file. Returns the scripted module with its spec (``ConvertedModel``);
    ``staged.save("model.pt")`` writes it with its provenance. The model passed in is not modified.

    ``prune`` (default): the model computes only what reaches a contributing
    atom's energy (``kim_gnn/runtime``); ``prune=False`` emits the
    unpruned staged model (every layer on every particle of its graph, as
    the architectures' own LAMMPS paths compute on each rank).

    ``kernels``: ``"aten"`` (default: aten ops only, runs with any torch) or
    ``"kim_gnn"``: the pruned interactions and the ZBL term gather and sum
    with the kim_gnn op library (``kim_gnn/kernels.py``; deterministic CSR
    sums), which must be built, and loaded in any process that runs the model.
    """
    from .. import kernels as kernel_lib
    from ..runtime import StagedRuntime, make_aggregation
    from .staged import ChunkedProduct, StagedMACE, StagedZBL, WholeInteraction

    kernels = kernel_lib.check_choice(kernels, prune)

    original, source_file, sha = _load_source(model_or_path)
    info = _info(original, head, source_file, sha)
    head_index = info.heads.index(info.head)
    dtype = info.model_dtype

    with default_dtype(dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _copy_model(original).eval().to("cpu")  # a portable model is saved on the CPU
        drop_whole_dimension_slices(model)
        reasons = [receiver_interaction_reason(b, k) if prune else "" for b, k in zip(model.interactions,
                                                                                      info.interactions)]
        interactions = [_receiver_interaction(b, k, kernels) if prune else WholeInteraction(b)
                        for b, k in zip(model.interactions, info.interactions)]
        applied, not_applied = applied_optimisations(interactions, reasons, bool(prune), kernels, info.pair_repulsion)
        if applied["kernels"] == "aten" and kernels == "kim_gnn":
            # nothing of the model would call the op library: make it an aten model
            kernels = "aten"
            interactions = [_receiver_interaction(b, k, kernels) if prune else WholeInteraction(b)
                            for b, k in zip(model.interactions, info.interactions)]
        readouts = [_head_readout(r, READOUT_KINDS[k], head_index, len(info.heads), dtype)
                    for r, k in zip(model.readouts, info.readouts)]
        chunks = [product_chunk(p, dtype) for p in model.products]
        unblocked = [i for i, chunk in enumerate(chunks) if chunk <= 0]
        if unblocked:
            not_applied.append(f"product basis of interaction(s) {_numbers(unblocked)} not run in blocks of nodes "
                               "on the CPU (its symmetric contraction's sizes were not found): one call on all nodes")
        staged = StagedMACE(
            atomic_energies_fn=model.atomic_energies_fn,
            node_embedding=model.node_embedding,
            spherical_harmonics=model.spherical_harmonics,
            radial_embedding=model.radial_embedding,
            interactions=interactions,
            products=[ChunkedProduct(p, chunk) for p, chunk in zip(model.products, chunks)],
            readouts=readouts,
            atomic_numbers=model.atomic_numbers,
            head=head_index,
            model_dtype=dtype,
            runtime=StagedRuntime(len(interactions), receiver_row=1, prune=bool(prune), kernels=kernels),
            pair_repulsion=(StagedZBL(model.pair_repulsion_fn, make_aggregation(kernels))
                            if info.pair_repulsion else None),
            scale_shift=model.scale_shift if info.model_class == "ScaleShiftMACE" else None,
        )
        try:
            from e3nn.util import jit as e3nn_jit

            staged = e3nn_jit.compile(staged)
        except Exception as exc:
            raise UnsupportedModelError(
                f"e3nn could not compile the MACE model's parts to TorchScript ({type(exc).__name__}: {first_line(exc)})"
            ) from None

    import e3nn

    spec = StagedModelSpec(
        species=info.species,
        cutoff=info.r_max,
        num_layers=info.num_layers,
        model_dtype=str(dtype).replace("torch.", ""),
        architecture="mace",
        architecture_version=info.mace_version,
        kim_gnn_version=__version__,
        source_file=source_file,
        source_sha256=sha,
        details={
            "model_class": info.model_class,
            "head": info.head,
            "heads": " ".join(info.heads),
            "interactions": " ".join(info.interactions),
            "readouts": " ".join(info.readouts),
            "correlation": " ".join(str(c) for c in info.correlation),
            "max_ell": str(info.max_ell),
            "pair_repulsion": "ZBL" if info.pair_repulsion else "",
            "distance_transform": info.distance_transform,
            "radial_basis": info.radial_basis,
            "atomic_numbers": " ".join(str(z) for z in info.atomic_numbers),
            "torch_version": torch.__version__,
            "e3nn_version": getattr(e3nn, "__version__", ""),
            **applied,
        },
    )
    with default_dtype(dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        staged = contract.script_staged(staged, spec, "MACE")
    for line in not_applied:
        warn_not_applied(line)
    return staged
