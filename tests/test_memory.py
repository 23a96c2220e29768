"""Activation memory counted by hand against the meter, the training-memory report, planning helpers."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn as nn

from maskvid_edu.masking import num_masked, tube_mask
from maskvid_edu.measure.memory import (
    ActivationMeter,
    format_bytes,
    max_batch,
    saved_activation_bytes,
    training_memory,
)
from maskvid_edu.models import create
from maskvid_edu.models.vit import Block

pytestmark = pytest.mark.usefixtures("one_thread")

F32 = 4  # bytes per float32


def toy_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))


def demo_inputs(model, batch: int, ratio: float | None = None, seed: int = 0):
    c = model.config
    video = torch.randn(batch, c.in_chans, c.num_frames, c.img_size, c.img_size,
                        generator=torch.Generator().manual_seed(seed))
    mask = tube_mask(batch, c.grid, c.mask_ratio if ratio is None else ratio,
                     generator=torch.Generator().manual_seed(seed))
    return video, mask


# --------------------------------------------------------------------------------------------
# The meter on hand-countable graphs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "meta"])  # meta: shapes only, no memory, same count
def test_toy_mlp_saves_exactly_what_backward_needs(device):
    B = 5
    model = toy_mlp().to(device)
    x = torch.randn(B, 8, device=device)  # pixels: no grad
    with ActivationMeter(exclude=model) as meter:
        model(x).sum()
    # Linear(8,16) saves its input x (8 floats/sample) for its weight's gradient — not its weight,
    # as x needs no gradient; GELU saves its input, the first output (16); Linear(16,4) saves its
    # input, the GELU output (16), and its weight for the gradient of that input. sum saves nothing.
    assert meter.bytes == B * (8 + 16 + 16) * F32
    assert meter.count == 3
    assert meter.by_dtype == {"float32": B * (8 + 16 + 16) * F32}
    assert meter.excluded_bytes == 16 * 4 * F32  # the second weight only
    assert meter.param_copy_bytes == 0


def test_parameters_are_excluded_by_storage():
    B = 3
    model = toy_mlp()
    x = torch.randn(B, 8)
    activations = B * (8 + 16 + 16) * F32
    assert saved_activation_bytes(model, x, exclude=model) == activations
    # without exclude, the saved weight of the second layer (a transposed view of it) is counted
    assert saved_activation_bytes(model, x) == activations + 16 * 4 * F32
    # the same exclusion given as tensors
    assert saved_activation_bytes(model, x, exclude=[model[2].weight]) == activations
    # an input that needs a gradient makes the first layer save its weight too
    x.requires_grad_(True)
    assert saved_activation_bytes(model, x, exclude=model) == activations
    assert saved_activation_bytes(model, x) == activations + (16 * 4 + 8 * 16) * F32


def test_a_storage_saved_twice_counts_once():
    x = torch.randn(7, 3, requires_grad=True)
    with ActivationMeter() as meter:
        square = x * x  # mul saves both operands: the same tensor twice
    assert meter.saves == 2 and meter.count == 1
    assert square.grad_fn._saved_self.data_ptr() == square.grad_fn._saved_other.data_ptr() == x.data_ptr()
    assert meter.bytes == 7 * 3 * F32
    # two views of one base: saved separately, one storage, and the *whole* base stays alive
    base = torch.randn(4, 10, requires_grad=True)
    with ActivationMeter() as meter:
        base[:, :3] * base[:, 7:]
    assert meter.saves == 2 and meter.count == 1
    assert meter.bytes == 4 * 10 * F32


def test_freed_storages_cannot_be_mistaken_for_new_ones():
    # Each result is dropped at once, and with it the graph and the output exp saved; the allocator
    # then hands the same address to the next call's output, which must still count as new memory.
    leaf = torch.randn(1000, requires_grad=True)
    with ActivationMeter() as meter:
        for _ in range(10):
            leaf.exp()  # exp saves its output: 1000 floats
    assert meter.count == 10 and meter.bytes == 10 * 1000 * F32


def test_the_hook_saves_the_tensor_itself_and_keeps_no_cycle():
    x = torch.randn(50, requires_grad=True)
    with ActivationMeter() as meter:
        y = x.exp()
        z = x * 3.0 + y  # a product with a number and a sum save nothing
    assert meter.count == 1 and meter.bytes == 50 * F32  # exp saves its output y
    # what autograd holds is y's own memory, not a copy
    assert y.grad_fn._saved_result.data_ptr() == y.data_ptr()
    # dropping the results frees the graph at once: nothing refers back to it
    gc.disable()
    try:
        alive = weakref.ref(y)
        del y, z
        assert alive() is None
    finally:
        gc.enable()


def test_vit_block_count_by_hand():
    # n·(16·D + 4 + h) floats per block (see the table in maskvid_edu.measure.memory): LayerNorm inputs
    # 2·n·D, their mean and 1/std 4·n, qkv input n·D, q/k/v 3·n·D, attention output n·D (also the
    # projection's input), its log-sum-exp h·n, fc1 input n·D, GELU input and output 2·4·n·D.
    B, n, D, h = 2, 10, 32, 4
    torch.manual_seed(0)
    block = Block(D, h)
    x = torch.randn(B, n, D, requires_grad=True)
    assert saved_activation_bytes(block, x, exclude=block) == B * n * (16 * D + 4 + h) * F32


def test_videomae_encoder_count_by_hand():
    model = create("videomae_vit_demo")
    c = model.config
    video, mask = demo_inputs(model, 2)
    n = 2 * int((~mask[0]).sum())  # visible tokens in the batch
    patch_values = c.in_chans * c.tubelet * c.patch**2
    # gathered pixels (saved by the embedding for its weight gradient), the blocks, the final norm
    expected = n * (patch_values + c.depth * (16 * c.dim + 4 + c.heads) + c.dim + 2) * F32
    assert saved_activation_bytes(model.encoder, video, mask, exclude=model) == expected


def test_backward_after_measuring_gives_the_same_gradients():
    model = create("videomae_vit_demo")
    video, mask = demo_inputs(model, 2)

    def grads(measure: bool):
        model.zero_grad(set_to_none=True)
        if measure:
            with ActivationMeter(exclude=model) as meter:
                loss = model(video, mask).loss
            assert meter.bytes > 0
        else:
            loss = model(video, mask).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_plain, plain = grads(False)
    loss_measured, measured = grads(True)
    assert torch.equal(loss_plain, loss_measured)
    assert all(torch.equal(a, b) for a, b in zip(plain, measured))


# --------------------------------------------------------------------------------------------
# How activations scale on the VideoMAE demo
# --------------------------------------------------------------------------------------------


def test_activations_grow_linearly_with_the_batch():
    model = create("videomae_vit_demo")
    one = training_memory(model, *demo_inputs(model, 1))["activations"]
    two = training_memory(model, *demo_inputs(model, 2))["activations"]
    assert two == pytest.approx(2 * one, rel=0.03)


def test_a_higher_mask_ratio_saves_less():
    model = create("videomae_vit_demo")
    half = training_memory(model, *demo_inputs(model, 2, ratio=0.5))
    most = training_memory(model, *demo_inputs(model, 2, ratio=0.9))
    assert half["tokens_visible"] > most["tokens_visible"]
    assert half["activations"] > most["activations"]


def test_the_decoder_holds_most_activations_at_mask_ratio_09():
    model = create("videomae_vit_demo")
    video, mask = demo_inputs(model, 2, ratio=0.9)
    encoder = saved_activation_bytes(model.encoder, video, mask, exclude=model)
    total = training_memory(model, video, mask)["activations"]
    assert encoder < 0.5 * total


def test_checkpointing_keeps_only_block_inputs():
    plain = create("videomae_vit_demo")
    checkpointed = create("videomae_vit_demo", use_checkpoint=True)
    video, mask = demo_inputs(plain, 2)
    full = training_memory(plain, video, mask)["activations"]
    saved = training_memory(checkpointed, video, mask)["activations"]
    # every block keeps one (B, n, dim) input instead of ~16 of them; the loss and head remain
    assert saved < 0.5 * full


def test_bf16_autocast_halves_most_activations():
    model = create("videomae_vit_demo")
    video, mask = demo_inputs(model, 2)
    fp32 = training_memory(model, video, mask)
    bf16 = training_memory(model, video, mask, amp="bf16")
    assert bf16["activations"] < 0.75 * fp32["activations"]
    # autocast saves a bfloat16 copy of every Linear weight whose input needs a gradient: all of
    # them here (the tubelet embedding is a Conv3d on pixels, which need none)
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert bf16["param_copies"] == 2 * linear_weights
    assert fp32["param_copies"] == 0
    # the matrix products' inputs and outputs are bfloat16 now; LayerNorm statistics stay float32
    with ActivationMeter(exclude=model) as meter, torch.autocast("cpu", torch.bfloat16):
        model(video, mask)
    assert meter.bytes == bf16["activations"]
    assert set(meter.by_dtype) == {"bfloat16", "float32"}
    assert sum(meter.by_dtype.values()) == meter.bytes


# --------------------------------------------------------------------------------------------
# training_memory's report
# --------------------------------------------------------------------------------------------


def test_training_memory_fields():
    model = create("videomae_vit_demo")
    model.eval()
    video, mask = demo_inputs(model, 2)
    numel = sum(p.numel() for p in model.parameters())
    report = training_memory(model, video, mask)
    assert report["params"] == F32 * numel
    assert report["grads"] == F32 * numel
    assert report["optimizer"] == 2 * F32 * numel
    assert report["buffers"] == F32 * sum(b.numel() for b in model.buffers())
    assert report["inputs"] == F32 * video.numel() + mask.numel()
    parts = ("params", "buffers", "grads", "optimizer", "activations", "param_copies", "inputs")
    assert report["total"] == sum(report[k] for k in parts)
    t, h, w = model.config.grid
    assert report["batch"] == 2 and report["tokens"] == t * h * w
    assert report["tokens_visible"] == t * (h * w - num_masked(h * w, model.config.mask_ratio))
    # the model's mode and gradients are left as they were
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_count_as_weights_only():
    model = create("videomae_vit_demo")
    model.encoder.requires_grad_(False)
    numel = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = training_memory(model, *demo_inputs(model, 1), optimizer_states=1)
    assert 0 < trainable < numel
    assert report["params"] == F32 * numel
    assert report["grads"] == F32 * trainable
    assert report["optimizer"] == F32 * trainable


def test_training_memory_draws_the_models_mask_reproducibly():
    model = create("videomae_vit_demo")
    video, _ = demo_inputs(model, 2)
    first, second = training_memory(model, video), training_memory(model, video)
    assert first == second
    t, h, w = model.config.grid
    assert first["tokens_visible"] == t * (h * w - num_masked(h * w, model.config.mask_ratio))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"amp": "int8"}, "amp must be one of"),
        ({"optimizer_states": -1}, "optimizer_states must be an int"),
        ({"optimizer_states": 2.0}, "optimizer_states must be an int"),
    ],
)
def test_training_memory_rejects_bad_arguments(kwargs, message):
    model = create("videomae_vit_demo")
    with pytest.raises(ValueError, match=message):
        training_memory(model, *demo_inputs(model, 1), **kwargs)


def test_bad_exclude_is_rejected():
    with pytest.raises(ValueError, match="exclude must be"):
        ActivationMeter(exclude=3)
    with pytest.raises(ValueError, match="exclude must hold"):
        ActivationMeter(exclude=[torch.zeros(1), "weight"])
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        training_memory(lambda v, m: None, torch.zeros(1, 3))


# --------------------------------------------------------------------------------------------
# Planning and printing
# --------------------------------------------------------------------------------------------


def test_max_batch_arithmetic():
    # 90 % of 100 bytes = 90; 10 fixed leaves 80
    assert max_batch(8, 10, 100) == 10  # fills the allowed memory to the byte: still fits
    assert max_batch(9, 10, 100) == 8
    assert max_batch(8, 10, 100, headroom=1.0) == 11
    assert max_batch(8, 0, 100) == 11
    assert max_batch(8, 95, 100) == 0  # the fixed part alone does not fit
    assert max_batch(100, 10, 100) == 0
    # a realistic case: ViT-B-like numbers on an 80 GB device
    per_clip, fixed = 272_000_000, 1_600_000_000
    b = max_batch(per_clip, fixed, 80 * 10**9)
    assert fixed + b * per_clip <= 0.9 * 80e9 < fixed + (b + 1) * per_clip


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((0, 10, 100), {}, "per_clip_activation_bytes must be > 0"),
        ((-8, 10, 100), {}, "per_clip_activation_bytes must be > 0"),
        ((8, -1, 100), {}, "fixed_bytes must be ≥ 0"),
        ((8, 10, 0), {}, "budget_bytes must be > 0"),
        ((8, 10, 100), {"headroom": 0}, "headroom must be > 0"),
        ((8, 10, 100), {"headroom": 1.5}, r"headroom must be in \(0, 1\]"),
        ((float("nan"), 10, 100), {}, "per_clip_activation_bytes must be a finite number"),
        ((8, True, 100), {}, "fixed_bytes must be a finite number"),
        ((8, 10, "80GB"), {}, "budget_bytes must be a finite number"),
    ],
)
def test_max_batch_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        max_batch(*args, **kwargs)


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (3 * 1024, "3.0 KiB"),
        (1536, "1.5 KiB"),
        (12.34 * 1024, "12.3 KiB"),
        (512 * 2**20, "512 MiB"),
        (1.234 * 2**30, "1.23 GiB"),
        (2**20 - 1, "1.0 MiB"),  # 1023.999 KiB would round to "1024 KiB"
        (-3 * 1024, "-3.0 KiB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("bad", ["1 GB", None, True, float("inf")])
def test_format_bytes_rejects_non_numbers(bad):
    with pytest.raises(ValueError, match="n must be a finite number"):
        format_bytes(bad)


# --------------------------------------------------------------------------------------------
# Against the CUDA allocator
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_meter_agrees_with_the_cuda_allocator():
    model = create("videomae_vit_demo").cuda()
    video, mask = demo_inputs(model, 16)
    video, mask = video.cuda(), mask.cuda()
    model(video, mask).loss.backward()  # warm-up: cuBLAS workspaces and .grad now exist
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with ActivationMeter(exclude=[model, video, mask]) as meter:
        out = model(video, mask)
    torch.cuda.synchronize()
    peak_growth = torch.cuda.max_memory_allocated() - base
    # the saved tensors are alive at the end of the forward, so they fit under its peak; the rest
    # of the peak is outputs and short-lived temporaries
    assert meter.bytes <= peak_growth
    assert meter.bytes >= 0.5 * peak_growth
    out.loss.backward()


@pytest.mark.slow
def test_vit_b_encoder_count_by_hand_at_full_size():
    """ViT-B/16, 16×224², mask 0.9: the encoder's activations to the byte, and the whole step's
    report (one forward and backward, a few seconds on one thread)."""
    model = create("videomae_vit_b")
    c = model.config
    video, mask = demo_inputs(model, 1)
    n = int((~mask[0]).sum())
    assert n == 8 * (196 - 176)  # 160 visible tubelets
    expected = n * (c.in_chans * c.tubelet * c.patch**2 + c.depth * (16 * c.dim + 4 + c.heads) + c.dim + 2) * F32
    assert saved_activation_bytes(model.encoder, video, mask, exclude=model) == expected
    report = training_memory(model, video, mask)
    numel = sum(p.numel() for p in model.parameters())
    assert report["params"] + report["grads"] + report["optimizer"] == 16 * numel
    assert report["activations"] > 2 * expected  # the decoder sees all 1568 tokens
