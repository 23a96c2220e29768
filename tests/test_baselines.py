"""The copy baseline, PSNR, and the measurement behind VideoMAE's tube masking."""

from __future__ import annotations

import math

import pytest
import torch

from maskvid_edu.analysis.baselines import (
    MEAN,
    SPATIAL,
    TEMPORAL,
    VISIBLE,
    copy_baseline_table,
    copy_nearest_visible,
    copy_reconstruct,
    format_copy_table,
    frame_similarity,
    masked_psnr,
    psnr,
)
from maskvid_edu.data.transforms import normalize
from maskvid_edu.masking import make_mask
from maskvid_edu.patches import patchify


def _tokens(t, h, w, d=3):
    """Patches whose every value names its token: token n holds n + 0.1·k in slot k of D."""
    n = torch.arange(t * h * w, dtype=torch.float32).view(1, -1, 1)
    return n + 0.1 * torch.arange(d, dtype=torch.float32).view(1, 1, d)  # (1, N, d)


def _mask(t, h, w, hidden):
    """A (1, N) mask hiding the tokens listed as (slot, y, x)."""
    m = torch.zeros(1, t * h * w, dtype=torch.bool)
    for s, y, x in hidden:
        m[0, (s * h + y) * w + x] = True
    return m


def _reference_sources(mask, grid):
    """The copy rule written token by token with Python loops (the specification)."""
    t, h, w = grid
    m = mask.view(t, h, w)
    source, how = [], []
    for s in range(t):
        for y in range(h):
            for x in range(w):
                n = (s * h + y) * w + x
                if not m[s, y, x]:
                    source.append(n), how.append(VISIBLE)
                    continue
                slots = [s2 for s2 in range(t) if not m[s2, y, x]]
                if slots:
                    best = min(slots, key=lambda s2: (abs(s2 - s), s2))
                    source.append((best * h + y) * w + x), how.append(TEMPORAL)
                    continue
                cells = [(y2, x2) for y2 in range(h) for x2 in range(w) if not m[s, y2, x2]]
                if cells:
                    y2, x2 = min(cells, key=lambda c: ((c[0] - y) ** 2 + (c[1] - x) ** 2, c[0] * w + c[1]))
                    source.append((s * h + y2) * w + x2), how.append(SPATIAL)
                    continue
                source.append(-1), how.append(MEAN)
    return torch.tensor(source), torch.tensor(how)


# --------------------------------------------------------------------------------------------
# The copy rule on hand-made clips
# --------------------------------------------------------------------------------------------


def test_temporal_copy_takes_the_nearest_slot_and_the_earlier_on_a_tie():
    grid = (4, 1, 2)  # tokens n = 2·s + x
    patches = _tokens(*grid)
    # position x=0: hidden in slots 1 and 2, visible in 0 and 3 → slot 1 copies 0, slot 2 copies 3
    # position x=1: hidden in slots 0 and 2, visible in 1 and 3 → slot 0 copies 1; slot 2 is at
    # distance 1 from both 1 and 3: the earlier slot (1) wins
    mask = _mask(*grid, [(1, 0, 0), (2, 0, 0), (0, 0, 1), (2, 0, 1)])
    rec = copy_nearest_visible(patches, mask, grid)
    expected_source = torch.tensor([[0, 3, 0, 3, 6, 3, 6, 7]])
    assert rec.source.tolist() == expected_source.tolist()
    assert rec.how.tolist() == [[VISIBLE, TEMPORAL, TEMPORAL, VISIBLE, TEMPORAL, TEMPORAL, VISIBLE, VISIBLE]]
    assert torch.equal(rec.patches, patches[:, expected_source[0]])


def test_tube_mask_leaves_only_the_spatial_fallback():
    grid = (3, 2, 2)  # positions (y, x) ∈ {0,1}²; tube over (0, 1) and (1, 1)
    patches = _tokens(*grid)
    mask = _mask(*grid, [(s, y, 1) for s in range(3) for y in range(2)])
    rec = copy_nearest_visible(patches, mask, grid)
    hidden = mask[0]
    assert (rec.how[0, hidden] == SPATIAL).all() and (rec.how[0, ~hidden] == VISIBLE).all()
    # (s, y, 1) copies its left neighbour (s, y, 0): distance 1; (s, 1-y, 0) is at distance √2
    expected = torch.arange(12).view(3, 2, 2)
    expected[:, :, 1] = expected[:, :, 0]
    assert rec.source[0].tolist() == expected.flatten().tolist()
    assert torch.equal(rec.patches[0], patches[0, expected.flatten()])


def test_spatial_tie_goes_to_the_lowest_raster_index():
    grid = (1, 3, 3)
    patches = _tokens(*grid)
    # only the four edge midpoints are visible: the centre is at distance 1 from all four → (0, 1)
    visible = {(0, 0, 1), (0, 1, 0), (0, 1, 2), (0, 2, 1)}
    mask = _mask(*grid, [(0, y, x) for y in range(3) for x in range(3) if (0, y, x) not in visible])
    rec = copy_nearest_visible(patches, mask, grid)
    assert rec.source[0, 4] == 1  # centre ← (0, 1), raster index 1
    assert rec.source[0, 0] == 1  # corner (0, 0): (0, 1) and (1, 0) tie at distance 1 → index 1
    assert rec.source[0, 8] == 5  # corner (2, 2): (1, 2) = 5 and (2, 1) = 7 tie → 5


def test_mean_fill_when_neither_time_nor_space_has_the_token():
    grid = (2, 1, 2)
    patches = torch.tensor([[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]] * 4])  # (1, 4, 6): 2 pixels × 3 channels
    patches[0, 3] = torch.tensor([0.2, 0.4, 0.6, 0.4, 0.8, 1.0])  # the one visible token (1, 0, 1)
    mask = _mask(*grid, [(0, 0, 0), (0, 0, 1), (1, 0, 0)])
    rec = copy_nearest_visible(patches, mask, grid, channels=3)
    # (0,0,0): position hidden in both slots and slot 0 fully hidden → mean fill
    # (0,0,1): copied in time from (1,0,1); (1,0,0): copied in space from (1,0,1)
    assert rec.how.tolist() == [[MEAN, TEMPORAL, SPATIAL, VISIBLE]]
    assert rec.source.tolist() == [[-1, 3, 3, 3]]
    channel_mean = torch.tensor([(0.2 + 0.4) / 2, (0.4 + 0.8) / 2, (0.6 + 1.0) / 2])
    torch.testing.assert_close(rec.patches[0, 0], channel_mean.repeat(2))
    assert torch.equal(rec.patches[0, 1:], patches[0, [3, 3, 3]])


@pytest.mark.parametrize("strategy,ratio", [("random", 0.75), ("random", 0.95), ("frame", 0.5), ("tube", 0.9)])
def test_vectorised_rule_equals_the_token_by_token_specification(strategy, ratio):
    grid = (4, 3, 5)
    gen = torch.Generator().manual_seed(7)
    mask = make_mask(strategy, 6, grid, ratio, generator=gen)
    patches = torch.rand(6, 60, 12, generator=gen)
    rec = copy_nearest_visible(patches, mask, grid)
    for b in range(6):
        source, how = _reference_sources(mask[b], grid)
        assert torch.equal(rec.source[b], source), (strategy, ratio, b)
        assert torch.equal(rec.how[b], how), (strategy, ratio, b)
        copied = how != MEAN
        assert torch.equal(rec.patches[b, copied], patches[b, source[copied]])


def test_copy_reconstruct_works_in_pixel_space_and_keeps_visible_tokens():
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 4, 32, 32, generator=gen)
    mask = make_mask("random", 2, (2, 2, 2), 0.5, generator=gen)
    rec = copy_reconstruct(normalize(pixels, channel_dim=1), mask, tubelet=2, patch=16)
    target = patchify(pixels, 2, 16)
    torch.testing.assert_close(rec.patches[~mask], target[~mask], atol=1e-6, rtol=0)


def test_copy_rejects_bad_input():
    patches = torch.rand(1, 8, 3)
    with pytest.raises(ValueError, match="N = t·h·w"):
        copy_nearest_visible(patches, torch.zeros(1, 8, dtype=torch.bool), (2, 2, 3))
    with pytest.raises(ValueError, match="every token"):
        copy_nearest_visible(patches, torch.ones(1, 8, dtype=torch.bool), (2, 2, 2))
    with pytest.raises(ValueError, match="dtype torch.bool"):
        copy_nearest_visible(patches, torch.zeros(1, 8), (2, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        copy_nearest_visible(patches, torch.zeros(1, 8, dtype=torch.bool), (2, 2, 2), channels=2)
    with pytest.raises(ValueError, match="patch = 16"):
        copy_reconstruct(torch.rand(1, 3, 4, 30, 32), torch.zeros(1, 8, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------


def test_psnr_matches_the_formula_by_hand():
    a = torch.zeros(2, 3, 4)
    b = torch.full((2, 3, 4), 0.1)
    # MSE = 0.01 → 10·log10(1 / 0.01) = 20 dB; with range 2: 10·log10(4 / 0.01) = 26.0206 dB
    assert float(psnr(a, b)) == pytest.approx(20.0, abs=1e-5)
    assert float(psnr(a, b, data_range=2.0)) == pytest.approx(10 * math.log10(400), abs=1e-5)
    c = b.clone()
    c[0] = 0.3  # half the values err by 0.3, half by 0.1: MSE = (0.09 + 0.01) / 2 = 0.05
    assert float(psnr(a, c)) == pytest.approx(10 * math.log10(1 / 0.05), abs=1e-5)
    assert math.isinf(float(psnr(a, a)))
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[0])
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, b, data_range=0)


def test_masked_psnr_counts_hidden_tokens_only():
    target = torch.zeros(2, 4, 6)
    pred = target.clone()
    mask = torch.tensor([[True, False, True, False], [False, True, False, True]])
    pred[mask] = 0.1  # error 0.1 on the hidden tokens
    pred[~mask] = 0.9  # a large error on visible tokens must not count
    assert float(masked_psnr(pred, target, mask)) == pytest.approx(20.0, abs=1e-5)
    pred[1, 1] = 0.3  # clip 1: MSE (0.09 + 0.01) / 2 = 0.05; pooled: (3·0.01 + 0.09) / 4 = 0.03
    per_clip = masked_psnr(pred, target, mask, per_clip=True)
    torch.testing.assert_close(per_clip, torch.tensor([20.0, 10 * math.log10(20)]))
    assert float(masked_psnr(pred, target, mask)) == pytest.approx(10 * math.log10(1 / 0.03), abs=1e-5)
    with pytest.raises(ValueError, match="hides no token"):
        masked_psnr(pred, target, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same .B, N, D. shape"):
        masked_psnr(pred, target[:, :3], mask)


# --------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------


def _drifting_texture(batch=4, frames=16, size=64, seed=0):
    """Smooth random textures drifting one pixel per frame: a clip with strong redundancy."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 1, size // 32, 2 * size // 32, generator=gen)
    big = torch.nn.functional.interpolate(coarse, size=(1, size, 2 * size), mode="trilinear", align_corners=False)
    clip = torch.stack([big[:, :, 0, :, f : f + size] for f in range(frames)], dim=2)  # (B, 3, T, H, W)
    return normalize(clip, channel_dim=1)


def test_table_shows_tube_masking_defeats_the_copy():
    video = _drifting_texture()
    rows = copy_baseline_table(video, generator=torch.Generator().manual_seed(0))
    assert [(r.strategy, r.ratio) for r in rows] == [
        (s, r) for s in ("random", "frame", "tube") for r in (0.75, 0.9, 0.95)
    ]
    by = {(r.strategy, r.ratio): r for r in rows}
    for ratio in (0.75, 0.9, 0.95):
        # tube masking removes every temporal copy; the others keep most of them
        assert by["tube", ratio].from_other_frame == 0.0
        assert by["frame", ratio].from_other_frame == 1.0
        assert by["random", ratio].masked == int(round(ratio * 128, 6))
        # stated margins (measured: frame − tube ≥ 9 dB, random − tube 6.0 / 1.7 / 2.2 dB)
        assert by["frame", ratio].psnr > by["tube", ratio].psnr + 5.0, format_copy_table(rows)
        assert by["random", ratio].psnr > by["tube", ratio].psnr + 1.0, format_copy_table(rows)
    assert by["random", 0.75].psnr > by["tube", 0.75].psnr + 4.0, format_copy_table(rows)
    text = format_copy_table(rows, title="drift")
    assert text.splitlines()[0] == "drift" and "ρ = 0.9" in text and text.count("dB") == 9


def test_table_on_synthetic_data_tube_below_random():
    synthetic = pytest.importorskip("maskvid_edu.data.synthetic")
    ds = synthetic.SyntheticVideoDataset(synthetic.SyntheticConfig(num_frames=16, size=64, num_samples=8, seed=0))
    video = torch.stack([ds[i]["video"] for i in range(8)])  # (8, 3, 16, 64, 64)
    rows = copy_baseline_table(video, generator=torch.Generator().manual_seed(0))
    by = {(r.strategy, r.ratio): r.psnr for r in rows}
    table = format_copy_table(rows)
    # stated margins (measured with mask seeds 0 and 1: random − tube 3.4–4.0 dB at 0.75 and
    # 1.6–2.1 dB at 0.9; frame − tube 2.3–5.5 dB at every ratio)
    assert by["random", 0.75] > by["tube", 0.75] + 2.0, table
    assert by["random", 0.9] > by["tube", 0.9] + 1.0, table
    for ratio in (0.75, 0.9, 0.95):
        assert by["frame", ratio] > by["tube", ratio] + 1.5, table


def test_frame_differences_grow_with_the_gap_and_other_clips_differ_most():
    diffs = frame_similarity(_drifting_texture(), gaps=(1, 4, 8))
    assert list(diffs) == ["gap 1", "gap 4", "gap 8", "other clip"]
    assert diffs["gap 1"] < diffs["gap 4"] < diffs["gap 8"] < diffs["other clip"]
    flat = torch.zeros(2, 3, 4, 8, 8)
    flat[1] = 0.5
    d = frame_similarity(flat, gaps=(1,), input_normalized=False)
    assert d == {"gap 1": 0.0, "other clip": pytest.approx(0.5)}
    assert "other clip" not in frame_similarity(flat[:1], gaps=(1,), input_normalized=False)
    with pytest.raises(ValueError, match="gaps"):
        frame_similarity(flat, gaps=(4,))


def test_psnr_of_integer_images_does_not_wrap_around():
    a = torch.zeros(4, 4, dtype=torch.uint8)
    b = torch.full((4, 4), 10, dtype=torch.uint8)  # a − b in uint8 would be 246
    assert float(psnr(a, b, data_range=255)) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-4)


def test_best_copy_psnr_sees_the_motion_shortcut_that_a_motion_guided_mask_closes():
    from maskvid_edu.analysis.baselines import best_copy_psnr
    from maskvid_edu.data.synthetic import translating_texture
    from maskvid_edu.masking import constant_flow, flow_guided_mask, tube_mask

    moving = translating_texture(8, 64, shift=(4, 0), seed=0)[None].expand(8, -1, -1, -1, -1)
    g = torch.Generator().manual_seed(0)
    tube = tube_mask(8, (4, 8, 8), 0.5, generator=g)  # (8, 256)
    guided = flow_guided_mask(tube[:, :64], constant_flow(8, (4, 8, 8), dx=1.0), generator=g)
    a, b = best_copy_psnr(moving, tube, 2, 8), best_copy_psnr(moving, guided, 2, 8)
    assert a.shape == (8,)
    # under the tube, part of the hidden content is visible one slot away, moved (exact copies);
    # the motion-guided mask hides it there too (measured: ≈ 21.6–22.8 dB against ≈ 19.0–19.2)
    assert torch.all(a > b + 2)
    # every token hidden in a slot and both its neighbours → no source: a clear error
    everything = torch.zeros(1, 256, dtype=torch.bool)
    everything[:, 64:] = True
    with pytest.raises(ValueError, match="no visible token"):
        best_copy_psnr(moving[:1], everything, 2, 8)
