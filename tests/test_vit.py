"""The video ViT encoder: sizes, position embedding, attention, masking semantics."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskvid_edu.masking import tube_mask
from maskvid_edu.models.vit import (
    VIT_SIZES,
    Attention,
    Block,
    ViTConfig,
    VisionTransformer,
    position_embedding,
    sinusoid_table,
    token_index,
    vit_config,
)

# Encoder parameter counts of the official definitions (modeling_pretrain.py's encoders:
# patch embedding Conv3d + blocks with qkv, q_bias, v_bias + final LayerNorm; no position
# parameters). transformers' VideoMAEModel(use_mean_pooling=False) gives the same numbers (the
# test below rebuilds S and B with it); the papers quote them rounded.
OFFICIAL_ENCODER_PARAMS = {
    "s": 21_879_936,
    "b": 86_227_200,
    "l": 303_860_736,
    "h": 631_607_040,
    "g": 1_011_610_752,  # VideoMAE V2 ViT-g/14
}
PUBLISHED_MILLIONS = {"s": 22, "b": 87, "l": 305, "h": 633, "g": 1011}  # VideoMAE Table 14, V2 Table 1


def tiny_config(**kw):
    base = dict(img_size=32, num_frames=4, tubelet=2, patch=8, dim=32, depth=2, heads=4)
    base.update(kw)
    return ViTConfig(**base)


@pytest.mark.parametrize("size", sorted(VIT_SIZES))
def test_parameter_counts_match_official_definitions(size):
    with torch.device("meta"):  # count without allocating (ViT-g has a billion parameters)
        model = VisionTransformer(vit_config(size))
    n = model.num_parameters()
    assert n == OFFICIAL_ENCODER_PARAMS[size]
    assert abs(n / 1e6 - PUBLISHED_MILLIONS[size]) / PUBLISHED_MILLIONS[size] < 0.01


@pytest.mark.parametrize("size", ["b"])
def test_parameter_counts_equal_transformers(size):
    transformers = pytest.importorskip("transformers")
    c = vit_config(size)
    hf_config = transformers.VideoMAEConfig(
        hidden_size=c.dim, num_hidden_layers=c.depth, num_attention_heads=c.heads,
        intermediate_size=int(c.dim * c.mlp_ratio), use_mean_pooling=False, qkv_bias=True,
    )
    with torch.device("meta"):
        hf = transformers.VideoMAEModel(hf_config)
    assert sum(p.numel() for p in hf.parameters()) == OFFICIAL_ENCODER_PARAMS[size]


def test_vit_g_shape():
    c = vit_config("g")
    assert (c.dim, c.depth, c.heads, c.patch) == (1408, 40, 16, 14)
    assert int(c.dim * c.mlp_ratio) == 6144
    assert c.grid == (8, 16, 16)


def reference_sinusoid(n_position, d_hid):
    """The official numpy formula, written out."""
    import numpy as np

    table = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)] for pos in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)


def test_sinusoid_table_matches_official_formula():
    ours = sinusoid_table(1568, 48)  # ViT-B's 8×14×14 tokens; few channels keep the loop short
    assert ours.shape == (1568, 48) and ours.dtype == torch.float32
    assert torch.allclose(ours, reference_sinusoid(1568, 48), atol=1e-6, rtol=0)


def test_position_embedding_is_a_fixed_buffer_not_saved():
    model = VisionTransformer(tiny_config())
    assert "pos_embed" not in model.state_dict()
    assert all(p is not model.pos_embed for p in model.parameters())
    assert torch.equal(model.pos_embed, sinusoid_table(2 * 4 * 4, 32))


def test_position_embedding_other_grids():
    grid, dim = (8, 14, 14), 64
    same = position_embedding(grid, dim, reference_grid=grid)
    assert torch.equal(same, sinusoid_table(8 * 14 * 14, dim))
    rebuilt = position_embedding((8, 7, 7), dim, reference_grid=grid, mode="rebuild")
    assert torch.equal(rebuilt, sinusoid_table(8 * 7 * 7, dim))
    assert position_embedding((8, 28, 28), dim, reference_grid=grid).shape == (8 * 28 * 28, dim)
    # halving h and w: trilinear (align_corners=False) samples the reference grid between each
    # 2×2 block of tokens, i.e. their average
    down = position_embedding((8, 7, 7), dim, reference_grid=grid)
    ref = sinusoid_table(8 * 14 * 14, dim).T.reshape(1, dim, 8, 14, 14)
    expected = F.avg_pool3d(ref, kernel_size=(1, 2, 2)).reshape(dim, -1).T
    assert torch.allclose(down, expected, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        position_embedding((8, 7, 7), dim, reference_grid=grid, mode="nearest")


def test_encoder_runs_at_another_input_size():
    model = VisionTransformer(tiny_config()).eval()
    video = torch.randn(2, 3, 8, 48, 40)  # grid (4, 6, 5) instead of (2, 4, 4)
    out = model(video)
    assert out.shape == (2, 4 * 6 * 5, 32)
    expected = position_embedding((4, 6, 5), 32, reference_grid=(2, 4, 4))
    assert torch.allclose(model.position_embedding((4, 6, 5)), expected)
    rebuild = VisionTransformer(tiny_config(pos_resize="rebuild"))
    assert torch.equal(rebuild.position_embedding((4, 6, 5)), sinusoid_table(120, 32))


def test_token_index_matches_boolean_gather():
    mask = tube_mask(3, (2, 4, 4), 0.75, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 32, 5)
    idx = token_index(~mask)
    assert torch.equal(x[torch.arange(3)[:, None], idx], x[~mask].reshape(3, -1, 5))
    assert (idx.diff(dim=1) > 0).all()  # raster order


def official_attention(attn: Attention, x):
    """The official Attention.forward (explicit softmax), on the same parameters."""
    B, N, C = x.shape
    bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    qkv = F.linear(x, attn.qkv.weight, bias).reshape(B, N, 3, attn.heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = ((q * (C // attn.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return attn.proj((a @ v).transpose(1, 2).reshape(B, N, -1))


def test_sdpa_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    attn = Attention(48, 6, qkv_bias=True)
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 37, 48)
    assert torch.allclose(attn(x), official_attention(attn, x), atol=1e-5)
    # the key bias is fixed at zero: only q_bias and v_bias are parameters
    assert {n for n, _ in attn.named_parameters()} == {"qkv.weight", "q_bias", "v_bias", "proj.weight", "proj.bias"}


def test_block_layer_scale_and_drop_path():
    torch.manual_seed(0)
    block = Block(32, 4, layer_scale_init=0.1, drop_path=0.5)
    assert torch.equal(block.gamma_1, torch.full((32,), 0.1))
    x = torch.randn(8, 5, 32)
    block.eval()
    assert torch.equal(block(x), block(x))  # drop path is off in eval
    block.train()
    torch.manual_seed(1)
    a = block(x)
    torch.manual_seed(2)
    b = block(x)
    assert not torch.equal(a, b)  # samples dropped at random while training
    assert Block(32, 4).gamma_1 is None


def test_visible_only_encoder_equals_official_order():
    """Official: embed all tokens, add the position embedding to all, then keep the visible ones."""
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config()).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    mask = tube_mask(2, (2, 4, 4), 0.75, generator=torch.Generator().manual_seed(3))
    x = model.patch_embed.proj(video).flatten(2).transpose(1, 2) + model.pos_embed  # (B, N, D)
    x = x[~mask].reshape(2, -1, 32)
    for blk in model.blocks:
        x = blk(x)
    expected = model.norm(x)
    out = model(video, mask)
    assert out.shape == (2, 8, 32)
    assert torch.allclose(out, expected, atol=1e-5)
    # no mask: every token
    assert model(video).shape == (2, 32, 32)


def test_masked_pixels_get_no_gradient():
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config())
    video = torch.randn(1, 3, 4, 32, 32, requires_grad=True)
    mask = tube_mask(1, (2, 4, 4), 0.5, generator=torch.Generator().manual_seed(1))
    model(video, mask).square().sum().backward()
    # per-token gradient magnitude, tubelets flattened in raster order
    g = video.grad.reshape(1, 3, 2, 2, 4, 8, 4, 8).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(1, 32, -1).abs().sum(-1)
    assert (g[mask] == 0).all()
    assert (g[~mask] > 0).all()
    # every encoder parameter takes part
    assert all(p.grad is not None for p in model.parameters())


def test_activation_checkpointing_gives_same_values_and_grads():
    torch.manual_seed(0)
    plain = VisionTransformer(tiny_config())
    ckpt = VisionTransformer(tiny_config(use_checkpoint=True))
    ckpt.load_state_dict(plain.state_dict())
    video = torch.randn(2, 3, 4, 32, 32)
    mask = tube_mask(2, (2, 4, 4), 0.5, generator=torch.Generator().manual_seed(0))
    outs = []
    for model in (plain, ckpt):
        out = model(video, mask)
        out.square().mean().backward()
        outs.append((out, model.blocks[0].attn.qkv.weight.grad))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-6)


def test_mean_pooling_head():
    model = VisionTransformer(tiny_config(use_mean_pooling=True, num_classes=5, head_init_scale=0.001))
    assert isinstance(model.norm, torch.nn.Identity) and model.fc_norm is not None
    assert model.head.weight.abs().max() < 0.02 * 6 * 0.001  # N(0, 0.02²) × 0.001
    video = torch.randn(2, 3, 4, 32, 32)
    assert model.classify(video).shape == (2, 5)
    assert model.forward_features(video).shape == (2, 32)
    with pytest.raises(ValueError, match="num_classes"):
        VisionTransformer(tiny_config()).classify(video)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(img_size=30), "divisible by patch"),
        (dict(num_frames=3), "divisible by tubelet"),
        (dict(dim=30), "divisible by heads"),
        (dict(depth=0), "depth"),
        (dict(drop_path=1.0), "drop_path"),
        (dict(pos_resize="cubic"), "pos_resize"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**kw)


def test_input_errors():
    model = VisionTransformer(tiny_config())
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="tubelets"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.randn(3, 4, 32, 32))
    with pytest.raises(ValueError, match="N = 32"):
        model(torch.randn(1, 3, 4, 32, 32), torch.zeros(1, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch"):
        model(torch.randn(2, 3, 4, 32, 32), torch.zeros(1, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="size"):
        vit_config("xl")


def test_published_sizes_table():
    assert {k: (v["dim"], v["depth"], v["heads"]) for k, v in VIT_SIZES.items()} == {
        "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16), "h": (1280, 32, 16), "g": (1408, 40, 16),
    }
    assert math.isclose(VIT_SIZES["g"]["mlp_ratio"], 48 / 11)
