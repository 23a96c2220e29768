"""Where training memory goes: weights, gradients, optimizer state and activations, measured.

A training step holds four kinds of memory:

==============  ==========================================  =================================
kind            what                                        size (fp32, AdamW)
==============  ==========================================  =================================
parameters      the weights, trainable and frozen alike      4 bytes / param
gradients       one per trainable parameter                  4 bytes / trainable param
optimizer       AdamW's two moments per trainable parameter  8 bytes / trainable param
activations     what autograd saves for the backward pass    grows with batch and tokens
==============  ==========================================  =================================

so ``total ≈ 16 bytes/param + activations``. The sum counts every gradient as if it existed while
all activations are still alive (in truth the backward pass frees activations as it creates
gradients), a slight overestimate of the peak that the uncounted temporaries below make up for.
The first three are *fixed*: they do not depend on the batch. Activations grow **linearly with the batch**, and in VideoMAE with the tokens each
part of the model sees: the encoder works on the ``(1 − ρ)·N`` visible tokens only, so its
activations shrink with the mask ratio ``ρ`` (a tenth of the full clip at ``ρ = 0.9``), while the
decoder sees all ``N`` tokens (the visible ones plus a mask token for every hidden one) — at
``ρ = 0.9`` the narrow decoder holds more activation memory than the wide encoder.

**How activations are measured.** A GPU has an allocator that reports its peak; a CPU has none.
Instead we ask autograd directly: :class:`ActivationMeter` installs
:class:`torch.autograd.graph.saved_tensors_hooks`, so every tensor an operation saves for its
backward passes through our hook during the forward pass. Those tensors are exactly what stays
alive between forward and backward. We count each *storage* once (two ops often save the same
tensor, and a view shares its base's storage — a saved view keeps its *whole* base alive, so the
base's full size is what it costs) and leave out storages that belong to the parameters (a
Linear layer saves its weight for the input gradient, but that memory is already counted as
parameters).

Where the bytes go in one pre-norm ViT block (``n`` tokens of width ``D``, MLP width ``4D``,
``h`` heads, fused attention on the CPU), everything autograd saves, in floats::

    LayerNorm 1     input n·D, mean n, 1/std n
    qkv Linear      input (the normalised tokens) n·D
    attention       q, k, v (one storage) 3·n·D, output n·D, log-sum-exp h·n
    out projection  input: the attention output itself (same storage, counted once)
    LayerNorm 2     input n·D, mean n, 1/std n
    fc1 Linear      input n·D
    GELU            input (fc1's output) 4·n·D
    fc2 Linear      input (GELU's output) 4·n·D
    ───────────────────────────────────────────────
    total           n · (16·D + 4 + h) floats

(``tests/test_memory.py`` checks this count exactly.) Fused attention never stores the
``n × n`` attention matrix; an unfused implementation would add ``h·n²`` floats per block (GPU
attention kernels save the same tensors, plus a few bytes of random-number state). Under bf16
autocast the matrix products' inputs and outputs take 2 bytes instead of 4, while LayerNorm
statistics and the loss stay in float32; autocast also saves a bfloat16 copy of each weight,
reported apart as ``param_copies`` since it grows with the model, not the batch.

**What is not counted.** The numbers here are the memory a training step *must* hold. A real GPU
peak is somewhat above them: the caching allocator rounds and fragments blocks; intermediate
results that no backward needs (the pixel targets before normalisation, an op's temporary
buffers, the attention kernel's scratch space, cuDNN/cuBLAS workspaces) live for a moment next to
the saved ones; the CUDA context itself takes about 0.5 GB before any tensor exists. :func:`max_batch` leaves ``headroom`` for these.

Typical use — how large a batch fits on an 80 GB GPU::

    model = create("videomae_vit_b")
    one = training_memory(model, torch.randn(1, 3, 16, 224, 224))
    two = training_memory(model, torch.randn(2, 3, 16, 224, 224))
    per_clip = (two["activations"] + two["inputs"]) - (one["activations"] + one["inputs"])
    fixed = one["total"] - per_clip
    max_batch(per_clip, fixed, 80 * 10**9)
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Iterable

import torch
import torch.nn as nn

__all__ = [
    "ActivationMeter",
    "saved_activation_bytes",
    "training_memory",
    "max_batch",
    "format_bytes",
    "AMP_MODES",
]

#: Mixed-precision modes of :func:`training_memory` (the trainer's names).
AMP_MODES = ("none", "bf16", "fp16")

# Autograd nodes that only cast, copy or re-view their single input. A saved tensor reached from a
# parameter through a chain of these alone is a copy of that parameter (autocast's bfloat16 weight
# copy, its transpose, ...): its size depends on the model, not on the batch.
_PARAM_COPY_NODES = frozenset({
    "ToCopyBackward0", "CloneBackward0", "AliasBackward0", "TBackward0", "TransposeBackward0",
    "PermuteBackward0", "ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0",
    "ExpandBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
    "UnsqueezeBackward0", "SliceBackward0", "SelectBackward0",
})
_MAX_COPY_CHAIN = 16


def _storage_key(tensor: torch.Tensor):
    """Identity of the memory behind ``tensor``: ``(device, data_ptr, nbytes)`` of its storage.

    Returns ``(key, storage, nbytes)``; ``storage`` is held by the meter so the address cannot be
    freed and reused by another tensor while measuring. Tensors without a plain storage (sparse,
    some subclasses) are keyed by the tensor object itself and cost ``numel · element_size``.
    """
    try:
        storage = tensor.untyped_storage()
        nbytes = storage.nbytes()
        ptr = storage.data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return ("tensor", id(tensor)), tensor.detach(), tensor.numel() * tensor.element_size()
    if ptr == 0 and nbytes > 0:  # meta tensors have no address: tell storages apart by their object
        return ("storage", tensor.device.type, storage._cdata), storage, nbytes
    return (tensor.device.type, tensor.device.index, ptr, nbytes), storage, nbytes


def _collect_excluded(exclude) -> list[torch.Tensor]:
    """Tensors named by ``exclude``: None, an nn.Module, a tensor, or an iterable of those."""
    if exclude is None:
        return []
    if isinstance(exclude, nn.Module):
        return list(exclude.parameters()) + list(exclude.buffers())
    if isinstance(exclude, torch.Tensor):
        return [exclude]
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise ValueError(
            f"exclude must be None, an nn.Module, a tensor or an iterable of them, got {type(exclude).__name__}"
        )
    tensors = []
    for item in exclude:
        if isinstance(item, (nn.Module, torch.Tensor)):
            tensors.extend(_collect_excluded(item))
        else:
            raise ValueError(
                f"exclude must hold nn.Modules or tensors, got an item of type {type(item).__name__}"
            )
    return tensors


class ActivationMeter:
    """Count the bytes autograd saves for the backward pass while a block of code runs.

    ::

        with ActivationMeter(exclude=model) as meter:
            loss = model(video, mask).loss
        print(format_bytes(meter.bytes), meter.by_dtype)
        loss.backward()                     # works as usual: the meter changes no tensor

    exclude: an ``nn.Module`` (its parameters and buffers), a tensor, or an iterable of either.
        Saved tensors whose storage is one of theirs are not activations (a Linear layer saves
        its weight; that memory is the parameter's) and go to :attr:`excluded_bytes`.

    After (or during) the block:

    - :attr:`bytes` — activation bytes: each distinct storage counted once, at its full size;
    - :attr:`count` — how many distinct activation storages;
    - :attr:`by_dtype` — activation bytes per dtype name (``{"float32": ..., "bfloat16": ...}``),
      the dtype being that of the first tensor saved from each storage;
    - :attr:`param_copy_bytes` — tensors that are casts or views of an excluded parameter and
      nothing else (under autocast a Linear saves the bfloat16 copy of its weight): memory that
      scales with the model, not the batch, so it is kept apart from :attr:`bytes`;
    - :attr:`excluded_bytes` — saved storages that belong to excluded tensors;
    - :attr:`saves` — how many times a tensor was saved (before deduplication).

    Only tensors saved while the block runs are seen. Operations under ``torch.no_grad()`` save
    nothing. Non-reentrant activation checkpointing (``torch.utils.checkpoint.checkpoint(...,
    use_reentrant=False)``) saves each checkpointed block's inputs through the hook and hides the
    block's inner tensors until the backward pass recomputes them — so the meter reports just
    what a checkpointed forward keeps alive. A ``saved_tensors_hooks`` context opened *inside*
    the meter (e.g. ``save_on_cpu``) takes precedence and hides the tensors it handles. A frozen
    parameter's autocast copy has no autograd history and counts as an activation. Any device
    works, ``meta`` included: there storages have no address and are told apart by identity, so
    a model built on ``meta`` gives its activation count without allocating it.

    The hook hands autograd a detached alias of each tensor — the same storage and values, no
    copy — so measuring changes neither the numbers nor the memory of the step, and backward runs
    as usual. The meter holds a reference to every saved storage while the block runs, so a
    storage freed early cannot hand its address to a later one and be mistaken for it; the
    references are dropped when the block ends. Entering the meter again starts a new
    measurement.
    """

    def __init__(self, exclude=None):
        self._excluded = {_storage_key(t)[0] for t in _collect_excluded(exclude)}
        self._reset()
        self._hooks = None

    def _reset(self) -> None:
        self.bytes = 0
        self.count = 0
        self.by_dtype: dict[str, int] = {}
        self.param_copy_bytes = 0
        self.excluded_bytes = 0
        self.saves = 0
        self._seen: dict = {}  # storage key -> the storage, held while the block runs

    # -- the hooks -------------------------------------------------------------------------

    def _is_param_copy(self, tensor: torch.Tensor) -> bool:
        """True when ``tensor`` is an excluded tensor passed only through casts and views."""
        node = tensor.grad_fn
        for _ in range(_MAX_COPY_CHAIN):
            if node is None:
                return False
            if hasattr(node, "variable"):  # AccumulateGrad: we reached a leaf
                return _storage_key(node.variable)[0] in self._excluded
            if node.name() not in _PARAM_COPY_NODES:
                return False
            parents = [fn for fn, _ in node.next_functions if fn is not None]
            if len(parents) != 1:
                return False
            node = parents[0]
        return False

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.saves += 1
        key, holder, nbytes = _storage_key(tensor)
        if key in self._seen:
            return tensor.detach()  # this storage is already counted
        self._seen[key] = holder
        if key in self._excluded:
            self.excluded_bytes += nbytes
        elif self._is_param_copy(tensor):
            self.param_copy_bytes += nbytes
        else:
            self.bytes += nbytes
            self.count += 1
            name = str(tensor.dtype).removeprefix("torch.")
            self.by_dtype[name] = self.by_dtype.get(name, 0) + nbytes
        # The same storage, values and shape — no copy. Detached because the packed object must
        # not refer back to the graph: an op's saved *output* holds its grad_fn, which would hold
        # the packed tensor in turn, a reference cycle that keeps the whole graph alive until
        # Python's garbage collector runs (torch's documentation of saved_tensors_hooks warns).
        return tensor.detach()

    @staticmethod
    def _unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> "ActivationMeter":
        if self._hooks is not None:
            raise RuntimeError("this ActivationMeter is already measuring; use a second meter to nest")
        self._reset()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None
        self._seen = {}  # release the storages: the numbers are final

    def __repr__(self) -> str:
        return (f"ActivationMeter(bytes={self.bytes} ({format_bytes(self.bytes)}), count={self.count}, "
                f"param_copy_bytes={self.param_copy_bytes}, excluded_bytes={self.excluded_bytes})")


def saved_activation_bytes(fn: Callable, *args, exclude=None, **kwargs) -> int:
    """Activation bytes saved by ``fn(*args, **kwargs)``: :attr:`ActivationMeter.bytes`.

    The result of ``fn`` is dropped, and with it the autograd graph and what it saved. Use
    :class:`ActivationMeter` directly to keep the result (to call backward on it).
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    with ActivationMeter(exclude=exclude) as meter:
        fn(*args, **kwargs)
    return meter.bytes


# --------------------------------------------------------------------------------------------
# A training step's memory
# --------------------------------------------------------------------------------------------


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_memory(
    model: nn.Module,
    video: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    amp: str = "none",
    optimizer_states: int = 2,
) -> dict:
    """The memory one training step of a pre-training model holds, by kind, in bytes.

    Runs one forward pass ``model(video, mask)`` in training mode under an
    :class:`ActivationMeter` (under ``torch.autocast`` in bfloat16 or float16 when ``amp`` says
    so), then a backward pass with ``torch.autograd.grad`` — which frees the graph and checks
    that it still works, without touching any ``.grad`` — and restores the model's mode.

    model: a maskvid_edu pre-training model: ``model(video, mask)`` returns an object with
        ``.loss``, ``model.make_mask(video, generator=...)`` draws a mask.
    video: the input batch, e.g. ``(B, C, T, H, W)``, on the model's device.
    mask: bool ``(B, N)``, True = hidden; None draws the model's own mask with a generator seeded
        with 0 (so repeated calls measure the same thing).
    amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (autocast on ``video``'s device type).
    optimizer_states: float32 tensors the optimizer keeps per trainable parameter (2 for Adam
        and AdamW, 1 for SGD with momentum, 0 for plain SGD).

    Returns a dict of bytes:

    - ``params``: every parameter, trainable or frozen (an EMA target network counts), in its
      own dtype; ``buffers``: the buffers (e.g. fixed position tables);
    - ``grads``: one gradient per trainable parameter, in the parameter's dtype;
    - ``optimizer``: ``optimizer_states × 4 bytes`` per trainable parameter;
    - ``activations``: what autograd saved (:attr:`ActivationMeter.bytes`);
    - ``param_copies``: low-precision weight copies autocast made and autograd saved
      (:attr:`ActivationMeter.param_copy_bytes`; 0 without ``amp``);
    - ``inputs``: the video and the mask themselves;
    - ``total``: the sum of the above — the memory at the peak of the step, before the
      backward pass frees the activations;

    and ``batch`` (``video.shape[0]``), ``tokens`` (``N``) and ``tokens_visible`` (visible tokens
    per clip), the last two None when ``mask`` is not a bool ``(B, N)`` tensor.

    The memory model behind the numbers: with fp32 weights and AdamW ``params + grads +
    optimizer = 16 bytes/param``; activations grow linearly with the batch, and VideoMAE's
    encoder activations shrink with the share of visible tokens ``(1 − ρ)`` while its decoder
    always sees all ``N`` tokens. Not counted (so a real GPU peak is somewhat above ``total``):
    allocator rounding and fragmentation, temporary workspaces of single operations
    (cuDNN/cuBLAS included), the CUDA context (~0.5 GB), and anything held outside the module
    tree (such as MAM2's frozen tokenizer). Time: one forward and one backward pass.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(video, torch.Tensor) or video.dim() < 1:
        raise ValueError(f"video must be a batched tensor (B, ...), got {getattr(video, 'shape', type(video))}")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if isinstance(optimizer_states, bool) or not isinstance(optimizer_states, int) or optimizer_states < 0:
        raise ValueError(f"optimizer_states must be an int ≥ 0, got {optimizer_states!r}")
    if mask is None:
        if not hasattr(model, "make_mask"):
            raise ValueError("mask is None and the model has no make_mask(video, generator=...) to draw one")
        mask = model.make_mask(video, generator=torch.Generator(device=video.device).manual_seed(0))

    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    exclude = [model] + [t for t in (video, mask) if isinstance(t, torch.Tensor)]
    autocast = torch.autocast(
        device_type=video.device.type,
        dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
        enabled=amp != "none",
    )

    was_training = model.training
    model.train()
    try:
        with torch.enable_grad():
            with ActivationMeter(exclude=exclude) as meter, autocast:
                out = model(video, mask)
            loss = getattr(out, "loss", None)
            if not isinstance(loss, torch.Tensor):
                raise ValueError(
                    f"model(video, mask) must return an object with a tensor .loss, got {type(out).__name__}"
                )
            if trainable and loss.requires_grad:
                torch.autograd.grad(loss, trainable, allow_unused=True)  # frees the graph
            del out, loss
    finally:
        model.train(was_training)

    report = {
        "params": _tensor_bytes(params),
        "buffers": _tensor_bytes(model.buffers()),
        "grads": _tensor_bytes(trainable),
        "optimizer": optimizer_states * 4 * sum(p.numel() for p in trainable),
        "activations": meter.bytes,
        "param_copies": meter.param_copy_bytes,
        "inputs": _tensor_bytes(t for t in (video, mask) if isinstance(t, torch.Tensor)),
    }
    report["total"] = sum(report.values())
    report["batch"] = int(video.shape[0])
    is_bool_mask = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.dim() == 2
    report["tokens"] = int(mask.shape[1]) if is_bool_mask else None
    report["tokens_visible"] = int((~mask[0]).sum()) if is_bool_mask and mask.shape[0] > 0 else None
    return report


# --------------------------------------------------------------------------------------------
# Planning and printing
# --------------------------------------------------------------------------------------------


def _exact(name: str, value, *, allow_zero: bool = False) -> Fraction:
    """``value`` as an exact fraction (a float as written: 0.9 → 9/10); ValueError unless positive."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    if exact < 0 or (exact == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'≥ 0' if allow_zero else '> 0'}, got {value!r}")
    return exact


def max_batch(per_clip_activation_bytes, fixed_bytes, budget_bytes, *, headroom: float = 0.9) -> int:
    """The largest batch ``b`` with ``fixed + b · per_clip ≤ headroom · budget``; 0 if none fits.

    per_clip_activation_bytes: memory each clip adds (activations and its share of the inputs),
        e.g. the difference of two :func:`training_memory` totals one clip apart. > 0.
    fixed_bytes: memory that does not depend on the batch (weights, gradients, optimizer state,
        autocast's weight copies). ≥ 0.
    budget_bytes: the device's memory, e.g. ``80 * 10**9`` for an "80 GB" GPU. > 0.
    headroom: the share of the budget to plan for, in (0, 1]: the rest is left for what the
        measurement does not see (allocator fragmentation, workspaces, the CUDA context).

    The arithmetic is exact (floats are taken as written, ``0.9`` is ``9/10``), so a batch that
    fills the allowed memory to the byte still fits.
    """
    per_clip = _exact("per_clip_activation_bytes", per_clip_activation_bytes)
    fixed = _exact("fixed_bytes", fixed_bytes, allow_zero=True)
    budget = _exact("budget_bytes", budget_bytes)
    share = _exact("headroom", headroom)
    if share > 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
    room = share * budget - fixed
    return max(0, math.floor(room / per_clip))


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n) -> str:
    """A byte count for tables, in powers of 1024 with three significant digits.

    ``format_bytes(512) == "512 B"``, ``format_bytes(3 * 1024) == "3.0 KiB"``,
    ``format_bytes(512 * 2**20) == "512 MiB"``, ``format_bytes(1.234 * 2**30) == "1.23 GiB"``.
    Negative counts (a difference of two measurements) keep their sign.
    """
    if isinstance(n, bool) or not isinstance(n, (int, float)) or (isinstance(n, float) and not math.isfinite(n)):
        raise ValueError(f"n must be a finite number of bytes, got {n!r}")
    sign, n = ("-" if n < 0 else ""), abs(n)
    unit = 0
    while unit < len(_UNITS) - 1 and n >= 1024 ** (unit + 1):
        unit += 1
    while True:
        value = n / 1024**unit
        digits = 0 if unit == 0 or value >= 99.95 else 1 if value >= 9.995 else 2
        text = f"{value:.{digits}f}"
        if float(text) < 1024 or unit == len(_UNITS) - 1:
            break
        unit += 1  # 1023.9 KiB would print as "1024 KiB": say "1.0 MiB" instead
    if digits == 2 and text.endswith("0"):
        text = text[:-1]  # 3.00 → 3.0: one decimal is enough to say "not rounded to the unit"
    return f"{sign}{text} {_UNITS[unit]}"
