"""The trainer: learning, exact resume, accumulation, param groups, schedule, checkpoints, metrics.

The tests train ``TinyMAE``, the smallest model that follows the library's pre-training
contract (``make_mask(video, generator)``, ``forward(video, mask) -> PretrainOutput``), on a
few random clips, so they do not depend on the real model families.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch import nn

from maskvid_edu.checkpoints import save_checkpoint
from maskvid_edu.masking import masked_tokens, tube_mask
from maskvid_edu.models.output import PretrainOutput
from maskvid_edu.patches import patchify
from maskvid_edu.train import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    TrainConfig,
    Trainer,
    load_checkpoint,
    lr_at,
    param_groups,
    train,
    train_or_load,
)

FRAMES, SIZE, PATCH, TUBELET = 4, 16, 8, 2
GRID = (FRAMES // TUBELET, SIZE // PATCH, SIZE // PATCH)  # (2, 2, 2)
PATCH_DIM = TUBELET * PATCH * PATCH * 3


class TinyMAE(nn.Module):
    """A one-block masked autoencoder over tubelet patches.

    The loss is a mean over samples of each sample's mean squared error on its masked tokens —
    the form that makes gradient accumulation and DDP equal to one large batch.
    ``content_mask=True`` makes the mask a function of the clip (its brightest tubes are hidden)
    so that a batch split into micro-batches or processes gets the very same masks.
    """

    def __init__(self, dim: int = 32, ratio: float = 0.5, dropout: float = 0.0, content_mask: bool = False):
        super().__init__()
        self.ratio = ratio
        self.content_mask = content_mask
        self.embed = nn.Linear(PATCH_DIM, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, math.prod(GRID), dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, PATCH_DIM)

    def make_mask(self, video, generator=None):
        B = video.shape[0]
        if not self.content_mask:
            return tube_mask(B, GRID, self.ratio, generator=generator, device=video.device)
        t, h, w = GRID
        score = patchify(video, TUBELET, PATCH).mean(-1).view(B, t, h * w).mean(1)  # (B, h·w)
        k = int(self.ratio * h * w)
        top = score.argsort(dim=1, descending=True)[:, :k]  # (B, k)
        spatial = torch.zeros(B, h * w, dtype=torch.bool, device=video.device).scatter_(1, top, True)
        return spatial.repeat(1, t)  # (B, t·h·w) tube mask

    def forward(self, video, mask):
        patches = patchify(video, TUBELET, PATCH)  # (B, N, D_p)
        x = self.embed(patches)  # (B, N, dim)
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x) + self.pos_embed
        x = x + self.mlp(self.norm(x))
        pred = masked_tokens(self.head(x), mask)  # (B, N_mask, D_p)
        target = masked_tokens(patches, mask)  # (B, N_mask, D_p)
        per_sample = ((pred.float() - target) ** 2).mean(dim=(1, 2))  # (B,)
        loss = per_sample.mean()
        terms = {"loss_rec": loss.detach(), "loss_pred_abs": pred.detach().float().abs().mean()}
        return PretrainOutput(loss=loss, pred=pred, target=target, mask=mask, terms=terms)


class Clips(torch.utils.data.Dataset):
    """``n`` fixed random clips (a deterministic function of the index)."""

    def __init__(self, n: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(3, 1, SIZE, SIZE, generator=g)
        self.videos = base + 0.2 * torch.randn(n, 3, FRAMES, SIZE, SIZE, generator=g)  # (n, C, T, H, W)

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        return {"video": self.videos[i], "label": i % 3}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(seed: int = 0, **kw) -> TinyMAE:
    torch.manual_seed(seed)
    return TinyMAE(**kw)


def cfg(tmp_path=None, **kw) -> TrainConfig:
    base = dict(steps=8, batch_size=4, lr=3e-3, min_lr=1e-5, warmup_steps=2, log_every=2, device="cpu",
                progress=False, out_dir=str(tmp_path) if tmp_path is not None else None)
    base.update(kw)
    return TrainConfig(**base)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------


def test_loss_decreases():
    model = make_model()
    hist = train(model, Clips(32), cfg(steps=60, log_every=10, warmup_steps=5, lr=1e-2))
    assert len(hist) == 6
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"], [h["loss"] for h in hist]


def test_resume_is_bit_exact(tmp_path):
    # dropout (global torch RNG), random masks (the mask generator), several epochs (data
    # order), accumulation, clipping and warm-up all take part.
    kw = dict(steps=12, accum_steps=2, ckpt_every=5, clip_grad=1.0, warmup_steps=3, log_every=1)
    straight = make_model(dropout=0.2)
    train(straight, Clips(20), cfg(tmp_path / "a", **kw))

    first = make_model(dropout=0.2)
    train(first, Clips(20), cfg(tmp_path / "b", **kw), stop_at=7)
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 7
    resumed = make_model(seed=123, dropout=0.2)  # different init: everything comes from the checkpoint
    hist = train(resumed, Clips(20), cfg(tmp_path / "b", **kw), resume=True)

    for k, v in state(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 12
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert torch.equal(a["rng"][0]["mask"], b["rng"][0]["mask"])
    # the losses logged after the resume match the uninterrupted run
    assert [h["loss"] for h in hist] == [h["loss"] for h in a["history"]]
    lines = (tmp_path / "b" / METRICS_NAME).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))


def test_gradient_accumulation_matches_large_batch():
    # batch 8 × accum 1 vs batch 4 × accum 2: same samples per step (same data order), same
    # masks (content mask), loss = mean over samples → same gradient up to float rounding.
    common = dict(steps=6, lr=1e-2, warmup_steps=0, clip_grad=None)
    big, small = make_model(content_mask=True), make_model(content_mask=True)
    train(big, Clips(32), cfg(batch_size=8, accum_steps=1, **common))
    train(small, Clips(32), cfg(batch_size=4, accum_steps=2, **common))
    worst = max((big.state_dict()[k] - v).abs().max().item() for k, v in small.state_dict().items())
    assert worst < 1e-6, worst  # measured 7.5e-8


def test_param_groups_exclude_norms_biases_and_tokens():
    model = TinyMAE()
    groups = param_groups(model, 0.05)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert set(decay["names"]) == {"embed.weight", "mlp.0.weight", "mlp.3.weight", "head.weight"}
    assert {"pos_embed", "mask_token", "norm.weight", "norm.bias", "embed.bias", "head.bias"} <= set(no_decay["names"])
    # frozen parameters (an EMA target) are left out
    model.head.weight.requires_grad_(False)
    assert "head.weight" not in param_groups(model, 0.05)[0]["names"]
    # the rule looks at the parameter's own name: a module called "token_proj" is still decayed
    m = nn.Module()
    m.token_proj = nn.Linear(4, 4)
    assert param_groups(m, 0.1)[0]["names"] == ["token_proj.weight"]


def test_lr_schedule_values():
    assert lr_at(0, 100, 1.0, 0.1, 10) == 0.0
    assert lr_at(5, 100, 1.0, 0.1, 10) == pytest.approx(0.5)
    assert lr_at(10, 100, 1.0, 0.1, 10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 0.1, 10) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(100, 100, 1.0, 0.1, 10) == pytest.approx(0.1)
    # the trainer applies it per optimizer step, with lr = base_lr × effective batch / 256
    config = cfg(steps=10, lr=None, base_lr=0.0256, min_lr=1e-4, warmup_steps=3, log_every=1, accum_steps=2)
    trainer = Trainer(make_model(), Clips(16), config)
    assert trainer.peak_lr == pytest.approx(0.0256 * 8 / 256)
    hist = trainer.fit()
    logged = [h["lr"] for h in hist]
    expected = [lr_at(s, 10, trainer.peak_lr, 1e-4, 3) for s in range(10)]
    assert logged == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_epochs_and_warmup_epochs():
    config = cfg(steps=None, epochs=1.5, warmup_steps=None, warmup_epochs=0.5, batch_size=4, accum_steps=2)
    trainer = Trainer(make_model(), Clips(32), config)  # 8 batches = 4 steps per epoch
    assert trainer.total_steps == 6 and trainer.warmup_steps == 2
    hist = trainer.fit()
    assert hist[-1]["epoch"] == pytest.approx(1.5)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"x": torch.arange(3)}, path)
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint({"x": torch.arange(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_crash_during_training_checkpoint_keeps_previous(tmp_path, monkeypatch):
    real_save = torch.save
    calls = []

    def flaky(obj, f, *a, **k):
        calls.append(obj["step"])
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError("power cut (simulated)")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", flaky)
    with pytest.raises(OSError, match="power cut"):
        train(make_model(), Clips(16), cfg(tmp_path, steps=6, ckpt_every=2))
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 2
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME, METRICS_NAME]


class NaNAt(TinyMAE):
    """TinyMAE whose loss turns NaN from forward call ``bad_call`` on."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.calls, self.bad_call = 0, bad_call

    def forward(self, video, mask):
        out = super().forward(video, mask)
        self.calls += 1
        if self.calls > self.bad_call:
            out.loss = out.loss * float("nan")
            out.terms["loss_rec"] = out.loss.detach()
        return out


@pytest.mark.parametrize("log_every", [1, 100])
def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, log_every):
    torch.manual_seed(0)
    model = NaNAt(bad_call=5)  # steps 0–4 fine, step 5 is NaN
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 5 \(loss=nan, loss_rec=nan, loss_pred_abs="):
        train(model, Clips(16), cfg(tmp_path, steps=10, ckpt_every=2, log_every=log_every))
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["step"] == 4  # written before the bad step; step 6's checkpoint was refused
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_metrics_jsonl(tmp_path):
    hist = train(make_model(), Clips(16), cfg(tmp_path, steps=6, log_every=2, clip_grad=0.5))
    lines = [json.loads(x) for x in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert lines == hist
    assert [r["step"] for r in lines] == [2, 4, 6]
    for r in lines:
        assert set(r) == {"step", "epoch", "lr", "loss", "loss_rec", "loss_pred_abs", "grad_norm", "time", "sec_per_step"}
        assert r["loss"] == pytest.approx(r["loss_rec"]) and r["grad_norm"] > 0 and r["time"] > 0
    assert lines[-1]["epoch"] == pytest.approx(6 * 4 / 16)


def test_train_or_load_reuses_a_finished_run(tmp_path, capsys):
    config = cfg(tmp_path, steps=4)
    first = make_model()
    hist = train_or_load(first, Clips(16), config)
    again = make_model(seed=5)
    assert train_or_load(again, Clips(16), config) == hist
    assert "loaded the finished run" in capsys.readouterr().out
    for k, v in first.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    # a different recipe retrains
    other = make_model(seed=5)
    train_or_load(other, Clips(16), config.replace(lr=1e-3))
    assert "training from scratch" in capsys.readouterr().out
    # an interrupted run is resumed
    train(make_model(), Clips(16), cfg(tmp_path / "cut", steps=4), stop_at=2)
    resumed = make_model(seed=7)
    train_or_load(resumed, Clips(16), cfg(tmp_path / "cut", steps=4))
    assert "resuming" in capsys.readouterr().out
    for k, v in first.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k])


def test_bf16_autocast_trains_on_cpu():
    hist = train(make_model(), Clips(16), cfg(steps=4, amp="bf16", log_every=4))
    assert math.isfinite(hist[-1]["loss"])


def test_num_threads_applies_only_while_training():
    seen = []

    class Spy(TinyMAE):
        def forward(self, video, mask):
            seen.append(torch.get_num_threads())
            return super().forward(video, mask)

    before = torch.get_num_threads()
    train(Spy(), Clips(8), cfg(steps=2, num_threads=2))
    assert seen == [2, 2] and torch.get_num_threads() == before


def test_bad_configs_are_clear():
    with pytest.raises(ValueError, match="exactly one of steps or epochs"):
        TrainConfig()
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(steps=1, amp="fp8")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TrainConfig(steps=1, batch_size=0)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"steps": 1, "learning_rate": 1.0})
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Trainer(make_model(), Clips(8), cfg(amp="fp16"))
    with pytest.raises(ValueError, match="too small for batch_size"):
        Trainer(make_model(), Clips(3), cfg())
    with pytest.raises(ValueError, match="min_lr"):
        Trainer(make_model(), Clips(8), cfg(lr=None, base_lr=1e-4, min_lr=1e-3))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(make_model(), Clips(8), cfg(), resume="/nonexistent/ckpt.pt")
    with pytest.raises(ValueError, match="prefetch_factor must be a positive int"):
        TrainConfig(steps=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="fused_optimizer must be True, False or None"):
        TrainConfig(steps=1, fused_optimizer="yes")
    with pytest.raises(ValueError, match="channels_last must be True or False"):
        TrainConfig(steps=1, channels_last=1)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read as a checkpoint"):
        train(make_model(), Clips(8), cfg(tmp_path), resume=True)
    save_checkpoint({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by maskvid_edu.train"):
        load_checkpoint(tmp_path / "other.pt")


def test_tensorboard_flag_explains_missing_package(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            train(make_model(), Clips(8), cfg(tmp_path, steps=1, tensorboard=True))
    else:
        train(make_model(), Clips(8), cfg(tmp_path, steps=2, tensorboard=True))
        assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.slow
def test_torch_compile_matches_eager():
    try:
        import torch._inductor  # noqa: F401
    except Exception as err:  # pragma: no cover - depends on the installation
        pytest.skip(f"torch.compile's inductor backend is unavailable here: {err}")
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this Python version")
    common = dict(steps=3, log_every=1, lr=1e-2, warmup_steps=0)
    eager = train(make_model(), Clips(16), cfg(**common))
    compiled = train(make_model(), Clips(16), cfg(compile=True, **common))
    assert [h["loss"] for h in compiled] == pytest.approx([h["loss"] for h in eager], rel=1e-4)


def test_fused_adamw_matches_the_default_implementation():
    # the fused kernel does the same arithmetic in another order: equal to float rounding
    common = dict(steps=6, lr=1e-2, warmup_steps=1, clip_grad=1.0)
    plain, fused = make_model(content_mask=True), make_model(content_mask=True)
    train(plain, Clips(32), cfg(**common))
    trainer = Trainer(fused, Clips(32), cfg(fused_optimizer=True, **common))
    trainer.fit()
    assert trainer.optimizer.defaults["fused"] is True
    worst = max((plain.state_dict()[k] - v).abs().max().item() for k, v in fused.state_dict().items())
    assert 0 < worst < 1e-6 or worst == 0, worst


class _RepeatedViews(torch.utils.data.Dataset):
    """Each item holds ``R`` views ``(R, C, T, H, W)``, as ``VideoDataset(num_repeats=R)`` returns."""

    def __init__(self, clips: Clips, repeats: int):
        self.clips, self.repeats = clips, repeats

    def __len__(self):
        return len(self.clips) // self.repeats

    def __getitem__(self, i):
        views = [self.clips[i * self.repeats + r]["video"] for r in range(self.repeats)]
        return {"video": torch.stack(views)}  # (R, C, T, H, W)


def test_repeated_views_are_flattened_into_the_batch():
    # 4 items × 2 views per micro-batch: the model sees one batch of 8 clips, in item-major order
    clips = Clips(32)
    data = _RepeatedViews(clips, 2)
    model = make_model(content_mask=True)
    seen = []
    forward = model.forward
    model.forward = lambda video, mask: (seen.append(video.detach().clone()), forward(video, mask))[1]
    hist = train(model, data, cfg(batch_size=4, steps=2, log_every=1))
    assert len(hist) == 2 and all(math.isfinite(h["loss"]) for h in hist)
    assert [v.shape for v in seen] == [torch.Size([8, 3, FRAMES, SIZE, SIZE])] * 2
    first = seen[0].view(4, 2, 3, FRAMES, SIZE, SIZE)  # (items, views, C, T, H, W)
    items = [next(i for i in range(len(data)) if torch.equal(data[i]["video"], first[k])) for k in range(4)]
    assert len(set(items)) == 4  # each row of 2 views is one item, views kept together


class _TinyConvMAE(TinyMAE):
    """TinyMAE whose patch embedding is a strided 2-D convolution (per frame): a ConvNet layer
    whose weights ``channels_last`` stores NHWC."""

    def __init__(self):
        super().__init__(content_mask=True)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, video, mask):
        B, C, T, H, W = video.shape
        frames = video.transpose(1, 2).reshape(B * T, C, H, W)  # (B·T, C, H, W)
        frames = frames + self.conv(frames)
        return super().forward(frames.reshape(B, T, C, H, W).transpose(1, 2), mask)


def test_channels_last_changes_layout_not_results():
    common = dict(steps=3, lr=1e-2, warmup_steps=0)
    torch.manual_seed(0)
    a = _TinyConvMAE()
    torch.manual_seed(0)
    b = _TinyConvMAE()
    train(a, Clips(32), cfg(**common))
    train(b, Clips(32), cfg(channels_last=True, **common))
    assert b.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not a.conv.weight.is_contiguous(memory_format=torch.channels_last)
    worst = max((a.state_dict()[k] - v).abs().max().item() for k, v in b.state_dict().items())
    assert worst < 1e-6, worst


class _LabelledMAE(TinyMAE):
    """TinyMAE that declares ``takes_labels``: records the labels each micro-batch passes."""

    takes_labels = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, video, mask, label=None):
        self.seen.append(label.clone())
        return super().forward(video, mask)


def test_labels_reach_a_model_that_takes_them():
    model = _LabelledMAE()
    train(model, Clips(16), cfg(steps=2, batch_size=4))
    assert [t.shape for t in model.seen] == [torch.Size([4])] * 2 and all(t.dtype == torch.int64 for t in model.seen)

    class Unlabelled(Clips):
        def __getitem__(self, i):
            return {"video": self.videos[i]}

    with pytest.raises(ValueError, match="_LabelledMAE trains on labels: dataset items need a 'label'"):
        train(_LabelledMAE(), Unlabelled(16), cfg(steps=1, batch_size=4))

    class TwoViews(Clips):
        def __getitem__(self, i):
            return {"video": torch.stack([self.videos[i], self.videos[i].flip(-1)]), "label": i % 3}

    model = _LabelledMAE()
    train(model, TwoViews(16), cfg(steps=1, batch_size=4))
    first = model.seen[0]
    assert first.shape == (8,) and torch.equal(first[0::2], first[1::2])  # each clip's label for both views


def test_a_model_may_choose_its_groups_and_lr_scales():
    class Scaled(TinyMAE):
        def param_groups(self, weight_decay):
            head = [p for n, p in self.named_parameters() if n.startswith("head.")]
            rest = [p for n, p in self.named_parameters() if not n.startswith("head.")]
            return [{"params": rest, "weight_decay": weight_decay, "lr_scale": 0.25},
                    {"params": head, "weight_decay": 0.0}]

    trainer = Trainer(Scaled(), Clips(16), cfg(steps=4, batch_size=4, warmup_steps=0, lr=1e-2, min_lr=0.0))
    trainer.fit(stop_at=1)
    factor = trainer.schedule(trainer.scheduler.last_epoch)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.25e-2 * factor, 1e-2 * factor])
