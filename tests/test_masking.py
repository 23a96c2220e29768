"""Invariants of every mask generator, and the token gather/merge helpers."""

import math

import pytest
import torch

from maskvid_edu import masking as M

GRID = (8, 14, 14)  # ViT-B on 16×224×224
GENERATORS = ["random", "tube", "frame"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "strategy, ratio, expected",
    [
        ("random", 0.9, math.floor(0.9 * 1568)),  # 1411
        ("tube", 0.9, 8 * math.floor(0.9 * 196)),  # 8 × 176 = 1408
        ("tube", 0.75, 8 * 147),
        ("tube", 0.95, 8 * 186),
        ("frame", 0.5, 4 * 196),
        ("frame", 0.9, 7 * 196),
        ("running_cell", 0.5, 1568 // 2),
        ("running_cell", 0.75, 3 * 1568 // 4),
    ],
)
def test_counts_follow_the_documented_rule(strategy, ratio, expected):
    mask = M.make_mask(strategy, 5, GRID, ratio, generator=gen())
    assert mask.dtype == torch.bool and mask.shape == (5, 1568)
    assert mask.sum(dim=1).tolist() == [expected] * 5


def test_float_rounding_in_count_rule():
    # 0.9 * 10 is 8.999999999999998 in floating point; the rule means 9.
    assert M.num_masked(10, 0.9) == 9
    assert M.num_masked(196, 0.9) == 176
    assert M.num_masked(1568, 0.0) == 0


def test_tube_property_every_slot_hides_the_same_positions():
    mask = M.tube_mask(4, GRID, 0.9, generator=gen()).view(4, 8, 196)
    assert torch.equal(mask, mask[:, :1].expand_as(mask))


def test_random_mask_is_not_a_tube():
    mask = M.random_mask(4, GRID, 0.9, generator=gen()).view(4, 8, 196)
    assert not torch.equal(mask, mask[:, :1].expand_as(mask))


def test_frame_mask_hides_whole_slots():
    mask = M.frame_mask(3, GRID, 0.5, generator=gen()).view(3, 8, 196)
    per_slot = mask.sum(dim=2)
    assert set(per_slot.unique().tolist()) <= {0, 196}
    assert per_slot.eq(196).sum(dim=1).tolist() == [4, 4, 4]


def test_pair_mask_is_symmetric_over_two_frames():
    mask = M.pair_mask(6, (7, 7), 0.75, generator=gen())
    assert mask.shape == (6, 98)
    assert torch.equal(mask[:, :49], mask[:, 49:])
    assert mask[:, :49].sum(dim=1).tolist() == [36] * 6


def test_running_cell_pattern():
    mask = M.running_cell_mask(8, (4, 4, 6), 0.5, generator=gen()).view(8, 4, 4, 6)
    # every 2×2 cell hides exactly 2 of its 4 positions at every slot
    cells = mask.view(8, 4, 2, 2, 3, 2).sum(dim=(3, 5))
    assert torch.all(cells == 2)
    # all cells of a slot share one pattern
    first = mask[:, :, :2, :2]
    assert torch.equal(mask, first.repeat(1, 1, 2, 3))
    # the pattern steps by one position per slot: over 4 slots each position is hidden twice
    assert torch.all(first.sum(dim=1) == 2)
    # consecutive slots differ (it runs)
    assert not torch.equal(first[:, 0], first[:, 1])


def test_running_cell_matches_reference_queue():
    # VideoMAE V2's cell: a queue [1]*k + [0]*(4-k), read from phase + slot + 1, reshaped 2×2.
    mask = M.running_cell_mask(16, (5, 2, 2), 0.25, generator=gen(3)).view(16, 5, 4)
    queue = torch.tensor([1, 0, 0, 0], dtype=torch.bool)
    for b in range(16):
        phases = [p for p in range(4) if all(torch.equal(mask[b, s], queue[(torch.arange(4) + p + s + 1) % 4]) for s in range(5))]
        assert len(phases) == 1


@pytest.mark.parametrize("strategy", GENERATORS + ["running_cell"])
def test_seeding_and_batch_independence(strategy):
    ratio = 0.5
    a = M.make_mask(strategy, 16, GRID, ratio, generator=gen(7))
    b = M.make_mask(strategy, 16, GRID, ratio, generator=gen(7))
    c = M.make_mask(strategy, 16, GRID, ratio, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # samples of one batch are drawn independently: not all equal
    assert len({tuple(row.tolist()) for row in a}) > 1


def test_uniform_over_positions():
    # every spatial position is hidden about ρ of the time under tube masking
    mask = M.tube_mask(4000, (1, 4, 4), 0.5, generator=gen())
    freq = mask.float().mean(dim=0)
    assert torch.allclose(freq, torch.full_like(freq, 0.5), atol=0.04)


@pytest.mark.parametrize("strategy", GENERATORS)
def test_device_and_cpu_generator_give_same_mask(strategy):
    devices = ["cpu", "meta"] if not torch.cuda.is_available() else ["cpu", "cuda"]
    a = M.make_mask(strategy, 2, GRID, 0.9, generator=gen(1), device="cpu")
    if "cuda" in devices:
        b = M.make_mask(strategy, 2, GRID, 0.9, generator=gen(1), device="cuda")
        assert b.device.type == "cuda" and torch.equal(a, b.cpu())
    else:
        b = M.make_mask(strategy, 2, GRID, 0.9, generator=gen(1), device="meta")
        assert b.device.type == "meta" and b.shape == a.shape


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_keeps_masks_on_gpu():
    g = torch.Generator(device="cuda").manual_seed(0)
    mask = M.tube_mask(2, GRID, 0.9, generator=g, device="cuda")
    assert mask.is_cuda and mask.sum(1).tolist() == [1408, 1408]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.tube_mask(2, GRID, 1.0), r"ratio must be in \[0, 1\)"),
        (lambda: M.tube_mask(2, GRID, -0.1), r"ratio must be in \[0, 1\)"),
        (lambda: M.tube_mask(2, GRID, float("nan")), r"ratio must be a number"),
        (lambda: M.tube_mask(2, GRID, "0.9"), r"ratio must be a number"),
        (lambda: M.tube_mask(2, (8, 1, 1), 0.5), r"hides no unit out of 1"),
        (lambda: M.frame_mask(2, (1, 14, 14), 0.9), r"hides no unit out of 1"),
        (lambda: M.tube_mask(2, (8, 0, 14), 0.9), r"grid must be a \(t, h, w\) triple"),
        (lambda: M.tube_mask(2, (8, 14), 0.9), r"grid must be a \(t, h, w\) triple"),
        (lambda: M.tube_mask(0, GRID, 0.9), r"batch must be a positive int"),
        (lambda: M.running_cell_mask(2, (8, 7, 14), 0.5), r"even h and w"),
        (lambda: M.running_cell_mask(2, GRID, 0.1), r"1–3 of the 4 positions"),
        (lambda: M.make_mask("blocks", 2, GRID, 0.5), r"strategy must be one of"),
        (lambda: M.pair_mask(2, 7, 0.5), r"grid_hw must be an \(h, w\) pair"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_check_mask_errors():
    with pytest.raises(ValueError, match="dtype torch.bool"):
        M.check_mask(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        M.check_mask(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="N = 5 tokens"):
        M.check_mask(torch.zeros(2, 4, dtype=torch.bool), num_tokens=5)
    with pytest.raises(ValueError, match="same number of tokens"):
        M.check_mask(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        M.check_mask([[True, False]])
    assert M.check_mask(torch.tensor([[True, False], [False, True]])) == 1


def test_gather_and_merge_round_trip_in_raster_order():
    x = torch.arange(2 * 6).view(2, 6, 1).float()
    mask = torch.tensor([[True, False, True, False, False, True], [False, False, True, True, True, False]])
    vis = M.visible_tokens(x, mask)
    hid = M.masked_tokens(x, mask)
    assert vis[..., 0].tolist() == [[1, 3, 4], [6, 7, 11]]
    assert hid[..., 0].tolist() == [[0, 2, 5], [8, 9, 10]]
    assert torch.equal(M.merge_tokens(vis, hid, mask), x)


def test_gather_keeps_gradients_and_extra_dims():
    x = torch.randn(3, 1568, 4, 5, requires_grad=True)
    mask = M.tube_mask(3, GRID, 0.9, generator=gen())
    vis = M.visible_tokens(x, mask)
    assert vis.shape == (3, 160, 4, 5)
    vis.sum().backward()
    assert torch.equal(x.grad[:, :, 0, 0] != 0, ~mask)


def test_merge_rejects_wrong_counts():
    mask = torch.tensor([[True, False, False]])
    with pytest.raises(ValueError, match="masked tokens"):
        M.merge_tokens(torch.zeros(1, 1, 2), torch.zeros(1, 2, 2), mask)
