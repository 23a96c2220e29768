"""No host synchronisation in a pre-training step.

On a GPU, any operation whose *output shape or Python value* depends on tensor contents
(``.item()``, ``int(t)``, ``bool(t)``, ``nonzero``, ``torch.equal``) makes the Python thread
wait for the device. We detect such operations without a GPU: under ``FakeTensorMode`` tensors
carry shapes but no values, so every data-dependent operation raises
``DataDependentOutputException``. A step that runs there does not synchronise.

The trainer sets ``model.fixed_mask_count = True`` (the masks come from ``make_mask``, whose
counts are known from the config); the same forward with the flag off reads the count from the
mask — fine on a CPU, a sync on a GPU — and the fake mode catches it, which shows the detector
works. Both modes must compute the same loss bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from maskvid_edu.masking import MASKERS, check_mask, mask_count
from maskvid_edu.models import create
from maskvid_edu.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = [
    ("videomae_vit_demo", {}),
    ("videomae_vit_demo", {"decoder_mask_ratio": 0.5, "mask_type": "random"}),  # VideoMAE V2 dual masking
    ("mam2_vit_demo", {}),
    ("videomac_convnextv2_demo", {}),
    ("videomac_resnet_demo", {}),
    ("videomac_resnet50_tv", {}),  # visible-site BatchNorm and strided residual branches
    ("vjepa_vit_demo", {}),  # multi-block mask, predictor and EMA target encoder
    ("videomae_vit_demo", {"mask_type": "motion_guided"}),  # MGMAE: the mask follows block-matched flow
]


def build(name: str, overrides: dict, batch: int = 2):
    torch.manual_seed(0)
    model = create(name, **overrides)
    c = model.config
    if name.startswith("videomac"):
        frames, size = 2, 64
    else:
        frames = c.num_frames + 1 if hasattr(model, "split_clip") else c.num_frames  # MAM2 reads T + 1
        size = c.img_size
    video = torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(1))
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(2))
    return model, video, mask


@pytest.mark.parametrize("name,overrides", MODELS, ids=[f"{n}{'-' + '-'.join(o) if o else ''}" for n, o in MODELS])
def test_training_step_has_no_data_dependent_operation(name, overrides):
    model, video, mask = build(name, overrides)
    model.fixed_mask_count = True
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = model(video, mask)
        out.loss.backward()  # backward too: no data-dependent shapes there either

    model.zero_grad(set_to_none=True)
    model.fixed_mask_count = False  # reads the count from the mask: a host sync on a GPU
    with pytest.raises(DataDependentOutputException):
        with FakeTensorMode(allow_non_fake_inputs=True):
            model(video, mask)


@pytest.mark.parametrize("name,overrides", MODELS[:4], ids=["videomae", "videomae-v2", "mam2", "videomac"])
def test_fixed_count_gives_the_same_loss(name, overrides):
    model, video, mask = build(name, overrides)
    torch.manual_seed(3)  # a V2 decoder mask is drawn inside forward: the same one both times
    exact = model(video, mask).loss
    model.fixed_mask_count = True
    torch.manual_seed(3)
    fixed = model(video, mask).loss
    assert torch.equal(exact, fixed)


def test_fixed_count_still_rejects_a_foreign_mask():
    model, video, mask = build("videomae_vit_demo", {})
    model.fixed_mask_count = True
    other = model.make_mask(video)  # fine
    model(video, other)
    fewer = mask.clone()
    fewer[:, fewer[0].nonzero()[0]] = False  # one tube fewer hidden than the config's ratio
    with pytest.raises(RuntimeError, match="must hide exactly"):
        model(video, fewer)


def test_motion_guided_masks_are_drawn_without_a_data_dependent_operation():
    model = create("videomae_vit_demo", mask_type="motion_guided")
    video = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    real = model.make_mask(video, generator=torch.Generator().manual_seed(2))
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = model.make_mask(video, generator=torch.Generator().manual_seed(2))
    assert fake.shape == real.shape == (2, 256)


@pytest.mark.parametrize("strategy", sorted(MASKERS))
@pytest.mark.parametrize("grid,ratio", [((8, 14, 14), 0.9), ((4, 8, 8), 0.75), ((2, 4, 6), 0.5), ((4, 2, 2), 0.25)])
def test_mask_count_predicts_every_strategy(strategy, grid, ratio):
    mask = MASKERS[strategy](3, grid, ratio, generator=torch.Generator().manual_seed(0))
    assert check_mask(mask) == mask_count(strategy, grid, ratio)


def test_check_mask_with_a_count():
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :3] = True
    assert check_mask(mask, 10, count=3) == 3
    with pytest.raises(RuntimeError, match="hide exactly 4"):
        check_mask(mask, 10, count=4)
    with pytest.raises(ValueError, match="count must be an int"):
        check_mask(mask, 10, count=11)
    with pytest.raises(ValueError, match="strategy must be one of"):
        mask_count("checkerboard", (1, 2, 2), 0.5)


def test_trainer_sets_the_flag_only_while_training():
    model, video, _ = build("videomae_vit_demo", {"normalization": "none"})
    seen = []
    forward = model.forward
    model.forward = lambda v, m: (seen.append(model.fixed_mask_count), forward(v, m))[1]

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"video": video[i % 2]}

    train(model, Clips(), TrainConfig(steps=2, batch_size=2, lr=1e-3, device="cpu", progress=False))
    assert seen == [True, True]
    assert model.fixed_mask_count is False  # a notebook may now feed masks of any ratio
