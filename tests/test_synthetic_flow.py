"""The synthetic clips' true optical flow (render_clip(..., flow_step=k)) and what it grades."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset, render_clip
from maskvid_edu.data.transforms import normalize
from maskvid_edu.flow import block_matching_flow, grade_flow, pool_pixel_flow

CFG = SyntheticConfig(num_frames=8, size=64, num_classes=8, num_samples=64, seed=3)
DIRECTION = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}


def _per_layer(clip, layer):
    """Flow vectors of the pixels showing ``layer`` in frame t: (n, 2)."""
    visible = clip.masks[: clip.flow.shape[0]] == layer  # (T-k, H, W)
    return clip.flow.permute(0, 2, 3, 1)[visible]


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("index", range(4))  # the four translation classes
def test_relative_motion_of_a_translation_is_the_class_displacement(index, step):
    clip = render_clip(CFG, index, flow_step=step)
    assert clip.flow.shape == (CFG.num_frames - step, 2, CFG.size, CFG.size)
    obj, bg = _per_layer(clip, 1), _per_layer(clip, 0)
    # rigid translations: one vector per layer, the same at every pixel
    assert torch.allclose(obj, obj[:1].expand_as(obj), atol=1e-4)
    assert torch.allclose(bg, bg[:1].expand_as(bg), atol=1e-4)
    length = clip.params["translation"] * CFG.size * step / (CFG.num_frames - 1)  # pixels
    expected = torch.tensor(DIRECTION[clip.params["class"]], dtype=torch.float32) * length
    assert torch.allclose(obj[0] - bg[0], expected, atol=1e-3)


def test_static_camera_keeps_the_background_still_and_moves_the_object():
    cfg = SyntheticConfig(num_frames=8, size=64, num_classes=4, camera="static", seed=1,
                          distractor_prob=0.0)
    clip = render_clip(cfg, 1, flow_step=1)  # move_right
    assert torch.all(_per_layer(clip, 0) == 0)
    step = clip.params["translation"] * 64 / 7
    obj = _per_layer(clip, 1)
    assert torch.allclose(obj, torch.tensor([step, 0.0]).expand_as(obj), atol=1e-3)


def test_rotation_and_zoom_turn_and_scale_the_right_way():
    cfg = SyntheticConfig(num_frames=8, size=64, num_classes=8, seed=5, distractor_prob=0.0)
    turns = {}
    for index in (4, 5):  # rotate_cw, rotate_ccw: the object turns about its centre
        clip = render_clip(cfg, index, flow_step=1)
        visible = clip.masks[0] == 1
        ys, xs = torch.nonzero(visible, as_tuple=True)
        rx, ry = xs + 0.5 - (xs + 0.5).mean(), ys + 0.5 - (ys + 0.5).mean()
        background = clip.flow[0][:, clip.masks[0] == 0].mean(dim=1)  # (2,) the drift
        rel = clip.flow[0][:, visible] - background[:, None]  # (2, n) motion relative to it
        turns[clip.params["class"]] = float((rx * rel[1] - ry * rel[0]).mean())  # y down: > 0 clockwise
    assert turns["rotate_cw"] > 0 > turns["rotate_ccw"]
    for index, sign in ((6, -1), (7, 1)):  # grow: the world zooms out around the object
        clip = render_clip(cfg, index, flow_step=1)
        fx = clip.flow[:, 0]  # (T-1, H, W)
        both = (clip.masks[:-1, :, 1:] == 0) & (clip.masks[:-1, :, :-1] == 0)
        divergence_x = (fx[:, :, 1:] - fx[:, :, :-1])[both]  # the background's d(flow_x)/dx
        # the on-screen size of a world unit changes by z per frame (z = zoom^(-1/(T-1)) under
        # grow), so flow = (z - 1)(x - centre) + drift and d(flow_x)/dx = z - 1 everywhere
        z = clip.params["zoom"] ** (sign / (cfg.num_frames - 1))
        assert torch.allclose(divergence_x, torch.full_like(divergence_x, z - 1), atol=1e-4)
        assert math.copysign(1, float(divergence_x.mean())) == sign


def _warp_error(clip, flow):
    """Mean |frame_t(x) - frame_{t+1}(x + flow)| over pixels whose layer is still seen there."""
    size = clip.frames.shape[-1]
    pix = torch.arange(size) + 0.5
    x = pix[None, None, :] + flow[:, 0]  # (T-1, H, W)
    y = pix[None, :, None] + flow[:, 1]
    grid = torch.stack([x / (size / 2) - 1, y / (size / 2) - 1], dim=-1)
    later = clip.frames[:, 1:].transpose(0, 1)  # (T-1, 3, H, W)
    warped = F.grid_sample(later, grid, align_corners=False, padding_mode="border")
    layer = F.grid_sample(clip.masks[1:, None].float(), grid, mode="nearest", align_corners=False)[:, 0]
    keep = (x > 1) & (x < size - 1) & (y > 1) & (y < size - 1) & (layer == clip.masks[:-1])
    return float((warped - clip.frames[:, :-1].transpose(0, 1)).abs().mean(1)[keep].mean())


def test_frames_warped_along_the_true_flow_match():
    """Brightness constancy along the flow: the next frame sampled where the flow points
    reproduces the frame (up to bilinear interpolation of sharp textures), far better than
    assuming no motion, and the flow reversed is worse than no motion."""
    ratios, reversed_ratios = [], []
    for index in range(16):
        clip = render_clip(CFG, index, flow_step=1)
        still = _warp_error(clip, torch.zeros_like(clip.flow))
        ratios.append(_warp_error(clip, clip.flow) / still)
        reversed_ratios.append(_warp_error(clip, -clip.flow) / still)
    assert torch.tensor(ratios).median() < 0.4
    assert torch.tensor(reversed_ratios).median() > 1.0


def test_the_block_matcher_graded_against_the_true_flow():
    cfg = SyntheticConfig(num_frames=8, size=64, num_classes=4, num_samples=16, seed=7)
    clips = [render_clip(cfg, i, flow_step=2) for i in range(16)]
    true = pool_pixel_flow(torch.stack([c.flow for c in clips]), patch=8, tubelet=2)  # (16, 3, 2, 8, 8)
    video = torch.stack([normalize(c.frames) for c in clips])
    assert true.shape == (16, 3, 2, 8, 8)

    def median_error(flow):
        return float((flow - true).norm(dim=2).median())  # end-point error, tokens

    coarse = median_error(block_matching_flow(video, 8, 2))  # half-patch candidates
    fine = median_error(block_matching_flow(video, 8, 2, step=1))
    still = median_error(torch.zeros_like(true))
    assert fine < coarse < still
    assert fine < 0.15 and still > 0.5


def test_pool_pixel_flow_layout_and_errors():
    pixel = torch.zeros(2, 6, 2, 32, 32)  # a clip of 8 frames, flow_step = tubelet = 2
    pixel[:, :, 0], pixel[:, :, 1] = 4.0, -8.0
    tokens = pool_pixel_flow(pixel, patch=8, tubelet=2)
    assert tokens.shape == (2, 3, 2, 4, 4)
    assert torch.all(tokens[:, :, 0] == 0.5) and torch.all(tokens[:, :, 1] == -1.0)
    with pytest.raises(ValueError, match="pixel_flow must be"):
        pool_pixel_flow(torch.zeros(6, 2, 32, 32), 8, 2)
    with pytest.raises(ValueError, match="does not come from a clip"):
        pool_pixel_flow(torch.zeros(1, 5, 2, 32, 32), 8, 2)
    with pytest.raises(ValueError, match="patch must be"):
        pool_pixel_flow(pixel, 0, 2)


def test_flow_step_is_validated_and_the_dataset_passes_it_on():
    for bad in (0, 8, True, 1.5):
        with pytest.raises(ValueError, match="flow_step must be an int in \\[1, 8\\)"):
            render_clip(CFG, 0, flow_step=bad)
    assert render_clip(CFG, 0).flow is None
    item = SyntheticVideoDataset(CFG).clip(2, flow_step=2)
    assert item["flow"].shape == (6, 2, 64, 64)
    assert "flow" not in SyntheticVideoDataset(CFG).clip(2)


def test_grade_flow_counts_end_point_error_and_rounded_agreement():
    truth = torch.zeros(2, 1, 2, 1, 2)
    estimate = truth.clone()
    estimate[0, 0, :, 0, 0] = torch.tensor([0.3, 0.4])  # length 0.5, still rounds to (0, 0)
    estimate[1, 0, 0, 0, 1] = 1.0  # one whole token off
    grade = grade_flow(estimate, truth)
    assert torch.allclose(grade["endpoint_error"], torch.tensor([0.25, 0.5]))
    assert torch.equal(grade["rounded_agreement"], torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="one shape"):
        grade_flow(estimate, truth[:1])
