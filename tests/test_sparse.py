"""The ``masked`` sparse backend against explicit references.

Tolerances: float64 comparisons with the gather/scatter reference agree to ≤ 1e-12, float32 ones
to ≤ 1e-5 (measured: ≤ 2.3e-16 and ≤ 1.2e-7 on 9×8 maps, 60 % of sites hidden).
"""

import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from maskvid_edu.sparse import minkowski as sparse  # where the MinkowskiEngine module is cached
from maskvid_edu.sparse import (
    SparseBatchNorm2d,
    SparseConv2d,
    SparseDropPath,
    SparseGRN,
    SparseLayerNorm,
    SparseLinear,
    SparseMap,
    SparseMaxPool2d,
    active_mask,
    downsample_active,
    kernel_map,
    minkowski_to_torch_kernel,
    reference_sparse_conv2d,
    to_dense,
    to_sparse,
    torch_to_minkowski_kernel,
    upsample_mask,
)

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_map(b=2, c=5, h=9, w=8, ratio=0.6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    mask = torch.rand(b, h, w, generator=g) < ratio  # True = masked, site-level (harder than patches)
    return x, mask


# conv cases: (in, out, kernel, stride, groups)
CONV_CASES = {
    "conv3x3": (4, 6, 3, 1, 1),
    "depthwise7x7": (5, 5, 7, 1, 5),
    "downsample2x2_s2": (4, 6, 2, 2, 1),
    "conv3x3_s2": (4, 6, 3, 2, 1),
    "conv1x1_s2": (4, 6, 1, 2, 1),
    "grouped3x3": (4, 6, 3, 1, 2),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_matches_gather_scatter_reference(case, dtype):
    cin, cout, k, s, groups = CONV_CASES[case]
    torch.manual_seed(1)
    conv = SparseConv2d(cin, cout, k, stride=s, groups=groups).to(dtype)
    x, mask = random_map(c=cin, dtype=dtype)
    y = to_dense(conv(to_sparse(x, mask)))
    w, b = conv.weight.detach(), conv.bias.detach()
    ref, ref_active = reference_sparse_conv2d(x, ~mask, w, b, stride=s, groups=groups)
    assert y.shape == ref.shape
    err = (y - ref).abs().max().item()
    assert err <= TOL[dtype], f"{case} {dtype}: max abs error {err:.3g}"
    assert torch.equal(active_mask(conv(to_sparse(x, mask))), ref_active)
    assert torch.all(y.permute(0, 2, 3, 1)[~ref_active] == 0)  # hidden outputs exactly zero


def test_conv_backward_matches_reference():
    torch.manual_seed(2)
    conv = SparseConv2d(4, 3, 3).double()
    x, mask = random_map(c=4)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    w2 = conv.weight.detach().clone().requires_grad_(True)
    y1 = to_dense(conv(to_sparse(x1, mask)))
    y2, _ = reference_sparse_conv2d(x2, ~mask, w2, conv.bias.detach(), stride=1)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    assert (x1.grad - x2.grad).abs().max() < 1e-12
    assert (conv.weight.grad - w2.grad).abs().max() < 1e-12
    assert torch.all(x1.grad.permute(0, 2, 3, 1)[mask] == 0)  # nothing flows into hidden sites


def test_plain_dense_conv_dissipates_the_mask():
    """A dense conv on the zero-filled map writes into hidden sites; the sparse one does not."""
    conv = SparseConv2d(3, 3, 3).double()
    x, mask = random_map(c=3)
    x = x.masked_fill(mask.unsqueeze(1), 0)
    dense = conv._conv_forward(x, conv.weight, conv.bias)
    assert dense.permute(0, 2, 3, 1)[mask].abs().max() > 0
    assert to_dense(conv(to_sparse(x, mask))).permute(0, 2, 3, 1)[mask].abs().max() == 0


def test_mask_none_is_the_dense_layer():
    torch.manual_seed(3)
    conv = SparseConv2d(4, 6, 3, stride=2)
    x = torch.randn(2, 4, 10, 12)
    assert torch.allclose(to_dense(conv(to_sparse(x, None))), F.conv2d(x, conv.weight, conv.bias, 2, 1), atol=1e-6)
    # an all-visible mask runs the masking code and gives the same numbers
    all_visible = torch.zeros(2, 10, 12, dtype=torch.bool)
    assert torch.allclose(to_dense(conv(to_sparse(x, all_visible))), to_dense(conv(to_sparse(x, None))), atol=1e-6)


def test_even_kernel_needs_matching_stride():
    with pytest.raises(ValueError, match="stride"):
        SparseConv2d(3, 3, 2, stride=1)


def test_kernel_map_lists_active_pairs_only():
    active = torch.zeros(1, 3, 3, dtype=torch.bool)
    active[0, 1, 1] = active[0, 0, 0] = True
    out_active, pairs = kernel_map(active, 3, 1)
    assert torch.equal(out_active, active)
    # centre offset maps every site to itself; offset (0, 0) maps (0,0) → (1,1)
    assert sorted(pairs[(1, 1)]) == [((0, 0, 0), (0, 0, 0)), ((0, 1, 1), (0, 1, 1))]
    assert pairs[(0, 0)] == [((0, 0, 0), (0, 1, 1))]
    assert sum(len(p) for p in pairs.values()) == 4


# ------------------------------------------------------------------------------------------
# normalisation layers
# ------------------------------------------------------------------------------------------
def test_batchnorm_statistics_over_visible_sites():
    torch.manual_seed(4)
    bn = SparseBatchNorm2d(5).double()
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    x, mask = random_map(c=5)
    x = x * 3 + 1
    out = bn(to_sparse(x, mask))
    rows = x.permute(0, 2, 3, 1)[~mask]  # (N_visible, C) by hand
    n = rows.shape[0]
    mean, var = rows.mean(0), rows.var(0, unbiased=False)
    expect = (rows - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    got = out.zeroed()[~mask]
    assert (got - expect).abs().max() < 1e-12
    assert torch.all(out.zeroed()[mask] == 0)
    assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-12)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), atol=1e-12)
    assert bn.num_batches_tracked.item() == 1
    # the hidden values never matter, in training or eval
    x_other = x.masked_fill(mask.unsqueeze(1), 100.0)
    bn2 = SparseBatchNorm2d(5).double()
    bn2.load_state_dict({**bn.state_dict(), "running_mean": torch.zeros(5), "running_var": torch.ones(5),
                         "num_batches_tracked": torch.tensor(0)})
    assert torch.equal(bn2(to_sparse(x_other, mask)).zeroed(), out.zeroed())
    bn.eval()
    ev = bn(to_sparse(x, mask)).zeroed()[~mask]
    assert torch.allclose(ev, (rows - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_mask_none_equals_batchnorm2d(training):
    torch.manual_seed(5)
    ref = nn.BatchNorm2d(4)
    ours = SparseBatchNorm2d(4)
    ours.load_state_dict(ref.state_dict())
    ref.train(training)
    ours.train(training)
    x = torch.randn(3, 4, 6, 7)
    for _ in range(2):
        assert torch.equal(to_dense(ours(to_sparse(x, None))), ref(x))
    assert torch.equal(ours.running_var, ref.running_var)


def test_grn_over_visible_sites():
    torch.manual_seed(6)
    grn = SparseGRN(5).double()
    nn.init.normal_(grn.gamma)
    nn.init.normal_(grn.beta)
    x, mask = random_map(c=5)
    out = grn(to_sparse(x, mask)).zeroed()  # (B, H, W, C)
    for b in range(x.shape[0]):
        rows = x[b].permute(1, 2, 0)[~mask[b]]  # (N_b, C) visible rows of sample b
        g = rows.pow(2).sum(0).sqrt()
        n = g / (g.mean() + 1e-6)
        expect = rows + grn.gamma * rows * n + grn.beta
        assert (out[b][~mask[b]] - expect).abs().max() < 1e-12
    assert torch.all(out[mask] == 0)


def test_grn_mask_none_equals_timm():
    timm_grn = pytest.importorskip("timm.layers.grn").GlobalResponseNorm
    ref = timm_grn(6, eps=1e-6, channels_last=True)
    nn.init.normal_(ref.weight)
    nn.init.normal_(ref.bias)
    ours = SparseGRN(6)
    ours.load_state_dict({"gamma": ref.weight.detach(), "beta": ref.bias.detach()})
    x = torch.randn(2, 6, 5, 5)
    assert torch.allclose(to_dense(ours(to_sparse(x, None))), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-6)


def test_layernorm_and_linear_are_per_site():
    torch.manual_seed(7)
    ln, lin = SparseLayerNorm(5).double(), SparseLinear(5, 3).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x, mask = random_map(c=5)
    s = lin(ln(to_sparse(x, mask)))
    rows = x.permute(0, 2, 3, 1)
    expect = F.linear(F.layer_norm(rows, (5,), ln.weight, ln.bias, 1e-6), lin.weight, lin.bias)
    assert (s.features[~mask] - expect[~mask]).abs().max() < 1e-12
    assert not s.clean  # per-site ops leave the hidden sites for later
    assert torch.all(to_dense(s).permute(0, 2, 3, 1)[mask] == 0)  # biases never reach the output


def test_maxpool_ignores_hidden_sites():
    x, mask = random_map(c=3, h=9, w=10, ratio=0.5)
    x = x - 5.0  # all negative: zero-filled hidden sites would win a plain max-pool
    out = SparseMaxPool2d(3, 2)(to_sparse(x, mask))
    got, act = to_dense(out), active_mask(out)
    b, _, ho, wo = got.shape
    for bi in range(b):
        for i in range(ho):
            for j in range(wo):
                if not act[bi, i, j]:
                    assert torch.all(got[bi, :, i, j] == 0)
                    continue
                vals = [x[bi, :, y, z] for y in range(2 * i - 1, 2 * i + 2) for z in range(2 * j - 1, 2 * j + 2)
                        if 0 <= y < x.shape[2] and 0 <= z < x.shape[3] and not mask[bi, y, z]]
                assert torch.equal(got[bi, :, i, j], torch.stack(vals).max(0).values)
    dense = to_dense(SparseMaxPool2d(3, 2)(to_sparse(x, None)))
    assert torch.equal(dense, F.max_pool2d(x, 3, 2, 1))


def test_drop_path_drops_whole_samples():
    torch.manual_seed(8)
    dp = SparseDropPath(0.5)
    x, mask = random_map(b=16, c=2, dtype=torch.float32)
    s = to_sparse(x, mask)
    assert dp.eval()(s) is s
    out = dp.train()(s).zeroed()
    kept = out.flatten(1).abs().sum(1) > 0
    assert 0 < kept.sum() < 16
    assert torch.allclose(out[kept], 2 * s.zeroed()[kept])
    with pytest.raises(ValueError):
        SparseDropPath(1.0)


# ------------------------------------------------------------------------------------------
# converters, masks, errors
# ------------------------------------------------------------------------------------------
def test_to_sparse_to_dense_roundtrip_and_validation():
    x, mask = random_map(dtype=torch.float32)
    s = to_sparse(x, mask)
    assert isinstance(s, SparseMap) and s.shape == tuple(x.shape)
    assert torch.equal(to_dense(s), x.masked_fill(mask.unsqueeze(1), 0))
    assert torch.equal(active_mask(s), ~mask)
    assert torch.equal(to_dense(to_sparse(x)), x)
    with pytest.raises(ValueError, match="mask"):
        to_sparse(x, mask[:, :-1])
    with pytest.raises(ValueError, match="mask"):
        to_sparse(x, mask.float())
    with pytest.raises(ValueError, match="backend"):
        to_sparse(x, mask, backend="spconv")
    with pytest.raises(TypeError, match="to_sparse"):
        SparseConv2d(5, 5, 3)(x)
    with pytest.raises(RuntimeError, match="different active"):  # asserted on the device: no host sync
        _ = s + to_sparse(x, ~mask)
    with pytest.raises(ValueError, match="different active"):  # a shape mismatch is known on the host
        _ = s + to_sparse(x[:, :, :-1], mask[:, :-1])


def test_upsample_and_downsample_masks():
    mask = torch.tensor([[True, False, False, True, False, True]])  # grid 2×3
    up = upsample_mask(mask, (2, 3), 4)  # (1, 8, 12)
    assert up.shape == (1, 8, 12)
    assert torch.equal(up[:, ::4, ::4].reshape(1, 6), mask)
    assert torch.equal(up[0, 4:8, 8:12], torch.ones(4, 4, dtype=torch.bool))
    # pooling the visible map back to the patch grid recovers it (any-visible rule)
    assert torch.equal(downsample_active(~up, 4), ~mask.reshape(1, 2, 3))
    with pytest.raises(ValueError, match="mask"):
        upsample_mask(mask, (3, 3), 2)


def test_kernel_layout_roundtrip():
    w = torch.randn(6, 4, 3, 3)
    k = torch_to_minkowski_kernel(w)
    assert k.shape == (9, 4, 6)
    assert torch.equal(k[2 * 3 + 1, 3, 5], w[5, 3, 1, 2])  # kernel[dw·3 + dh, i, o] = W[o, i, dh, dw]
    assert torch.equal(minkowski_to_torch_kernel(k, 3), w)
    dw = torch.randn(5, 1, 7, 7)
    chan = dw[:, 0].permute(2, 1, 0).reshape(49, 5)  # channelwise (K, C)
    assert torch.equal(minkowski_to_torch_kernel(chan, 7), dw)


def test_minkowski_backend_missing_names_the_make_target(monkeypatch):
    monkeypatch.setitem(sys.modules, "MinkowskiEngine", None)  # makes the import fail
    monkeypatch.setattr(sparse, "_ME", None)
    x, mask = random_map(dtype=torch.float32)
    with pytest.raises(ImportError, match="make minkowski"):
        to_sparse(x, mask, backend="minkowski")
