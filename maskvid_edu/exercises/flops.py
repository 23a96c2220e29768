"""Exercise of the scaling chapter: the forward FLOPs of one transformer block.

Checked against :func:`maskvid_edu.measure.flops.vit_block_flops` (imported when a check runs):
``8·n·D² + 4·n·H·D + 4·n²·D`` with ``H = int(D·mlp_ratio)``, a product of ``(m × k)`` by
``(k × n)`` costing ``2·m·k·n`` FLOPs and element-wise work left out.
"""

from __future__ import annotations

import numbers

from ._checker import Hint, call, exercise, expect_real

BLOCK = exercise(
    "vit_block_flops",
    title="the FLOPs of one ViT block",
    topic="scaling up · flops.py",
    signature="vit_block_flops(dim, num_tokens, mlp_ratio=4.0) -> int",
    task="""Return the forward FLOPs of one transformer block of width D = dim on
    n = num_tokens tokens, counting matrix products only, 2·m·k·n FLOPs for an (m × k)·(k × n)
    product (one multiply and one add per term): the qkv projection D → 3D, the two attention
    products Q·Kᵀ and A·V over all heads together, the output projection D → D and the two MLP
    layers D → H → D with H = int(D · mlp_ratio). No LayerNorm, softmax, GELU or bias: they are
    well under 1 % of a ViT.""",
)

# (dim, num_tokens): ViT-B on the 160 visible tokens and on all 1568, ViT-S, ViT-L visible, and
# one block where n > D so that a swap of the two arguments shows.
_CASES = ((768, 160), (768, 1568), (384, 196), (1024, 160), (64, 300))


def _library(dim: int, num_tokens: int, mlp_ratio: float = 4.0) -> int:
    from ..measure.flops import vit_block_flops

    return vit_block_flops(dim, num_tokens, mlp_ratio)


def _count(fn, *args) -> float:
    return expect_real(call(fn, *args), "vit_block_flops")


@BLOCK.property("returns a number")
def _block_type(fn):
    _count(fn, 768, 160)


@BLOCK.property("counts a block of MLP ratio 4: 24·n·D² + 4·n²·D")
def _block_rule(fn):
    got = [_count(fn, d, n) for d, n in _CASES]
    want = [_library(d, n) for d, n in _CASES]
    if got == want:
        return
    slips = (
        ([w / 2 for w in want],
         "you counted multiply-accumulates (m·k·n per product); in the convention here a product "
         "costs 2·m·k·n FLOPs — one multiply and one add per term"),
        ([3 * w for w in want],
         "that is a training step (forward + backward = 3 × forward); the exercise asks for the "
         "forward pass only"),
        ([24 * n * d * d for d, n in _CASES],
         "the attention products are missing: Q·Kᵀ and A·V cost 2·n·n·D each over all heads, "
         "the 4·n²·D term that grows with the square of the sequence"),
        ([24 * n * d * d + 2 * n * n * d for d, n in _CASES],
         "you counted one attention product; there are two of 2·n²·D each: the scores Q·Kᵀ and "
         "the mix A·V"),
        ([w - 4 * n * d * d for w, (d, n) in zip(want, _CASES)],
         "the qkv projection maps D to 3D (queries, keys and values): 2·n·D·3D = 6·n·D², "
         "not 2·n·D²"),
        ([w - 2 * n * d * d for w, (d, n) in zip(want, _CASES)],
         "the output projection after attention (D → D, 2·n·D²) is missing"),
        ([w - 8 * n * d * d for w, (d, n) in zip(want, _CASES)],
         "the MLP has two layers, D → H and H → D: 2·n·D·H each, 16·n·D² together at H = 4D"),
        ([_library(n, d) for d, n in _CASES],
         "you swapped the arguments: the signature is vit_block_flops(dim, num_tokens, ...), "
         "width first"),
    )
    for values, slip in slips:
        if got == values:
            raise Hint(slip)
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
    d, n = _CASES[k]
    raise Hint(f"vit_block_flops({d}, {n}) returned {got[k]:.6g}, expected "
               f"24·n·D² + 4·n²·D = {want[k]}: count 2·m·k·n for each of qkv (D → 3D), Q·Kᵀ, "
               "A·V, the output projection and the two MLP layers")


# ViT-g's ratio 48/11 (H = 6144), a ratio whose H is whole (2.5) and one whose H is not (1.333)
_RATIO_CASES = ((1408, 2048, 48 / 11), (96, 50, 2.5), (100, 7, 1.333))


def _near(got: list[float], want: list[float]) -> bool:
    return all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(got, want))


@BLOCK.property("follows mlp_ratio: 8·n·D² + 4·n·H·D + 4·n²·D with H = int(D·mlp_ratio)")
def _block_ratio(fn):
    got = [_count(fn, d, n, r) for d, n, r in _RATIO_CASES]
    want = [_library(d, n, r) for d, n, r in _RATIO_CASES]
    if got == want:
        return
    if _near(got, [_library(d, n) for d, n, _ in _RATIO_CASES]):
        raise Hint("you ignored mlp_ratio (24·n·D² holds only for H = 4D): the MLP costs "
                   "4·n·H·D with H = int(D · mlp_ratio); ViT-g's ratio is 48/11")
    unrounded = [8 * n * d * d + 4 * n * (d * r) * d + 4 * n * n * d for d, n, r in _RATIO_CASES]
    if _near(got, unrounded):
        raise Hint("the MLP width is a whole number of units, H = int(D · mlp_ratio): with "
                   "D = 100 and mlp_ratio 1.333 that is 133, not 133.3")
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
    d, n, r = _RATIO_CASES[k]
    raise Hint(f"vit_block_flops({d}, {n}, {r:.4g}) returned {got[k]:.6g}, expected {want[k]}: "
               "8·n·D² + 4·n·H·D + 4·n²·D with H = int(D · mlp_ratio)")


@BLOCK.property("returns an exact int")
def _block_int(fn):
    out = call(fn, 768, 160)
    if not isinstance(out, numbers.Integral) or isinstance(out, bool):
        raise Hint(f"you returned a {type(out).__name__}; a FLOP count is a whole number: "
                   "return an int (H = int(dim * mlp_ratio), then integer products)")
