"""V-JEPA: shapes and terms, the loss against a hand computation, the target encoder (no
gradient, the EMA rule, through the trainer, in checkpoints), sizes, and a short run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from maskvid_edu.ema import cosine_momentum
from maskvid_edu.evaluate.davis import downstream_encoder, load_pretrained
from maskvid_edu.masking import mask_count, masked_tokens
from maskvid_edu.models import create, list_models
from maskvid_edu.models.vit import VIT_SIZES, VisionTransformer
from maskvid_edu.models.vjepa import VJEPA, VJEPAConfig
from maskvid_edu.recipes import METHODS, load_recipe
from maskvid_edu.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0, name="vjepa_vit_demo", **overrides) -> VJEPA:
    torch.manual_seed(seed)
    return create(name, **overrides)


def _video(B=2, seed=1):
    return torch.randn(B, 3, 8, 64, 64, generator=torch.Generator().manual_seed(seed))


class Clips(torch.utils.data.Dataset):
    def __init__(self, n=8):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"video": _video(1, seed=100 + i)[0]}


def _cfg(out_dir=None, **kw):
    base = dict(steps=4, batch_size=2, lr=1e-3, warmup_steps=1, log_every=1, progress=False, device="cpu",
                num_threads=1, out_dir=None if out_dir is None else str(out_dir))
    base.update(kw)
    return TrainConfig(**base)


def test_shapes_terms_and_the_default_mask():
    model = _model()
    video = _video()
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    M = mask_count("multiblock", (4, 8, 8), 0.6)
    assert mask.shape == (2, 256) and (mask.sum(1) == M).all()
    out = model(video, mask)
    assert out.pred.shape == out.target.shape == (2, M, 128)
    assert set(out.terms) == {"loss_feature"} and out.loss is out.loss_feature
    assert out.extras["context"].shape == (2, 256 - M, 128)
    assert torch.isfinite(out.loss) and out.mask is mask


def test_loss_is_the_l1_to_layer_normalised_target_features():
    model = _model()
    video = _video()
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    out = model(video, mask)
    with torch.no_grad():
        h = model.target.module(video)  # (B, N, dim): the target encoder over the whole clip
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        expected_target = masked_tokens((h - mu) / torch.sqrt(var + 1e-5), mask)  # LN without weights
    assert torch.allclose(out.target, expected_target, atol=1e-5)
    assert torch.allclose(out.loss, (out.pred - expected_target).abs().mean(), atol=1e-6)
    sq = _model(loss_exp=2.0)
    o2 = sq(video, mask)
    assert torch.allclose(o2.loss, F.mse_loss(o2.pred, o2.target) / 2, atol=1e-6)


def test_a_tiny_hand_computed_loss():
    # one hidden token, two channels: |0.5 − 1| and |−1 − (−1)| average to 0.25
    pred = torch.tensor([[[0.5, -1.0]]])
    target = F.layer_norm(torch.tensor([[[3.0, 1.0]]]), (2,))  # → (1, −1) up to eps
    assert torch.allclose(target, torch.tensor([[[1.0, -1.0]]]), atol=1e-5)
    assert torch.allclose((pred - target).abs().mean(), torch.tensor(0.25), atol=1e-5)


def test_target_gets_no_gradient_and_the_context_encoder_does():
    model = _model()
    video = _video()
    model(video, model.make_mask(video)).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert model.predictor.mask_token.grad is not None
    model.train()
    assert not model.target.training  # the target stays in eval mode


def test_on_optimizer_step_is_the_ema_rule_with_the_linear_momentum():
    model = _model()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.1)  # the context encoder moved away from the target
    before = {n: p.clone() for n, p in model.target.module.named_parameters()}
    online = dict(model.encoder.named_parameters())
    model.on_optimizer_step(3, 10)
    m = 0.998 + 0.002 * 3 / 10
    assert model.last_momentum == pytest.approx(m) and int(model.ema_updates) == 1
    moved = 0
    for n, p in model.target.module.named_parameters():
        assert torch.allclose(p, m * before[n] + (1 - m) * online[n], atol=1e-6), n
        moved += not torch.equal(p, before[n])
    assert moved


def test_momentum_schedules():
    lin = _model(momentum_base=0.99)
    assert lin.momentum_at(0, 100) == pytest.approx(0.99) and lin.momentum_at(100, 100) == pytest.approx(1.0)
    assert lin.momentum_at(25, 100) == pytest.approx(0.9925)
    assert _model(momentum_schedule="cosine").momentum_at(30, 100) == cosine_momentum(30, 100, 0.998, 1.0)
    assert _model(momentum_schedule="fixed", momentum_base=0.9).momentum_at(7, 10) == 0.9
    with pytest.raises(ValueError, match="step must be"):
        lin.momentum_at(101, 100)


def test_config_is_validated():
    with pytest.raises(ValueError, match="mask_type"):
        VJEPAConfig(mask_type="frame")
    with pytest.raises(ValueError, match="momentum_schedule"):
        VJEPAConfig(momentum_schedule="step")
    with pytest.raises(ValueError, match="predictor_dim"):
        VJEPAConfig(predictor_dim=100, predictor_heads=12)
    with pytest.raises(ValueError, match="loss_exp"):
        VJEPAConfig(loss_exp=0)


def test_registry_sizes_come_from_the_vit_table_and_the_method_is_known():
    assert list_models("vjepa") == ["vjepa_vit_b", "vjepa_vit_demo", "vjepa_vit_h", "vjepa_vit_l", "vjepa_vit_s"]
    assert "vjepa" in METHODS
    with torch.device("meta"):
        for size in ("s", "b", "l", "h"):
            c = create(f"vjepa_vit_{size}").config
            assert {k: getattr(c, k) for k in VIT_SIZES[size]} == VIT_SIZES[size]
            assert (c.predictor_dim, c.predictor_depth, c.predictor_heads) == (384, 12, VIT_SIZES[size]["heads"])
    assert load_recipe("vjepa_demo")["model"] == "vjepa_vit_demo"
    assert load_recipe("vjepa_vit_l_videomix2m")["model"] == "vjepa_vit_l"


def test_trainer_updates_the_target_once_per_optimizer_step_and_checkpoints_restore_it(tmp_path):
    straight = _model()
    start = {n: p.clone() for n, p in straight.target.module.named_parameters()}
    train(straight, Clips(8), _cfg(tmp_path / "a", accum_steps=2))  # 8 micro-batches, 4 optimizer steps
    assert int(straight.ema_updates) == 4
    assert any(not torch.equal(p, start[n]) for n, p in straight.target.module.named_parameters())
    first = _model()
    train(first, Clips(8), _cfg(tmp_path / "b", accum_steps=2), stop_at=2)
    resumed = _model(seed=99)  # everything must come from the checkpoint
    train(resumed, Clips(8), _cfg(tmp_path / "b", accum_steps=2), resume=True)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert any(k.startswith("target.module.") for k in straight.state_dict())
    fresh = _model(seed=5)
    load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME, fresh)
    assert torch.equal(fresh.ema_updates, straight.ema_updates)
    loaded, _ = load_pretrained(tmp_path / "a" / CHECKPOINT_NAME, "vjepa_vit_demo")  # as probe, propagate, finetune
    encoder = downstream_encoder(loaded)
    assert isinstance(encoder, VisionTransformer)
    # V-JEPA is evaluated through its EMA target, which after 4 updates differs from the context encoder
    assert encoder is loaded.target.module
    assert torch.equal(encoder.patch_embed.proj.weight, straight.target.module.patch_embed.proj.weight)
    assert not torch.equal(encoder.patch_embed.proj.weight, straight.encoder.patch_embed.proj.weight)


def test_short_pretraining_on_synthetic_clips_lowers_the_loss():
    data = SyntheticVideoDataset(SyntheticConfig(num_frames=8, size=64, num_samples=64, seed=0))
    model = _model(momentum_base=0.99)
    hist = train(model, data, _cfg(steps=30, batch_size=8, lr=1e-3, warmup_steps=3, log_every=5))
    first, last = hist[0]["loss_feature"], hist[-1]["loss_feature"]
    assert last < 0.8 * first, (first, last)
    assert int(model.ema_updates) == 30


@pytest.mark.slow
def test_full_size_forward_backward():
    model = _model(name="vjepa_vit_b")
    video = torch.randn(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0))
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    out = model(video, mask)
    assert out.pred.shape == (1, mask_count("multiblock", (8, 14, 14), 0.6), 768)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is None for p in model.target.parameters())


def test_token_spread_and_the_momentum_zero_ablation():
    from maskvid_edu.models.vjepa import feature_loss, feature_targets, token_spread

    assert token_spread(torch.ones(2, 5, 4)) == 0.0
    assert token_spread(torch.arange(6.0).view(1, 6, 1)) > 0
    h = torch.randn(2, 3, 8)
    assert torch.allclose(feature_targets(h).mean(dim=-1), torch.zeros(2, 3), atol=1e-6)
    assert torch.equal(feature_loss(h, h), torch.zeros(()))
    torch.manual_seed(0)
    model = create("vjepa_vit_demo", momentum_schedule="fixed", momentum_base=0.0)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.01)
    model.on_optimizer_step(0, 10)
    assert all(torch.equal(a, b) for a, b in zip(model.target.parameters(), model.encoder.parameters()))
    spread = model.feature_spread(torch.randn(2, 3, 8, 64, 64))
    assert set(spread) == {"context", "target"} and spread["context"] > 0 and model.training
