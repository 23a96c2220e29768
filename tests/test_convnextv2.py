"""ConvNeXt V2 encoder: timm parity, dense inference, mask dissipation, published sizes."""

import pytest
import torch
import torch.nn as nn

from maskvid_edu.models.convnextv2 import (
    CONVNEXTV2_SIZES,
    ConvNeXtV2Config,
    ConvNeXtV2Encoder,
    build_convnextv2,
    convert_timm_state_dict,
)
from maskvid_edu.models.registry import create, list_models

timm = pytest.importorskip("timm")


def random_patch_mask(b, n, ratio, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = int(round(ratio * n))
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        mask[i, torch.randperm(n, generator=g)[:k]] = True
    return mask


def perturb_norms(model: nn.Module, seed=0):
    """timm initialises GRN to zero (identity) and LayerNorm to (1, 0): perturb them so the
    comparison also checks that those parameters land in the right place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "grn" in name or "norm" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("size", ["atto", "tiny"])
def test_timm_weights_give_equal_features(size):
    """atto: timm's 1×1-conv MLP and channels-first GRN (full size); tiny: its linear MLP and
    channels-last GRN (tiny's layout at reduced width and depth, to stay fast)."""
    shrink = {} if size == "atto" else {"depths": (1, 1, 2, 1), "dims": (24, 48, 96, 192)}
    ref = timm.create_model(f"convnextv2_{size}", pretrained=False, **shrink).eval()
    perturb_norms(ref)
    ours = build_convnextv2(size, **shrink).eval()
    ours.load_state_dict(convert_timm_state_dict(ref.state_dict()))  # strict: every key maps
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = ref.forward_features(x), ours(x)
    assert a.shape == b.shape == (2, ours.num_features, 2, 3)
    assert (a - b).abs().max() < 1e-4 * max(1.0, a.abs().max().item())  # measured ~2e-6


def test_no_hidden_patch_equals_dense():
    torch.manual_seed(0)
    model = build_convnextv2("demo").eval()
    x = torch.randn(2, 3, 64, 64)
    nothing_hidden = torch.zeros(2, 4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(model(x, nothing_hidden), model(x), atol=1e-5)


def test_sparse_path_keeps_hidden_patches_empty_and_dense_path_does_not():
    """Mask dissipation: after the whole encoder, hidden patches are exactly zero with sparse
    layers, while the same network run densely on the zero-filled image fills them in."""
    torch.manual_seed(1)
    model = build_convnextv2("demo").eval()
    x = torch.randn(2, 3, 128, 128)
    mask = random_patch_mask(2, 16, 0.6)
    hidden = mask.reshape(2, 4, 4)
    with torch.no_grad():
        sparse_out = model(x, mask)  # (2, 128, 4, 4)
        zero_filled = x.masked_fill(hidden.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1), 0)
        dense_out = model(zero_filled)
    assert torch.all(sparse_out.permute(0, 2, 3, 1)[hidden] == 0)
    assert dense_out.permute(0, 2, 3, 1)[hidden].abs().amin(-1).min() > 0  # every hidden site non-zero
    # visible outputs do not depend on the hidden pixels at all (not even through statistics)
    x_other = torch.where(hidden.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1), torch.randn_like(x), x)
    with torch.no_grad():
        assert torch.equal(model(x_other, mask), sparse_out)


def test_every_stage_is_sparse_and_gradients_skip_hidden_pixels():
    torch.manual_seed(2)
    model = build_convnextv2("demo", drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 64, 96, requires_grad=True)
    mask = random_patch_mask(2, 6, 0.5)
    outs = model.forward_stages(x, mask)
    for i, o in enumerate(outs):
        s = 2 ** (i + 2)
        assert o.shape == (2, model.config.dims[i], 64 // s, 96 // s)
        hidden = mask.reshape(2, 2, 3).repeat_interleave(32 // s, 1).repeat_interleave(32 // s, 2)
        assert torch.all(o.permute(0, 2, 3, 1)[hidden] == 0)
    outs[-1].square().mean().backward()
    pix_hidden = mask.reshape(2, 2, 3).repeat_interleave(32, 1).repeat_interleave(32, 2)
    assert torch.all(x.grad.permute(0, 2, 3, 1)[pix_hidden] == 0)
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_published_sizes_match_timm_parameter_counts():
    for size in CONVNEXTV2_SIZES:
        if size == "demo":
            continue
        with torch.device("meta"):
            ref = timm.create_model(f"convnextv2_{size}", pretrained=False)
            ours = build_convnextv2(size)
        n_ref = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("head"))
        n_ours = sum(p.numel() for p in ours.parameters())
        assert n_ours == n_ref, size
    assert CONVNEXTV2_SIZES["small"] == ((3, 3, 27, 3), (96, 192, 384, 768))  # VideoMAC's ConvNeXtV2-S


def test_registry_and_config_validation():
    names = list_models("encoder_convnextv2_")
    assert names == sorted(f"encoder_convnextv2_{s}" for s in CONVNEXTV2_SIZES)
    model = create("encoder_convnextv2_demo", drop_path_rate=0.2)
    assert isinstance(model, ConvNeXtV2Encoder) and model.config.drop_path_rate == 0.2
    with pytest.raises(ValueError, match="unknown override"):
        create("encoder_convnextv2_demo", width=3)
    with pytest.raises(ValueError, match="backend"):
        ConvNeXtV2Config(backend="dense")
    with pytest.raises(ValueError, match="size"):
        build_convnextv2("gigantic")
    model = build_convnextv2("demo")
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="mask"):
        model(torch.randn(1, 3, 64, 64), torch.zeros(1, 3, dtype=torch.bool))


def test_timm_conversion_rejects_foreign_keys():
    with pytest.raises(ValueError, match="unexpected key"):
        convert_timm_state_dict({"stages.0.blocks.0.gamma": torch.zeros(3)})


@pytest.mark.slow
def test_convnextv2_small_full_size_step():
    torch.manual_seed(3)
    model = build_convnextv2("small").train()
    x = torch.randn(1, 3, 224, 224)
    mask = random_patch_mask(1, 49, 0.75)
    out = model(x, mask)
    assert out.shape == (1, 768, 7, 7)
    assert torch.all(out.permute(0, 2, 3, 1)[mask.reshape(1, 7, 7)] == 0)
    out.square().mean().backward()
    assert model.stages[2][26].pwconv2.weight.grad is not None
