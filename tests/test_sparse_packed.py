"""The ``packed`` backend equals the ``masked`` one: forward and backward, whole encoders."""

import copy

import pytest
import torch

from maskvid_edu.models import create
from maskvid_edu.sparse import (
    PackedMap,
    SparseBatchNorm2d,
    SparseGRN,
    SparseMaxPool2d,
    set_backend,
    to_dense,
    to_sparse,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

# (registered encoder, overrides, batch): small sizes, every layer kind on the way
ENCODERS = [
    ("encoder_convnextv2_demo", {}, 2),  # stem, LN, 7×7 depthwise, linears, GELU, GRN, 2×2 downsampling
    ("encoder_resnet_demo", {}, 2),  # VideoMAC's LN/GELU ResNet, basic blocks, strided 3×3 and 1×1 convs
    # torchvision layout: BatchNorm, 7×7 stem, max-pool, bottlenecks. One block per stage (50 layers
    # of BatchNorm amplify float32 rounding past 1e-5) and batch 8: at mask 0.9 the last stage has
    # one visible site per sample, and BatchNorm statistics over a handful of sites are so
    # ill-conditioned that at batch 4 float32 rounding alone (masked against float64) is ≈ 5e-5.
    ("encoder_resnet50_bn", {"width": 8, "layers": (1, 1, 1, 1)}, 8),
]


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """``‖a − b‖ ≤ tol · ‖b‖`` (relative in norm: elementwise relative error is meaningless at zeros)."""
    return torch.linalg.vector_norm(a - b).item() <= tol * max(torch.linalg.vector_norm(b).item(), 1e-30)


def patch_mask(b: int, n: int, ratio: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, n, dtype=torch.bool)
    k = int(round(ratio * n))
    for i in range(b):
        mask[i, torch.randperm(n, generator=g)[:k]] = True
    return mask


def step(model, x, mask, target):
    """Forward + backward; returns output, input gradient, parameter gradients, buffers."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x, mask)
    (out * target).sum().backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, grads, {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
@pytest.mark.parametrize("name,overrides,batch", ENCODERS, ids=[e[0] for e in ENCODERS])
def test_packed_encoder_equals_masked(name, overrides, batch, ratio, dtype):
    torch.manual_seed(0)
    masked = create(name, backend="masked", **overrides).to(dtype).train()
    packed = set_backend(copy.deepcopy(masked), "packed")
    assert masked.state_dict().keys() == packed.state_dict().keys()
    for p in masked.parameters():  # GRN's γ, β start at zero: make every parameter matter
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    packed.load_state_dict(masked.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 64, 96, generator=g, dtype=dtype)  # a 2×3 grid of 32-pixel patches
    mask = patch_mask(batch, 6, ratio, seed=2)  # 0.9 → one visible patch per sample
    target = torch.randn(masked(x, mask).shape, generator=g, dtype=dtype)
    packed.load_state_dict(masked.state_dict())  # the probe forward moved BatchNorm's running stats
    ref, got = step(masked, x, mask, target), step(packed, x, mask, target)
    tol = TOL[dtype]
    assert close(got[0], ref[0], tol), "forward"
    assert close(got[1], ref[1], tol), "input gradient"
    assert got[2].keys() == ref[2].keys()
    for k in ref[2]:
        assert close(got[2][k], ref[2][k], tol), f"gradient of {k}"
    for k in ref[3]:  # BatchNorm running statistics over visible sites, as in masked
        assert close(got[3][k].to(dtype), ref[3][k].to(dtype), tol), f"buffer {k}"


def test_packed_holds_visible_rows_only_and_round_trips():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 5, 6, generator=g) < 0.6
    p = to_sparse(x, mask, backend="packed")
    assert isinstance(p, PackedMap) and p.rows.shape == (int((~mask).sum()), 4)
    assert torch.equal(to_dense(p), x.masked_fill(mask.unsqueeze(1), 0.0))
    dense = to_sparse(x, None, backend="packed")
    assert dense.index is None and torch.equal(to_dense(dense), x)


@pytest.mark.parametrize("layer", [SparseBatchNorm2d(4), SparseGRN(4), SparseMaxPool2d(3, 2)],
                         ids=["batchnorm", "grn", "maxpool"])
def test_statistics_and_pooling_over_active_sites_as_masked(layer):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 9, 8, generator=g) < 0.6  # site-level mask, harder than patches
    layer = layer.double().train()
    if isinstance(layer, SparseGRN):
        with torch.no_grad():
            layer.gamma.normal_(generator=g)
            layer.beta.normal_(generator=g)
    twin = copy.deepcopy(layer)
    ref = to_dense(layer(to_sparse(x, mask, backend="masked")))
    got = to_dense(twin(to_sparse(x, mask, backend="packed")))
    assert close(got, ref, 1e-12)
    for (k, a), (_, b) in zip(layer.named_buffers(), twin.named_buffers()):
        assert close(a.double(), b.double(), 1e-12), k


def test_set_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend(create("encoder_convnextv2_demo"), "dense")


@pytest.mark.parametrize("name", ["videomac_convnextv2_demo", "videomac_resnet_demo"])
def test_videomac_pretraining_on_packed_matches_masked(name):
    """The switch the full-size VideoMAC recipes make (``backend: packed``): the whole pre-training
    step — frame pair, shared mask, online encoder, EMA target, decoder, loss — trained for three
    AdamW steps from the same weights gives the losses of the masked backend (float32, 1e-5)."""
    from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
    from maskvid_edu.train import TrainConfig, Trainer

    losses = {}
    for backend in ("masked", "packed"):
        torch.manual_seed(0)
        model = create(name, backend=backend)
        data = SyntheticVideoDataset(SyntheticConfig(num_frames=2, size=64, num_samples=8, seed=4))
        config = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, seed=0,
                             progress=False, num_threads=1)
        losses[backend] = [r["loss"] for r in Trainer(model, data, config).fit()]
    assert len(losses["packed"]) == 3
    for a, b in zip(losses["packed"], losses["masked"]):
        assert abs(a - b) <= 1e-5 * abs(b), losses
