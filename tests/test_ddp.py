"""Distributed data parallel training on CPU: two processes, gloo backend, launched by torchrun.

The test launches this very file with ``torchrun --standalone --nproc_per_node 2``; each process
runs :func:`worker`, which trains

- ``ddp``: batch 2 per process × 2 accumulation steps × 2 processes (effective batch 8), masks
  that depend on the clip only, no dropout — to compare with one process at batch 8;
- ``ddp_straight`` and ``ddp_cut`` (stopped after 2 of 5 steps, then resumed): random masks and
  dropout, whose random streams differ per rank — resuming must restore every rank's state;
- a change of world size: ``to_ddp`` is started by one process (batch 8), stopped after 3 of 6
  steps and finished by two (2 × 2 × 2 accumulation); ``from_ddp`` the other way round. The
  epoch boundary (after step 4) falls in the resumed part. Both must equal one uninterrupted
  process, as the data position is kept in global clips.

Tolerance for DDP vs one process: ``1e-6`` absolute on every weight after 4 AdamW steps (the
gradients are the same means computed in a different order; measured 5e-8).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from maskvid_edu.masking import masked_tokens, tube_mask
from maskvid_edu.models.output import PretrainOutput
from maskvid_edu.patches import patchify
from maskvid_edu.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train

GRID, TUBELET, PATCH = (2, 2, 2), 2, 8
PATCH_DIM = TUBELET * PATCH * PATCH * 3


class TinyMAE(nn.Module):
    """One-block masked autoencoder; loss = mean over samples of the masked-token MSE.

    ``content_mask=True``: the mask hides each clip's brightest tubes, so it does not depend on
    which process or micro-batch the clip lands in (random masks are seeded per rank).
    """

    def __init__(self, dim: int = 32, dropout: float = 0.0, content_mask: bool = True):
        super().__init__()
        self.content_mask = content_mask
        self.embed = nn.Linear(PATCH_DIM, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, math.prod(GRID), dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, PATCH_DIM)

    def make_mask(self, video, generator=None):
        B = video.shape[0]
        if not self.content_mask:
            return tube_mask(B, GRID, 0.5, generator=generator, device=video.device)
        t, h, w = GRID
        score = patchify(video, TUBELET, PATCH).mean(-1).view(B, t, h * w).mean(1)  # (B, h·w)
        top = score.argsort(dim=1, descending=True)[:, : h * w // 2]  # (B, h·w/2)
        return torch.zeros(B, h * w, dtype=torch.bool).scatter_(1, top, True).repeat(1, t)  # (B, N)

    def forward(self, video, mask):
        patches = patchify(video, TUBELET, PATCH)  # (B, N, D)
        x = torch.where(mask[..., None], self.mask_token, self.embed(patches)) + self.pos_embed
        x = x + self.mlp(x)
        pred, target = masked_tokens(self.head(x), mask), masked_tokens(patches, mask)
        loss = ((pred - target) ** 2).mean(dim=(1, 2)).mean()
        return PretrainOutput(loss=loss, pred=pred, target=target, mask=mask, terms={"loss_rec": loss.detach()})


class Clips(torch.utils.data.Dataset):
    def __init__(self, n: int = 32):
        self.v = torch.randn(n, 3, 4, 16, 16, generator=torch.Generator().manual_seed(3))  # the first 32 never change

    def __len__(self):
        return len(self.v)

    def __getitem__(self, i):
        return {"video": self.v[i]}


def config(out: Path, **kw) -> TrainConfig:
    base = dict(steps=4, batch_size=8, lr=1e-2, min_lr=0.0, warmup_steps=1, log_every=1, clip_grad=1.0,
                device="cpu", progress=False, out_dir=str(out))
    base.update(kw)
    return TrainConfig(**base)


def build(seed: int = 0, **kw) -> TinyMAE:
    torch.manual_seed(seed)
    return TinyMAE(**kw)


def worker(out: Path) -> None:
    """Runs in each torchrun process."""
    import torch.distributed as dist

    dist.init_process_group("gloo")  # already initialised: the trainer uses it and leaves it up
    try:
        train(build(), Clips(), config(out / "ddp", batch_size=2, accum_steps=2))
        kw = dict(steps=5, batch_size=2, ckpt_every=100)
        train(build(dropout=0.3, content_mask=False), Clips(), config(out / "ddp_straight", **kw))
        train(build(dropout=0.3, content_mask=False), Clips(), config(out / "ddp_cut", **kw), stop_at=2)
        train(build(seed=9, dropout=0.3, content_mask=False), Clips(), config(out / "ddp_cut", **kw), resume=True)
        split = dict(steps=6, batch_size=2, accum_steps=2)
        with pytest.warns(UserWarning, match="re-seeded"):
            train(build(seed=9), Clips(), config(out / "to_ddp", **split), resume=True)
        train(build(), Clips(), config(out / "from_ddp", **split), stop_at=3)
        with pytest.warns(UserWarning, match="re-seeded"):
            train(build(seed=9), Clips(36), config(out / "epochs", steps=None, epochs=1.5, batch_size=2, accum_steps=2),
                  resume=True)
    finally:
        dist.destroy_process_group()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available in this build")
def test_two_process_ddp_matches_single_process(tmp_path):
    train(build(), Clips(), config(tmp_path / "to_ddp", steps=6), stop_at=3)  # one process, then two
    # 1.5 epochs of 36 clips: 6 steps at 1 × 8, but ceil(1.5 · 9 / 2) = 7 at 2 × 2 × 2: the resumed
    # run keeps the schedule it started with
    train(build(), Clips(36), config(tmp_path / "epochs", steps=None, epochs=1.5), stop_at=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    single = build()
    hist = train(single, Clips(), config(tmp_path / "single"))
    ddp = load_checkpoint(tmp_path / "ddp" / CHECKPOINT_NAME)
    assert ddp["data"]["world_size"] == 2 and len(ddp["rng"]) == 2
    worst = max((ddp["model"][k] - v).abs().max().item() for k, v in single.state_dict().items())
    assert worst < 1e-6, worst
    # logged losses are averaged over the processes: the loss of the whole effective batch
    assert [h["loss"] for h in ddp["history"]] == pytest.approx([h["loss"] for h in hist], abs=1e-6)
    # rank 0 alone wrote the files
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [CHECKPOINT_NAME, "metrics.jsonl"]

    # stop + resume under DDP reproduces the uninterrupted DDP run bit for bit
    straight = load_checkpoint(tmp_path / "ddp_straight" / CHECKPOINT_NAME)
    resumed = load_checkpoint(tmp_path / "ddp_cut" / CHECKPOINT_NAME)
    assert straight["step"] == resumed["step"] == 5
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    for a, b in zip(straight["rng"], resumed["rng"]):
        assert torch.equal(a["mask"], b["mask"])
    assert not torch.equal(straight["rng"][0]["mask"], straight["rng"][1]["mask"])  # one stream per rank

    # a change of world size keeps the data position: 1 → 2 and 2 → 1 processes equal 1 throughout
    reference = build()
    train(reference, Clips(), config(tmp_path / "reference", steps=6))
    with pytest.warns(UserWarning, match="re-seeded"):
        train(build(seed=9), Clips(), config(tmp_path / "from_ddp", steps=6), resume=True)
    for name, world in (("to_ddp", 2), ("from_ddp", 1)):
        ckpt = load_checkpoint(tmp_path / name / CHECKPOINT_NAME)
        assert ckpt["step"] == 6 and ckpt["data"]["world_size"] == world
        assert (ckpt["data"]["epoch"], ckpt["data"]["position"]) == (1, 16)  # 48 clips = 1 epoch of 32 + 16
        worst = max((ckpt["model"][k] - v).abs().max().item() for k, v in reference.state_dict().items())
        assert worst < 1e-6, (name, worst)
    epochs = load_checkpoint(tmp_path / "epochs" / CHECKPOINT_NAME)
    assert epochs["step"] == epochs["total_steps"] == 6
    assert epochs["scheduler"]["lr_lambdas"][0]["total_steps"] == 6


if __name__ == "__main__" and "--worker" in sys.argv:
    torch.set_num_threads(1)
    worker(Path(sys.argv[sys.argv.index("--worker") + 1]))
