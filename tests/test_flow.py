"""Token-grid flow (maskvid_edu.flow) and the motion-guided mask built on it."""

import pytest
import torch

from maskvid_edu.data.synthetic import translating_texture
from maskvid_edu.flow import block_matching_flow, opencv_flow, token_flow
from maskvid_edu.masking import flow_guided_mask, mask_count, motion_guided_mask, tube_mask
from maskvid_edu.models import create


def _clip(shift, frames=8, size=64, seed=0):
    return translating_texture(frames, size, shift=shift, seed=seed).unsqueeze(0)  # (1, 3, T, H, W)


@pytest.mark.parametrize("shift", [(4, 0), (0, 4), (-4, 4), (0, 0)])
def test_block_matching_recovers_a_known_translation_where_the_content_stays_in_frame(shift):
    flow = block_matching_flow(_clip(shift), patch=8, tubelet=2)  # (1, 3, 2, 8, 8)
    assert flow.shape == (1, 3, 2, 8, 8)
    per_slot = (shift[0] * 2 / 8, shift[1] * 2 / 8)  # pixels per frame × tubelet / patch
    # tokens whose patch lands inside the frame by the next slot
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    inside = (xs + per_slot[0] >= 0) & (xs + per_slot[0] < 8) & (ys + per_slot[1] >= 0) & (ys + per_slot[1] < 8)
    assert torch.all(flow[0, :, 0][:, inside] == per_slot[0])
    assert torch.all(flow[0, :, 1][:, inside] == per_slot[1])


def test_block_matching_finds_sub_token_motion_with_a_fine_step():
    flow = block_matching_flow(_clip((-1, 3)), patch=8, tubelet=2, step=1)
    core = flow[0, :, :, 1:-1, 1:-1]  # away from the entering / leaving edges
    assert torch.all(core[:, 0] == -2 / 8) and torch.all(core[:, 1] == 6 / 8)


def test_a_flat_region_prefers_no_motion():
    video = torch.zeros(2, 3, 4, 32, 32)
    assert torch.all(block_matching_flow(video, 8, 2) == 0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="does not divide"):
        block_matching_flow(torch.zeros(1, 3, 5, 32, 32), 8, 2)
    with pytest.raises(ValueError, match="patch"):
        block_matching_flow(torch.zeros(1, 3, 4, 32, 32), 0, 2)
    with pytest.raises(ValueError, match="flow method"):
        token_flow(torch.zeros(1, 3, 4, 32, 32), 8, 2, method="raft")


def test_opencv_flow_agrees_with_the_true_translation():
    pytest.importorskip("cv2", reason="pip install opencv-python-headless")
    flow = opencv_flow(_clip((4, 0), size=96), patch=8, tubelet=2, method="dis")
    core = flow[0, :, :, 2:-2, 2:-3]  # DIS is unreliable at the entering and leaving edges
    assert (core[:, 0] - 1.0).abs().median() < 0.1 and core[:, 1].abs().median() < 0.1


def test_motion_guided_mask_follows_the_motion_and_keeps_the_tube_count():
    video = torch.cat([_clip((4, 0), seed=s) for s in range(3)])  # every clip moves 1 token per slot
    g = torch.Generator().manual_seed(0)
    mask = motion_guided_mask(video, (4, 8, 8), 0.5, generator=g)  # (3, 256)
    assert mask.dtype == torch.bool and mask.shape == (3, 256)
    assert torch.all(mask.sum(dim=1) == mask_count("motion_guided", (4, 8, 8), 0.5))
    slots = mask.view(3, 4, 8, 8)
    # where the hidden set of a slot stays in frame, it reappears one column to the right
    for s in range(3):
        moved = slots[:, s, :, :-1]
        assert torch.all(slots[:, s + 1, :, 1:][moved])
    # the same draws as building it by hand from the base mask and the estimated flow
    g = torch.Generator().manual_seed(0)
    base = tube_mask(3, (1, 8, 8), 0.5, generator=g)
    by_hand = flow_guided_mask(base, block_matching_flow(video, 8, 2), generator=g)
    assert torch.equal(mask, by_hand)


def test_videomae_draws_motion_guided_masks_and_trains_on_them():
    model = create("videomae_vit_demo", mask_type="motion_guided", mask_ratio=0.75)
    video = torch.cat([_clip((4, 0), seed=s) for s in range(2)])
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (2, 256) and torch.all(mask.sum(dim=1) == 4 * 48)
    model.fixed_mask_count = True
    assert model.expected_mask_count((4, 8, 8)) == 4 * 48
    out = model(video, mask)
    out.loss.backward()
    assert torch.isfinite(out.loss)
