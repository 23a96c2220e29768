"""The exercise checkers accept the library's own code and name the typical slips precisely.

Every wrong function below is a mistake a reader is likely to make; each test asserts that the
checker fails it *with the hint written for that mistake*, at the property where it shows.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskvid_edu import ema, masking, patches, sparse, targets
from maskvid_edu.data.transforms import denormalize
from maskvid_edu.evaluate import finetune, metrics
from maskvid_edu.evaluate.propagation import PropagationConfig, propagate_labels
from maskvid_edu.measure.flops import vit_block_flops
from maskvid_edu.launch import plan_launch
from maskvid_edu.models.vjepa import feature_loss, feature_targets
from maskvid_edu.exercises import check, describe, evaluate, list_exercises

# --------------------------------------------------------------------------------------------
# the library's own implementations, in the signatures the exercises ask for
# --------------------------------------------------------------------------------------------


def library_ema_update(target_params, online_params, momentum):
    """``EMATarget.update`` pointed at the given tensors (``nn.Parameter(t.detach())`` shares storage)."""
    target, online = nn.ParameterList(), nn.ParameterList()
    for t, o in zip(target_params, online_params):
        target.append(nn.Parameter(t.detach(), requires_grad=False))
        online.append(nn.Parameter(o.detach(), requires_grad=False))
    holder = ema.EMATarget(nn.ParameterList())
    holder.module = target
    holder.update(online, momentum)


def library_cosine_momentum(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
    return ema.cosine_momentum(epoch * steps_per_epoch + step_in_epoch, epochs * steps_per_epoch, base, final)


def library_rgb_difference(video):
    """``motion_targets`` with 1×1×1 tubelets is the difference map itself, token by token."""
    B, C, F1, H, W = video.shape
    tokens = targets.motion_targets(video, tubelet=1, patch=1, normalization="none")  # (B, T·H·W, C)
    return patches.unpatchify(tokens, (F1 - 1, H, W), tubelet=1, patch=1)  # (B, C, T, H, W)


def library_sparse_conv(x, mask, weight, bias):
    """:class:`maskvid_edu.sparse.SparseConv2d` (masked backend) with the given weights."""
    c_out, c_in, k, _ = weight.shape
    conv = sparse.SparseConv2d(c_in, c_out, k).to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return sparse.to_dense(conv(sparse.to_sparse(x, mask)))


def library_linear_lr_scaling(base_lr, batch_size, gpus, accum_steps):
    """:func:`maskvid_edu.launch.plan_launch` of a recipe with that batch on one node of ``gpus``."""
    recipe = {"train": {"base_lr": base_lr, "batch_size": batch_size, "accum_steps": accum_steps,
                        "min_lr": 0.0},
              "data": {"num_samples": 1_000_000}, "launch": {"gpus": gpus}}
    plan = plan_launch(recipe, gpus_per_node=gpus)
    return plan.effective_batch, plan.peak_lr


def library_topk_propagation(query, keys, key_labels, topk, temperature):
    """:func:`~maskvid_edu.evaluate.propagation.propagate_labels` on a two-frame video of one row
    of cells, frame 0 the context (as many cells as queries), without a spatial window."""
    features = torch.stack([keys.T, query.T])[:, :, None, :]  # (2, D, 1, n)
    config = PropagationConfig(topk=topk, temperature=temperature, radius=None)
    return propagate_labels(features, key_labels.T[:, None, :], config)[1, :, 0].T  # (n, K)


def library_layer_lr_scale(layer, num_layers, layer_decay):
    """The ``lr_scale`` that :func:`~maskvid_edu.evaluate.finetune.layer_decay_groups` gives the
    parameters of ``layer`` in a stand-in encoder of ``num_layers`` blocks under a head."""
    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.patch_embed = nn.Linear(1, 1)
    model.encoder.blocks = nn.ModuleList(nn.Linear(1, 1) for _ in range(num_layers))
    model.head = nn.Linear(1, 1)
    groups = finetune.layer_decay_groups(model, 0.05, layer_decay)
    return next(g["lr_scale"] for g in groups if g["layer"] == layer)


LIBRARY = {
    "num_masked": masking.num_masked,
    "tube_mask": masking.tube_mask,
    "patchify": patches.patchify,
    "normalize_patches_videomae": lambda p: patches.normalize_patches(p, "videomae", channels=3),
    "sparse_conv": library_sparse_conv,
    "ema_update": library_ema_update,
    "cosine_momentum": library_cosine_momentum,
    "rgb_difference": library_rgb_difference,
    "topk_propagation": library_topk_propagation,
    "mix_targets": lambda labels, k, lam, s: finetune.mix_targets(labels, k, lam=lam, smoothing=s),
    "layer_lr_scale": library_layer_lr_scale,
    "region_similarity": metrics.jaccard,
    "vit_block_flops": vit_block_flops,
    "linear_lr_scaling": library_linear_lr_scaling,
    # no library function: the rule written out, as the chapter derives it
    "loader_workers": lambda b, s, r, v=1: math.ceil(round(b / s / (r * v), 9)),
    "vjepa_loss": lambda pred, target: feature_loss(pred, feature_targets(target.detach())),
}


def test_every_exercise_is_listed_and_described():
    names = list_exercises()
    assert set(names) == set(LIBRARY)
    assert names[:2] == ["num_masked", "tube_mask"]  # book order
    for name in names:
        text = describe(name)
        assert text.startswith(name) and f"    {name}(" in text  # the signature to write, indented


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_the_library_passes_its_own_exercise(name, capsys):
    assert check(name, LIBRARY[name]) is True
    out = capsys.readouterr().out
    assert "✗" not in out and "well done" in out
    report = evaluate(name, LIBRARY[name])
    assert report.passed and report.failed is None and report.hint is None
    assert all(symbol == "✓" for symbol, _ in report.results) and len(report.results) >= 2


def test_sparse_layer_and_explicit_reference_are_both_accepted():
    assert evaluate("sparse_conv", lambda x, m, w, b: sparse.reference_sparse_conv2d(x, ~m, w, b)[0]).passed


def test_motion_target_via_frame_differences_is_accepted():
    assert evaluate("rgb_difference", lambda v: targets.frame_differences(denormalize(v, channel_dim=1))).passed


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def fails_with(name, function, *fragments, at=None):
    """Check ``function`` and assert it fails with every ``fragment`` in the hint (at property ``at``)."""
    report = evaluate(name, function)
    assert not report.passed, report.text
    for fragment in fragments:
        assert fragment in report.hint, f"{fragment!r} not in hint:\n{report.text}"
    if at is not None:
        assert at in report.failed, report.text
    # the report stops at the first failure: everything after it is marked as not yet checked
    symbols = [s for s, _ in report.results]
    assert symbols.count("✗") == 1 and "✓" not in symbols[symbols.index("✗"):]
    return report


def _k_smallest(noise, k):
    return noise.argsort(dim=-1).argsort(dim=-1) < k


# --------------------------------------------------------------------------------------------
# masking
# --------------------------------------------------------------------------------------------


def per_frame_mask(batch, grid, ratio, generator):
    t, h, w = grid
    k = math.floor(ratio * h * w)
    noise = torch.rand(batch, t, h * w, generator=generator)  # one draw per frame: the slip
    return _k_smallest(noise, k).reshape(batch, -1)


def test_per_frame_masks_fail_the_tube_property():
    report = fails_with("tube_mask", per_frame_mask,
                        "each temporal slot hides different positions: you drew one mask per frame; "
                        "draw one spatial mask and repeat it over t", at="same spatial positions")
    assert [s for s, _ in report.results][:2] == ["✓", "✓"]  # shape and count were right


def test_random_masking_count_is_named():
    fails_with("tube_mask", lambda b, g, r, generator: masking.random_mask(b, g, r, generator=generator),
               "floor(ρ·t·h·w) is the count of random masking", at="t · floor")


def test_thresholded_noise_gives_unequal_counts():
    def threshold(batch, grid, ratio, generator):
        t, h, w = grid
        return (torch.rand(batch, h * w, generator=generator) < ratio).repeat(1, t)

    fails_with("tube_mask", threshold, "different numbers of tokens", "instead of thresholding noise")


def test_inverted_mask_is_named():
    fails_with("tube_mask", lambda b, g, r, generator: ~masking.tube_mask(b, g, r, generator=generator),
               "You marked the visible tokens")


def test_repeat_interleave_layout_is_named():
    def interleaved(batch, grid, ratio, generator):
        t, h, w = grid
        spatial = _k_smallest(torch.rand(batch, h * w, generator=generator), math.floor(ratio * h * w))
        return spatial.repeat_interleave(t, dim=1)

    fails_with("tube_mask", interleaved, "repeat_interleave", "spatial.repeat(1, t)")


def test_ignoring_the_generator_is_named():
    def global_rng(batch, grid, ratio, generator):
        t, h, w = grid
        return _k_smallest(torch.rand(batch, h * w), math.floor(ratio * h * w)).repeat(1, t)

    fails_with("tube_mask", global_rng, "not from torch's global random state", at="generator")


def test_one_mask_for_the_whole_batch_is_named():
    def shared(batch, grid, ratio, generator):
        t, h, w = grid
        row = _k_smallest(torch.rand(1, h * w, generator=generator), math.floor(ratio * h * w))
        return row.repeat(batch, t)

    fails_with("tube_mask", shared, "draw noise of shape (batch, h·w)", at="its own mask")


def test_biased_position_choice_is_named():
    def biased(batch, grid, ratio, generator):
        t, h, w = grid
        noise = torch.rand(batch, h * w, generator=generator)
        noise[:, :2] *= 0.3  # the first two positions win far too often
        return _k_smallest(noise, math.floor(ratio * h * w)).repeat(1, t)

    fails_with("tube_mask", biased, "every position must be hidden with probability ρ", at="equally often")


def test_wrong_dtype_and_shape_are_named():
    fails_with("tube_mask", lambda b, g, r, generator: masking.tube_mask(b, g, r, generator=generator).float(),
               "a mask is a bool tensor")
    fails_with("tube_mask", lambda b, g, r, generator: masking.tube_mask(b, g, r, generator=generator).view(b, *g),
               "flatten it to (batch, t·h·w)")


def test_a_crash_is_reported_not_raised(capsys):
    def crashing(batch, grid, ratio, generator):
        noise = torch.rand(batch, grid, generator=generator)  # grid is a tuple: TypeError
        return noise < ratio

    assert check("tube_mask", crashing) is False
    out = capsys.readouterr().out
    assert "your function raised TypeError" in out
    assert "in crashing, line" in out and "torch.rand(batch, grid, generator=generator)" in out
    assert out.count("  ✗ ") == 1 and out.count("  · ") == 5


def test_unfinished_skeleton_and_non_function_are_reported():
    def skeleton(batch, grid, ratio, generator):
        raise NotImplementedError

    assert "not written yet" in evaluate("tube_mask", skeleton).hint
    report = evaluate("tube_mask", masking.tube_mask(2, (2, 2, 2), 0.5))
    assert not report.passed and "pass the function itself" in report.hint
    with pytest.raises(ValueError, match="name must be one of the exercises"):
        evaluate("tube_masks", masking.tube_mask)


def test_checking_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate("tube_mask", lambda b, g, r, generator: masking.tube_mask(b, g, r))  # uses the global generator
    assert torch.equal(torch.rand(3), expected)


def test_count_rule_slips():
    fails_with("num_masked", lambda units, ratio: round(ratio * units), "you rounded to the nearest integer")
    fails_with("num_masked", lambda units, ratio: math.ceil(ratio * units), "you rounded up")
    fails_with("num_masked", lambda units, ratio: units - math.floor(ratio * units), "left *visible*")
    fails_with("num_masked", lambda units, ratio: math.floor(ratio * units) * 1.0, "a count is an integer")


# --------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------


def test_channel_slowest_layout_is_named():
    def channel_first(video, tubelet, patch):
        B, C, T, H, W = video.shape
        x = video.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, t, h, w, C, tubelet, p, p): channel slowest
        return x.reshape(B, -1, C * tubelet * patch * patch)

    fails_with("patchify", channel_first, "(channel, frame, row, col) — channel slowest", "channel fastest",
               at="channel fastest")


def test_plain_reshape_mixes_patches():
    def reshape_only(video, tubelet, patch):
        B, C, T, H, W = video.shape
        return video.reshape(B, -1, tubelet * patch * patch * C)

    fails_with("patchify", reshape_only, "a token mixes pixels of different tubelets", at="exactly one tubelet")


def test_token_order_is_named():
    def columns_first(video, tubelet, patch):
        B, C, T, H, W = video.shape
        x = video.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
        x = x.permute(0, 2, 6, 4, 3, 5, 7, 1)  # (B, t, w, h, ...): columns before rows
        return x.reshape(B, -1, tubelet * patch * patch * C)

    fails_with("patchify", columns_first, "order the token axes (t, h, w)", at="raster order")


def test_hard_coded_sizes_are_named():
    def hard_coded(video, tubelet, patch):
        return patches.patchify(video, 2, 16)

    fails_with("patchify", hard_coded, "do not hard-code sizes", at="any tubelet")


def _norm(patches_, dim, *, unbiased=True, eps_inside=False, eps=1e-6, group=None):
    x = patches_ if group is None else patches_.unflatten(-1, group)
    mean = x.mean(dim=dim, keepdim=True)
    if eps_inside:
        scale = (x.var(dim=dim, unbiased=unbiased, keepdim=True) + eps).sqrt()
    else:
        scale = x.var(dim=dim, unbiased=unbiased, keepdim=True).sqrt() + eps
    return ((x - mean) / scale).reshape(patches_.shape)


def test_normalisation_axis_slips():
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -1, group=(-1, 3)),
               "wrong axis: you normalised the 3 channels of each pixel", at="on its own")
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -1),
               "wrong axis: you normalised over the whole patch", at="on its own")
    fails_with("normalize_patches_videomae", lambda p: patches.normalize_patches(p, "mae"),
               "over the whole patch")
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -1, group=(3, -1)), "channel slowest")


def test_biased_std_is_named():
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -2, group=(-1, 3), unbiased=False),
               "biased std", "n − 1", at="unbiased")


def test_eps_inside_the_square_root_is_named():
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -2, group=(-1, 3), eps_inside=True),
               "eps inside the square root", at="eps outside")


def test_missing_eps_gives_nan_on_a_flat_patch():
    fails_with("normalize_patches_videomae", lambda p: _norm(p, -2, group=(-1, 3), eps=0.0),
               "0 / 0", "(std + 1e-6)", at="constant patch")


# --------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def ema_wrong_way(target_params, online_params, momentum):
    for t, o in zip(target_params, online_params):
        t.mul_(1 - momentum).add_(o, alpha=momentum)  # θ_t ← (1 − m)·θ_t + m·θ_o


def test_ema_momentum_the_wrong_way_round_is_named():
    fails_with("ema_update", ema_wrong_way, "the momentum multiplies the wrong side",
               "θ_t ← (1 − m)·θ_t + m·θ_o", at="in place")


def test_ema_updating_the_online_network_is_named():
    @torch.no_grad()
    def online_moves(target_params, online_params, momentum):
        for t, o in zip(target_params, online_params):
            o.mul_(momentum).add_(t, alpha=1 - momentum)

    fails_with("ema_update", online_moves, "you moved the online parameters towards the target")


def test_ema_rebinding_instead_of_in_place_is_named():
    def rebinding(target_params, online_params, momentum):
        for t, o in zip(target_params, online_params):
            t = momentum * t + (1 - momentum) * o  # noqa: PLW2901 — the slip: a new local tensor

    fails_with("ema_update", rebinding, "the target did not change", "only rebinds a local name")


def test_ema_without_no_grad_is_named():
    def recorded(target_params, online_params, momentum):
        for t, o in zip(target_params, online_params):
            t.mul_(momentum).add_(o, alpha=1 - momentum)  # autograd records this

    report = fails_with("ema_update", recorded, "autograd recorded your update", "torch.no_grad()",
                        at="out of autograd")
    assert "Backward" in report.hint


def test_ema_with_detach_but_parameters_requiring_grad_is_named():
    def detached(target_params, online_params, momentum):
        for t, o in zip(target_params, online_params):
            t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)

    fails_with("ema_update", detached, "leaf Variable that requires grad", "must run under torch.no_grad()",
               at="require grad")


def test_ema_indexing_generators_is_named():
    @torch.no_grad()
    def indexed(target_params, online_params, momentum):
        for i in range(len(target_params)):
            target_params[i].mul_(momentum).add_(online_params[i], alpha=1 - momentum)

    fails_with("ema_update", indexed, "may be generators", at="generators")


# --------------------------------------------------------------------------------------------
# momentum schedule
# --------------------------------------------------------------------------------------------


def test_per_epoch_momentum_restart_is_named():
    def per_epoch(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
        return ema.cosine_momentum(step_in_epoch, epochs * steps_per_epoch, base, final)  # VideoMAC's indexing

    fails_with("cosine_momentum", per_epoch, "restarts at 0.996 every epoch", "global step",
               at="across epoch boundaries")


def test_schedule_over_one_epoch_is_named():
    def one_epoch(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
        return ema.cosine_momentum(step_in_epoch, steps_per_epoch, base, final)

    fails_with("cosine_momentum", one_epoch, "spans one epoch")


def test_linear_and_reversed_schedules_are_named():
    def linear(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
        s, total = epoch * steps_per_epoch + step_in_epoch, epochs * steps_per_epoch
        return base + (final - base) * s / total

    fails_with("cosine_momentum", linear, "linear ramp", at="follows")

    def reversed_(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
        s, total = epoch * steps_per_epoch + step_in_epoch, epochs * steps_per_epoch
        return base + (final - base) * (math.cos(math.pi * s / total) + 1) / 2

    fails_with("cosine_momentum", reversed_, "starts at final = 1", at="starts at base")


def test_fixed_numbers_instead_of_arguments_are_named():
    def fixed(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0):
        return ema.cosine_momentum(epoch * steps_per_epoch + step_in_epoch, epochs * steps_per_epoch)

    fails_with("cosine_momentum", fixed, "use the base and final arguments")


def test_tensor_momentum_is_named():
    fails_with("cosine_momentum", lambda *a, **k: torch.tensor(library_cosine_momentum(*a, **k)),
               "return a plain Python number")


# --------------------------------------------------------------------------------------------
# motion target
# --------------------------------------------------------------------------------------------


def test_rgb_difference_in_the_wrong_direction_is_named():
    def backwards(video):
        pixels = denormalize(video, channel_dim=1)
        return pixels[:, :, :-1] - pixels[:, :, 1:]  # x_i − x_(i+1)

    fails_with("rgb_difference", backwards, "wrong direction: you computed x_i − x_(i+1)", at="next minus current")


def test_rgb_difference_in_normalised_space_is_named():
    fails_with("rgb_difference", lambda video: video[:, :, 1:] - video[:, :, :-1],
               "differences of the normalised frames", "denormalize(video, channel_dim=1)", at="pixel space")


def test_rgb_difference_shape_slips():
    def padded(video):
        d = library_rgb_difference(video)
        return torch.cat([d, torch.zeros_like(d[:, :, :1])], dim=2)

    fails_with("rgb_difference", padded, "there are T = 4 differences")
    fails_with("rgb_difference", lambda video: torch.diff(video, dim=1), "along the channel axis")


# --------------------------------------------------------------------------------------------
# sparse convolution
# --------------------------------------------------------------------------------------------


def test_conv_without_remasking_is_named():
    def no_remask(x, mask, weight, bias):
        x = x * ~mask.unsqueeze(1)
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)

    fails_with("sparse_conv", no_remask, "masked sites are non-zero after your conv: re-apply the mask",
               at="hidden sites at 0")


def test_conv_without_zeroing_inputs_is_named():
    def leaky(x, mask, weight, bias):
        out = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
        return out * ~mask.unsqueeze(1)

    fails_with("sparse_conv", leaky, "hidden content leaks into visible sites", at="hidden input")


def test_conv_slips_bias_padding_and_inverted_mask():
    def correct(x, mask, weight, bias, use_bias=True, pad=True, keep=None):
        keep = ~mask if keep is None else keep
        x = x * keep.unsqueeze(1)
        out = F.conv2d(x, weight, bias if use_bias else None, padding=weight.shape[-1] // 2 if pad else 0)
        return out * keep.unsqueeze(1) if pad else out

    fails_with("sparse_conv", lambda *a: correct(*a, use_bias=False), "the bias is missing")
    fails_with("sparse_conv", lambda *a: correct(*a, pad=False), "pad by k // 2")
    fails_with("sparse_conv", lambda x, m, w, b: correct(x, m, w, b, keep=m), "mask is True = masked")


def test_a_missing_return_is_named():
    def forgot(video, tubelet, patch):
        patches.patchify(video, tubelet, patch)

    fails_with("patchify", forgot, "did you forget the `return` statement", at="returns")


# --------------------------------------------------------------------------------------------
# label propagation
# --------------------------------------------------------------------------------------------


def _propagation(weights):
    """A propagation step whose weights come from ``weights(affinity (n, m), k, τ)``."""
    return lambda query, keys, key_labels, k, tau: weights(query @ keys.T, k, tau) @ key_labels


def _top(aff, k, scale, largest=True, dim=1):
    top, idx = aff.topk(k, dim=1, largest=largest)
    return torch.zeros_like(aff).scatter(1, idx, torch.softmax(top * scale, dim=dim))


def test_propagation_slips_are_named():
    at = "top-k context cells"
    fails_with("topk_propagation", _propagation(lambda a, k, tau: torch.softmax(a / tau, dim=1)),
               "softmax over every context cell", at=at)
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, k, 1.0)),
               "the temperature is missing", at=at)
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, k, tau)),
               "you multiplied by the temperature", at=at)
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, k, 1 / tau, largest=False)),
               "*least* similar", at=at)
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, k, 0.0)),
               "the same weight", at=at)
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, k, 1 / tau, dim=0)),
               "over the query cells (dim=0)", at=at)


def test_propagation_shape_and_fixed_arguments_are_named():
    fails_with("topk_propagation", lambda q, keys, y, k, tau: (q @ keys.T).softmax(dim=1),
               "one soft label per query cell", at="returns (n, K)")
    fails_with("topk_propagation", _propagation(lambda a, k, tau: _top(a, 5, 10.0)),
               "take k, τ and the sizes from the arguments", at="follows topk")


# --------------------------------------------------------------------------------------------
# mixup targets and layer decay
# --------------------------------------------------------------------------------------------


def _smoothed(labels, k, s, *, on=None, off=None):
    one_hot = F.one_hot(labels.long(), k).double()
    on = 1 - s + s / k if on is None else on
    off = s / k if off is None else off
    return one_hot * on + (1 - one_hot) * off


def test_label_smoothing_slips_are_named():
    at = "smooths each label"
    fails_with("mix_targets", lambda y, k, lam, s: F.one_hot(y, k).float(), "plain one-hot", at=at)
    fails_with("mix_targets", lambda y, k, lam, s: _smoothed(y, k, s, on=1 - s, off=s / (k - 1)),
               "over the K − 1 other classes", at=at)
    fails_with("mix_targets", lambda y, k, lam, s: _smoothed(y, k, s, on=1 - s),
               "a row sums to less than 1", at=at)


def test_mixup_partner_slips_are_named():
    at = "mixes clip i with clip B − 1 − i"
    fails_with("mix_targets", lambda y, k, lam, s: _smoothed(y, k, s), "ignore lam", at=at)
    fails_with("mix_targets",
               lambda y, k, lam, s: (1 - lam) * _smoothed(y, k, s) + lam * _smoothed(y, k, s).flip(0),
               "lam weights the clip's own label", at="smooths each label")
    fails_with("mix_targets",
               lambda y, k, lam, s: lam * _smoothed(y, k, s) + (1 - lam) * _smoothed(y, k, s).roll(1, 0),
               "mixed each clip with its neighbour", at=at)


def test_mixup_shape_dtype_and_sizes_are_named():
    fails_with("mix_targets", lambda y, k, lam, s: finetune.mix_targets(y, k, lam, s).T,
               "(B, num_classes)", at="returns a float tensor")
    fails_with("mix_targets", lambda y, k, lam, s: y.view(-1, 1).expand(-1, k),
               "soft targets are float", at="returns a float tensor")

    def hard_coded(y, k, lam, s):
        smoothed = _smoothed(y, k, s, on=1 - s + s / 4, off=s / 4)  # K = 4 written in
        return lam * smoothed + (1 - lam) * smoothed.flip(0)

    fails_with("mix_targets", hard_coded, "hard-code nothing", at="any batch")


def test_layer_decay_slips_are_named():
    at = "layer_decay^(L + 1 − l)"
    fails_with("layer_lr_scale", lambda l, L, d: d**l, "run the wrong way", at=at)
    fails_with("layer_lr_scale", lambda l, L, d: d ** (L - l), "off by one", "the head is layer L + 1",
               at=at)
    fails_with("layer_lr_scale", lambda l, L, d: d ** (L + 2 - l), "off by one", "scale 1", at=at)
    fails_with("layer_lr_scale", lambda l, L, d: max(0.0, 1 - (1 - d) * (L + 1 - l)),
               "geometric, not linear", at=at)
    fails_with("layer_lr_scale", lambda l, L, d: torch.tensor(d) ** (L + 1 - l), "returned a tensor",
               at="Python number")


# --------------------------------------------------------------------------------------------
# region similarity J
# --------------------------------------------------------------------------------------------


def _areas(truth, pred):
    return int((truth & pred).sum()), int(truth.sum()), int(pred.sum()), truth.numel()


def _iou(truth, pred):
    union = int((truth | pred).sum())
    return 1.0 if union == 0 else int((truth & pred).sum()) / union


def test_region_similarity_ratio_slips_are_named():
    def ratio(f):
        return lambda truth, pred: f(*_areas(truth, pred))

    at = "truth ∪ pred"
    fails_with("region_similarity", ratio(lambda i, t, p, n: i / t), "that is recall", at=at)
    fails_with("region_similarity", ratio(lambda i, t, p, n: i / p), "that is precision", at=at)
    fails_with("region_similarity", ratio(lambda i, t, p, n: 2 * i / (t + p)), "Dice", at=at)
    fails_with("region_similarity", ratio(lambda i, t, p, n: i / (t + p)),
               "counts the overlap twice", at=at)
    fails_with("region_similarity", ratio(lambda i, t, p, n: (n - t - p + 2 * i) / n),
               "pixel accuracy", at=at)
    fails_with("region_similarity", lambda truth, pred: 1 - _iou(truth, pred),
               "Jaccard distance", at=at)


def test_region_similarity_empty_masks_are_named():
    fails_with("region_similarity", lambda truth, pred: (truth & pred).sum().item() / (truth | pred).sum().item(),
               "division by zero", "return 1.0", at="both masks are empty")
    fails_with("region_similarity",
               lambda truth, pred: float((truth & pred).sum() / (truth | pred).sum()),
               "you returned nan", at="both masks are empty")
    fails_with("region_similarity",
               lambda truth, pred: 0.0 if not (truth | pred).any() else _iou(truth, pred),
               "scores an empty prediction of an empty object 1", at="both masks are empty")


def test_region_similarity_type_inputs_and_sizes_are_named():
    fails_with("region_similarity", lambda truth, pred: (truth & pred).sum() / (truth | pred).sum(),
               "returned a tensor", at="Python number")

    def in_place(truth, pred):
        value = _iou(truth, pred)
        truth &= pred
        return value

    fails_with("region_similarity", in_place, "changed the masks", at="any frame size")

    def hard_coded(truth, pred):
        return _iou(truth[:6, :7], pred[:6, :7])

    fails_with("region_similarity", hard_coded, "do not hard-code the frame size", at="any frame size")


# --------------------------------------------------------------------------------------------
# FLOPs of a block
# --------------------------------------------------------------------------------------------


def _block(dim, num_tokens, mlp_ratio=4.0, *, qkv=3, attention=2, out=1, mlp=2, hidden=None):
    n, d = num_tokens, dim
    h = int(d * mlp_ratio) if hidden is None else hidden(d, mlp_ratio)
    return 2 * n * d * d * (qkv + out) + attention * 2 * n * n * d + mlp * 2 * n * d * h


def test_block_flops_counting_slips_are_named():
    at = "MLP ratio 4"
    fails_with("vit_block_flops", lambda d, n, r=4.0: vit_block_flops(d, n, r) // 2,
               "multiply-accumulates", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: 3 * vit_block_flops(d, n, r),
               "that is a training step", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, attention=0),
               "the attention products are missing", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, attention=1),
               "you counted one attention product", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, qkv=1),
               "the qkv projection maps D to 3D", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, out=0),
               "the output projection", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, mlp=1),
               "the MLP has two layers", at=at)
    fails_with("vit_block_flops", lambda d, n, r=4.0: vit_block_flops(n, d, r),
               "you swapped the arguments", at=at)


def test_block_flops_mlp_ratio_and_type_slips_are_named():
    fails_with("vit_block_flops", lambda d, n, r=4.0: vit_block_flops(d, n),
               "you ignored mlp_ratio", at="follows mlp_ratio")
    fails_with("vit_block_flops", lambda d, n, r=4.0: _block(d, n, r, hidden=lambda d, r: d * r),
               "H = int(D · mlp_ratio)", "133, not 133.3", at="follows mlp_ratio")
    fails_with("vit_block_flops", lambda d, n, r=4.0: float(vit_block_flops(d, n, r)),
               "a FLOP count is a whole number", at="exact int")
    fails_with("vit_block_flops", lambda d, n, r=4.0: None, "forget the `return`", at="returns a number")


# --------------------------------------------------------------------------------------------
# effective batch and the linear learning-rate rule
# --------------------------------------------------------------------------------------------


def _scaled(effective, lr=lambda base, e, b: base * e / 256):
    return lambda base, b, g, a: (effective(b, g, a), lr(base, effective(b, g, a), b))


def test_effective_batch_slips_are_named():
    at = "effective batch ="
    fails_with("linear_lr_scaling", _scaled(lambda b, g, a: b), "the per-GPU batch", at=at)
    fails_with("linear_lr_scaling", _scaled(lambda b, g, a: b * g),
               "gradient accumulation is missing", at=at)
    fails_with("linear_lr_scaling", _scaled(lambda b, g, a: b * a), "the GPUs are missing", at=at)
    fails_with("linear_lr_scaling", _scaled(lambda b, g, a: b + g + a),
               "the three factors multiply", at=at)


def test_learning_rate_rule_slips_are_named():
    product = lambda b, g, a: b * g * a  # noqa: E731
    at = "peak lr ="
    fails_with("linear_lr_scaling", _scaled(product, lambda base, e, b: base),
               "base_lr unchanged", at=at)
    fails_with("linear_lr_scaling", _scaled(product, lambda base, e, b: base * 256 / e),
               "upside down", at=at)
    fails_with("linear_lr_scaling", _scaled(product, lambda base, e, b: base * b / 256),
               "scaled by the per-GPU batch", at=at)
    fails_with("linear_lr_scaling", _scaled(product, lambda base, e, b: base * math.sqrt(e / 256)),
               "square-root rule", at=at)
    fails_with("linear_lr_scaling", _scaled(product, lambda base, e, b: base * e),
               "the reference batch is missing", at=at)


def test_learning_rate_return_slips_are_named():
    fails_with("linear_lr_scaling", lambda base, b, g, a: base * b * g * a / 256,
               "you returned one number", at="the pair")
    fails_with("linear_lr_scaling", lambda base, b, g, a: (torch.tensor(b * g * a), 1.0),
               "is a Tensor", at="the pair")
    fails_with("linear_lr_scaling", _scaled(lambda b, g, a: float(b * g * a)),
               "it counts clips, return an int", at="as an int")


# --------------------------------------------------------------------------------------------
# the chapters: a scaffold, a check and a solution for every exercise
# --------------------------------------------------------------------------------------------

BOOK = Path(__file__).resolve().parents[1] / "book"
CHECK_CALL = re.compile(r'^passed = check\("(\w+)", (\w+)\)$', re.MULTILINE)
SOLUTION = ":::{admonition} Solution\n:class: dropdown\n"


def _exercise_cells():
    """``(chapter, name, function, scaffold, check, solution)`` for every check cell."""
    found = []
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            source = "".join(cell["source"])
            match = CHECK_CALL.search(source) if cell["cell_type"] == "code" else None
            if match:
                found.append((path.name, match[1], match[2], "".join(cells[i - 1]["source"]),
                              source, "".join(cells[i + 1]["source"]) if i + 1 < len(cells) else ""))
    return found


EXERCISE_CELLS = _exercise_cells()


def test_every_exercise_is_checked_in_a_chapter():
    checked = [name for _, name, *_ in EXERCISE_CELLS]
    assert sorted(checked) == sorted(list_exercises())  # each one exactly once


@pytest.mark.parametrize("chapter, name, function, scaffold, check_cell, solution", EXERCISE_CELLS,
                         ids=[f"{c[0][:2]}-{c[1]}" for c in EXERCISE_CELLS])
def test_exercise_cells_scaffold_check_and_solution(chapter, name, function, scaffold, check_cell,
                                                    solution, capsys):
    cells = [scaffold, check_cell]
    assert all(len(line) <= 88 for cell in cells for line in cell.splitlines())
    # the scaffold as committed: the check cell reports it unfinished and raises nothing
    assert f"def {function}(" in scaffold and "raise NotImplementedError" in scaffold
    namespace: dict = {}
    exec(scaffold, namespace)
    exec(check_cell, namespace)
    assert namespace["passed"] is False
    assert "not written yet" in capsys.readouterr().out
    # the collapsible solution that follows: its first code block passes the checker
    assert solution.startswith(SOLUTION), solution[:80]
    code = solution.split("```python\n", 1)[1].split("```", 1)[0]
    assert f"def {function}(" in code and f'check("{name}", {function})' in code
    namespace = {"check": check}
    exec(code, namespace)
    report = evaluate(name, namespace[function])
    assert report.passed, report.text


# --------------------------------------------------------------------------------------------
# loader workers
# --------------------------------------------------------------------------------------------


def test_loader_worker_rounding_slips_are_named():
    at = "rounds the clips"
    fails_with("loader_workers", lambda b, s, r, v=1: b / s / (r * v), "a fraction of a worker", at=at)
    fails_with("loader_workers", lambda b, s, r, v=1: round(b / s / (r * v)), "nearest whole number",
               at=at)
    fails_with("loader_workers", lambda b, s, r, v=1: math.floor(b / s / (r * v) + 1e-9),
               "you rounded down", at=at)
    fails_with("loader_workers", lambda b, s, r, v=1: math.floor(b / s / (r * v) + 1e-9) + 1,
               "one too many when the need is a whole number", at=at)


def test_loader_worker_formula_slips_are_named():
    at = "rounds the clips"
    fails_with("loader_workers", lambda b, s, r, v=1: math.ceil(round(b / s / r, 9)), "you ignored views",
               at=at)
    fails_with("loader_workers", lambda b, s, r, v=1: math.ceil(round(b * s / (r * v), 9)),
               "you multiplied by the step time", at=at)
    fails_with("loader_workers", lambda b, s, r, v=1: float(math.ceil(round(b / s / (r * v), 9))),
               "a number of processes is an int", at="returns an int")


# --------------------------------------------------------------------------------------------
# vjepa_loss
# --------------------------------------------------------------------------------------------


def test_vjepa_loss_slips_are_named():
    def ln(x):
        return F.layer_norm(x, (x.shape[-1],))

    fails_with("vjepa_loss", lambda p, t: (p - t).abs().mean(), "raw target features")
    fails_with("vjepa_loss", lambda p, t: (p - ln(t.detach())).pow(2).mean(), "squared error")
    fails_with("vjepa_loss", lambda p, t: (p - ln(t.detach())).abs().sum(), "summed")
    fails_with("vjepa_loss", lambda p, t: (p - ln(t)).abs().mean(), "gradient reached the target")
    fails_with("vjepa_loss", lambda p, t: (p - ln(t.detach())).abs().mean(dim=-1), "reduce it to one number")
