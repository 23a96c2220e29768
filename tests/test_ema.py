"""The EMA target and its momentum schedule, alone and inside the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from maskvid_edu.ema import EMATarget, cosine_momentum, cosine_momentum_per_epoch_buggy
from maskvid_edu.masking import masked_tokens, tube_mask
from maskvid_edu.models.output import PretrainOutput
from maskvid_edu.patches import patchify
from maskvid_edu.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train

GRID, TUBELET, PATCH = (2, 2, 2), 2, 8
PATCH_DIM = TUBELET * PATCH * PATCH * 3


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# schedule


def test_cosine_momentum_start_middle_end():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(25, 100, base=0.9, final=1.0) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    values = [cosine_momentum(s, 100) for s in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))  # rises monotonically


def test_buggy_per_epoch_schedule_restarts_every_epoch():
    epochs, per_epoch = 100, 50
    total = epochs * per_epoch
    buggy = [cosine_momentum_per_epoch_buggy(s % per_epoch, per_epoch, epochs) for s in range(total)]
    right = [cosine_momentum(s, total) for s in range(total)]
    assert buggy[0] == buggy[per_epoch] == buggy[17 * per_epoch] == pytest.approx(0.996)  # restarts
    assert max(buggy) < 0.996 + 1.1e-6  # never leaves the first 1/epochs of the curve
    assert right[total // 2] == pytest.approx(0.998) and right[-1] > 0.99999
    with pytest.raises(ValueError, match="step_in_epoch"):
        cosine_momentum_per_epoch_buggy(per_epoch, per_epoch, epochs)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0)
    with pytest.raises(ValueError, match="step"):
        cosine_momentum(11, 10)
    with pytest.raises(ValueError, match="base"):
        cosine_momentum(0, 10, base=1.5)


# ---------------------------------------------------------------------------------------------
# the EMA update


def test_update_moves_target_not_online():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    target = EMATarget(online)
    t0 = {k: v.clone() for k, v in target.module.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()
    online(torch.randn(8, 4))  # changes the BatchNorm running stats (buffers)
    o = {k: v.clone() for k, v in online.state_dict().items()}
    target.update(online, 0.9)
    for name, _ in online.named_parameters():
        assert torch.allclose(target.module.state_dict()[name], 0.9 * t0[name] + 0.1 * o[name], atol=1e-7)
        assert torch.equal(online.state_dict()[name], o[name])  # the online side is untouched
    assert torch.equal(target.module[1].running_mean, online[1].running_mean)  # buffers copied
    target.update(online, 1.0)
    assert torch.allclose(target.module[0].weight, 0.9 * t0["0.weight"] + 0.1 * o["0.weight"], atol=1e-7)
    target.update(online, 0.0)
    assert torch.equal(target.module[0].weight, online[0].weight)


def test_target_is_frozen_and_stays_in_eval_mode():
    online = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    parent = nn.Module()
    parent.online, parent.target = online, EMATarget(online)
    parent.train()
    assert parent.online.training and not parent.target.training and not parent.target.module[1].training
    assert all(not p.requires_grad for p in parent.target.parameters())
    assert any(k.startswith("target.module.") for k in parent.state_dict())
    x = torch.randn(3, 4, requires_grad=True)
    assert not parent.target(x).requires_grad
    with pytest.raises(ValueError, match="momentum"):
        parent.target.update(online, 1.5)
    with pytest.raises(ValueError, match="does not match"):
        parent.target.update(nn.Linear(4, 4), 0.5)


# ---------------------------------------------------------------------------------------------
# inside the trainer


class TinyEMAModel(nn.Module):
    """Online encoder + EMA target; the target's output on the full clip is part of the loss
    (a consistency term, as in VideoMAC). Records every hook call and online snapshot."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.online = nn.Sequential(nn.Linear(PATCH_DIM, dim), nn.GELU(), nn.Linear(dim, PATCH_DIM))
        self.mask_token = nn.Parameter(torch.zeros(PATCH_DIM))
        self.target = EMATarget(self.online)
        self.calls: list[tuple[int, int]] = []
        self.snapshots: list[dict] = []

    def make_mask(self, video, generator=None):
        return tube_mask(video.shape[0], GRID, 0.5, generator=generator, device=video.device)

    def forward(self, video, mask):
        patches = patchify(video, TUBELET, PATCH)  # (B, N, D)
        x = torch.where(mask[..., None], self.mask_token, patches)
        pred = masked_tokens(self.online(x), mask)  # (B, N_mask, D)
        target = masked_tokens(patches, mask)
        t_pred = masked_tokens(self.target(x), mask)  # no grad
        rec = ((pred - target) ** 2).mean()
        cons = ((pred - t_pred) ** 2).mean()
        return PretrainOutput(loss=rec + cons, pred=pred, target=target, mask=mask,
                              terms={"loss_online": rec.detach(), "loss_consistency": cons.detach()})

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        self.calls.append((step, total_steps))
        self.snapshots.append({k: v.detach().clone() for k, v in self.online.named_parameters()})
        self.target.update(self.online, cosine_momentum(step, total_steps, base=0.9))


class Clips(torch.utils.data.Dataset):
    def __init__(self, n=16):
        self.v = torch.randn(n, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))

    def __len__(self):
        return len(self.v)

    def __getitem__(self, i):
        return {"video": self.v[i]}


def config(out=None, **kw):
    base = dict(steps=6, batch_size=2, accum_steps=3, lr=1e-2, min_lr=0.0, log_every=2, device="cpu",
                progress=False, out_dir=str(out) if out else None)
    base.update(kw)
    return TrainConfig(**base)


def test_target_updated_once_per_optimizer_step_with_accumulation():
    torch.manual_seed(0)
    model = TinyEMAModel()
    init = {k: v.clone() for k, v in model.target.module.named_parameters()}
    train(model, Clips(), config())
    assert model.calls == [(s, 6) for s in range(6)]  # 6 steps × 3 micro-batches → 6 calls
    # replaying θ_t ← m θ_t + (1 − m) θ_o with the online weights after each step reproduces the target
    expected = init
    for s, snap in enumerate(model.snapshots):
        m = cosine_momentum(s, 6, base=0.9)
        expected = {k: m * expected[k] + (1 - m) * snap[k] for k in expected}
    for k, v in model.target.module.named_parameters():
        assert torch.allclose(v, expected[k], atol=1e-6), k
        assert not torch.equal(v, init[k])  # it moved
    # the target never received gradients, so the optimizer never saw it
    assert all(p.grad is None for p in model.target.parameters())


def test_checkpoint_and_resume_restore_the_target_exactly(tmp_path):
    torch.manual_seed(0)
    straight = TinyEMAModel()
    train(straight, Clips(), config(tmp_path / "a"))
    torch.manual_seed(0)
    cut = TinyEMAModel()
    train(cut, Clips(), config(tmp_path / "b"), stop_at=4)
    ckpt = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert any(k.startswith("target.module.") for k in ckpt["model"])
    torch.manual_seed(99)
    resumed = TinyEMAModel()
    train(resumed, Clips(), config(tmp_path / "b"), resume=True)
    assert resumed.calls == [(s, 6) for s in range(4, 6)]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
