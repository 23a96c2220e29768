"""Chapter 8's mask pictures, the translating clip, its flow and the copyable share."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from maskvid_edu import masking
from maskvid_edu.analysis.baselines import copyable_share
from maskvid_edu.data.synthetic import translating_texture
from maskvid_edu.data.transforms import denormalize
from maskvid_edu.widgets import figure_to_png, render_flow_guided, render_mask_rows

GRID = (4, 8, 8)  # 8 frames of 64 px, tubelet 2, patch 8


def test_translating_texture_moves_by_whole_pixels():
    clip = denormalize(translating_texture(8, 64, (4, 0), seed=0), channel_dim=0)  # (3, T, H, W)
    assert clip.shape == (3, 8, 64, 64)
    assert torch.allclose(clip[:, 1, :, 4:], clip[:, 0, :, :-4], atol=1e-6)
    assert not torch.allclose(clip[:, 1], clip[:, 0], atol=1e-3)
    down = denormalize(translating_texture(4, 32, (0, 2), seed=1), channel_dim=0)
    assert torch.allclose(down[:, 3, 2:], down[:, 2, :-2], atol=1e-6)


def test_constant_flow_layout():
    flow = masking.constant_flow(2, GRID, 1.0, -0.5)
    assert flow.shape == (2, 3, 2, 8, 8)
    assert (flow[:, :, 0] == 1.0).all() and (flow[:, :, 1] == -0.5).all()


def test_masks_that_follow_the_motion_leave_less_to_copy():
    video = translating_texture(8, 64, (4, 0), seed=0)[None].expand(8, -1, -1, -1, -1)
    g = torch.Generator().manual_seed(0)
    tube = masking.tube_mask(8, GRID, 0.75, generator=g)
    guided = masking.flow_guided_mask(tube[:, :64], masking.constant_flow(8, GRID, 1.0), generator=g)
    share_tube, share_guided = copyable_share(video, tube, 2, 8), copyable_share(video, guided, 2, 8)
    assert share_tube.shape == (8,) and ((share_tube >= 0) & (share_tube <= 1)).all()
    assert share_guided.mean() < share_tube.mean()
    # a still clip under a random mask: a hidden token is copyable iff its position is visible next door
    still = video[:, :, :1].expand(-1, -1, 8, -1, -1)
    assert torch.equal(copyable_share(still, tube, 2, 8), torch.zeros(8))
    assert (copyable_share(still, masking.random_mask(8, GRID, 0.5, generator=g), 2, 8) > 0.3).all()


def test_render_functions_return_small_figures():
    video = translating_texture(8, 64, (4, 0), seed=0)
    g = torch.Generator().manual_seed(0)
    masks = {"tube": masking.tube_mask(1, GRID, 0.6, generator=g),
             "multiblock": masking.make_mask("multiblock", 1, GRID, 0.6, generator=g)}
    fig = render_mask_rows(video, masks, GRID, [0, 4], note="a note")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert len(figure_to_png(fig)) < 200_000
    base = masking.tube_mask(1, (1, 8, 8), 0.75, generator=g)
    fig = render_flow_guided(video, base[0], masking.constant_flow(1, GRID, 1.0)[0], GRID, flow_source="constant")
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="flow must be"):
        render_flow_guided(video, base, torch.zeros(1, 2, 2, 8, 8), GRID)
    with pytest.raises(ValueError, match="at least one"):
        render_mask_rows(video, {}, GRID)
