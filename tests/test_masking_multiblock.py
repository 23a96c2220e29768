"""V-JEPA's multi-block masks and MGMAE's flow-guided masks: counts, seeding, tubes, block
shapes, the union's share, and a known translation followed exactly."""

from __future__ import annotations

import pytest
import torch

from maskvid_edu.masking import (
    LONG_RANGE,
    MASKERS,
    SHORT_RANGE,
    BlockSpec,
    block_union,
    check_mask,
    flow_guided_mask,
    make_mask,
    mask_count,
    multiblock_mask,
    tube_mask,
)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# multi-block
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("specs", [(SHORT_RANGE,), (LONG_RANGE,), (SHORT_RANGE, LONG_RANGE)])
def test_multiblock_counts_are_equal_and_the_batch_minimum(specs):
    grid = (4, 14, 14)
    mask = multiblock_mask(16, grid, specs, generator=_g(1))
    union = block_union(16, grid[1:], specs, generator=_g(1))  # the same draws
    k = int(union.sum(1).min())
    assert mask.shape == (16, 4 * 14 * 14) and mask.dtype == torch.bool
    assert check_mask(mask) == 4 * k
    spatial = mask.view(16, 4, 14 * 14)
    assert not (spatial[:, 0] & ~union).any()  # the batch minimum only unhides: a subset of the blocks
    smallest = union.sum(1).argmin()
    assert torch.equal(spatial[smallest, 0], union[smallest])  # the smallest union stays whole


def test_multiblock_is_seeded_and_each_block_is_a_tube():
    grid = (8, 14, 14)
    a = multiblock_mask(4, grid, generator=_g(3))
    b = multiblock_mask(4, grid, generator=_g(3))
    c = multiblock_mask(4, grid, generator=_g(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    slots = a.view(4, 8, 14 * 14)
    assert (slots == slots[:, :1]).all()  # the same positions in every temporal slot


def test_samples_are_independent_of_each_other():
    masks = multiblock_mask(8, (2, 14, 14), count=100, generator=_g(0)).view(8, -1)
    assert len({tuple(m.tolist()) for m in masks}) == 8


def test_block_shapes_stay_within_their_ranges():
    # one block per sample: its bounding box is the block, and its area and aspect match the spec
    spec = BlockSpec(num_blocks=1, spatial_scale=0.15, aspect_ratio=(0.75, 1.5))
    h = w = 14
    union = block_union(200, (h, w), (spec,), generator=_g(5)).view(200, h, w)
    area = int(0.15 * h * w)  # 29 positions
    for m in union:
        rows = m.any(1).nonzero().flatten()
        cols = m.any(0).nonzero().flatten()
        bh, bw = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(m.sum()) == bh * bw  # a solid rectangle
        assert round((area * 0.75) ** 0.5) <= bh <= round((area * 1.5) ** 0.5)
        assert round((area / 1.5) ** 0.5) <= bw <= round((area / 0.75) ** 0.5)


def test_union_share_is_in_the_expected_range():
    short = block_union(500, (14, 14), (SHORT_RANGE,), generator=_g(6)).float().mean(1)
    long = block_union(500, (14, 14), (LONG_RANGE,), generator=_g(6)).float().mean(1)
    assert 0.55 < short.mean() < 0.72 and 0.78 < long.mean() < 0.9  # overlapping blocks: below 1 − 0.85⁸, 1 − 0.3²
    assert short.min() > 0.12 and long.min() > 0.6  # at least one whole block (its sides rounded)


def test_maskers_entry_has_the_tube_count_known_in_advance():
    grid = (4, 8, 8)
    for name, ratio in (("multiblock", 0.6), ("multiblock_long", 0.8)):
        mask = make_mask(name, 6, grid, ratio, generator=_g(7))
        assert check_mask(mask) == mask_count(name, grid, ratio) == 4 * int(ratio * 64)
        assert torch.equal(mask, MASKERS[name](6, grid, ratio, generator=_g(7)))


def test_fixed_count_hides_or_unhides_around_the_union():
    grid = (1, 14, 14)
    union = block_union(32, (14, 14), (SHORT_RANGE,), generator=_g(8))
    low = multiblock_mask(32, grid, count=20, generator=_g(8))
    high = multiblock_mask(32, grid, count=190, generator=_g(8))
    assert check_mask(low) == 20 and check_mask(high) == 190
    assert not (low & ~union).any()  # fewer than the union: a subset of it
    assert not (union & ~high).any()  # more than the union: a superset of it


def test_multiblock_rejects_bad_arguments():
    with pytest.raises(ValueError, match="count must be"):
        multiblock_mask(2, (2, 8, 8), count=64)
    with pytest.raises(ValueError, match="specs must be"):
        multiblock_mask(2, (2, 8, 8), specs=())
    with pytest.raises(ValueError, match="num_blocks"):
        BlockSpec(num_blocks=0, spatial_scale=0.1)
    with pytest.raises(ValueError, match="spatial_scale"):
        BlockSpec(num_blocks=2, spatial_scale=1.5)


# ------------------------------------------------------------------------------------------
# flow-guided
# ------------------------------------------------------------------------------------------


def _constant_flow(B, steps, h, w, dx, dy):
    flow = torch.zeros(B, steps, 2, h, w)
    flow[:, :, 0] = dx
    flow[:, :, 1] = dy
    return flow


def test_constant_flow_shifts_the_mask_exactly():
    B, t, h, w = 3, 4, 10, 12
    base = torch.zeros(B, h, w, dtype=torch.bool)
    base[:, 1:4, 1:5] = True  # a 3×4 block far from the right and bottom edges
    base[1, 1:4, 1:5] = False
    base[1, 2:5, 2:6] = True  # another place, the same count
    mask = flow_guided_mask(base.view(B, -1), _constant_flow(B, t - 1, h, w, dx=2, dy=1), generator=_g(0))
    assert mask.shape == (B, t * h * w)
    slots = mask.view(B, t, h, w)
    for s in range(t):
        assert torch.equal(slots[:, s], torch.roll(base, shifts=(s, 2 * s), dims=(1, 2))), s


def test_count_is_preserved_when_the_mask_leaves_the_frame_and_tokens_collide():
    B, t, h, w = 4, 5, 8, 8
    base = tube_mask(B, (1, h, w), 0.5, generator=_g(1))
    flow = _constant_flow(B, t - 1, h, w, dx=3, dy=0)  # hidden tokens leave on the right
    flow[:, :, 1] = torch.randn(B, t - 1, h, w, generator=_g(2)) * 2  # and random vertical moves collide
    mask = flow_guided_mask(base, flow, generator=_g(3))
    assert (mask.view(B, t, h * w).sum(-1) == int(base[0].sum())).all()
    assert torch.equal(mask, flow_guided_mask(base, flow, generator=_g(3)))  # seeded
    assert torch.equal(mask.view(B, t, -1)[:, 0], base)


def test_zero_flow_gives_the_tube_mask():
    base = tube_mask(2, (1, 6, 6), 0.75, generator=_g(4))
    mask = flow_guided_mask(base, torch.zeros(2, 3, 2, 6, 6), generator=_g(5))
    assert torch.equal(mask, base.repeat(1, 4))


def test_flow_guided_mask_rejects_bad_input():
    base = tube_mask(2, (1, 4, 4), 0.5)
    with pytest.raises(ValueError, match="flow must be"):
        flow_guided_mask(base, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="base_mask must have shape"):
        flow_guided_mask(base, torch.zeros(2, 3, 2, 5, 5))
    with pytest.raises(ValueError, match="same number"):
        bad = base.clone()
        bad[0] = True
        flow_guided_mask(bad, torch.zeros(2, 3, 2, 4, 4))
