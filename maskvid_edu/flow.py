"""Motion on the token grid: the flow that MGMAE's motion-guided masks follow.

MGMAE (Huang et al., ICCV 2023) carries a base-frame mask along the optical flow, so that a
hidden patch stays hidden where its content goes (:func:`maskvid_edu.masking.flow_guided_mask`).
That mask only needs the motion **per token and per temporal slot, rounded to whole tokens**,
so a coarse estimate is enough. Two estimators:

- :func:`block_matching_flow` — the classical estimator of video codecs: for every patch of the
  first frame of slot ``s``, try every displacement in a small window and keep the one whose
  patch in the first frame of slot ``s + 1`` differs least (mean absolute difference), with a
  small penalty on the displacement's length so that flat regions (where every candidate
  matches) stay put. Pure tensor code on the clip's device, batched, no host synchronisation:
  it runs inside the training step (``mask_type="motion_guided"``).
- :func:`opencv_flow` — OpenCV's dense DIS or Farneback optical flow on the same frame pairs,
  averaged over each patch (``pip install opencv-python-headless``; optional, host-side, for
  analysis of real clips and as a check on the block matcher).

Where the motion is known — the synthetic clips render their true flow
(``render_clip(..., flow_step=tubelet)``) — :func:`pool_pixel_flow` brings it onto the token
grid, and the estimators can be graded against it.

MGMAE itself estimates flow with a pre-trained RAFT network; none is downloaded here. Flow
layout everywhere: ``(B, t-1, 2, h, w)`` float in **token units** — channel 0 is how many token
columns the content at each token of slot ``s`` moves right by slot ``s + 1``, channel 1 how
many token rows it moves down.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["slot_frames", "block_matching_flow", "opencv_flow", "FLOW_METHODS", "token_flow",
           "pool_pixel_flow", "grade_flow"]

FLOW_METHODS = ("block", "dis", "farneback")
"""Estimators :func:`token_flow` dispatches to."""


def _check_video(video, patch: int, tubelet: int) -> tuple[int, int, int]:
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        raise ValueError(f"video must be a (B, C, T, H, W) tensor, got {getattr(video, 'shape', type(video))}")
    for name, v in (("patch", patch), ("tubelet", tubelet)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    _, _, T, H, W = video.shape
    if T % tubelet or H % patch or W % patch:
        raise ValueError(f"video of {T}×{H}×{W} does not divide into tubelet {tubelet} × patch {patch}")
    return T // tubelet, H // patch, W // patch


def slot_frames(video: torch.Tensor, tubelet: int) -> torch.Tensor:
    """The first frame of every temporal slot: ``(B, C, T, H, W)`` → ``(B, t, C, H, W)``."""
    return video[:, :, ::tubelet].transpose(1, 2)


def block_matching_flow(video: torch.Tensor, patch: int, tubelet: int, *, radius: int = 1,
                        step: int | None = None, penalty: float = 1e-3) -> torch.Tensor:
    """Token-grid flow by exhaustive block matching between consecutive slots.

    Args:
        video: ``(B, C, T, H, W)``, any normalisation (differences are compared, not values).
        patch, tubelet: the model's token size; the flow lives on its ``(t, h, w)`` grid.
        radius: the search window, in tokens: displacements up to ``radius · patch`` pixels
            along each axis.
        step: pixel spacing of the candidate displacements (default ``max(1, patch // 2)``);
            ``(2 · radius · patch / step + 1)²`` candidates are tried.
        penalty: cost added per token of displacement length, relative to the mean absolute
            difference: among equally good matches (a flat background) the shortest wins.

    Candidates whose patch would leave the frame compare against +inf and are never chosen.
    Content that leaves the frame between the two slots has no match, and its estimate is
    whatever fits best inside (any estimator from two frames is blind there); where it matters
    (:func:`~maskvid_edu.masking.flow_guided_mask`) the count is restored anyway.
    Returns float ``(B, t-1, 2, h, w)`` in token units (see the module docstring).
    """
    t, h, w = _check_video(video, patch, tubelet)
    step = max(1, patch // 2) if step is None else int(step)
    if radius < 0 or step < 1:
        raise ValueError(f"radius must be ≥ 0 and step ≥ 1, got {radius} and {step}")
    B = video.shape[0]
    if t < 2:
        return video.new_zeros(B, 0, 2, h, w, dtype=torch.float32)
    frames = slot_frames(video, tubelet).float()  # (B, t, C, H, W)
    first = frames[:, :-1].flatten(0, 1)  # (B·(t-1), C, H, W): slot s
    second = frames[:, 1:].flatten(0, 1)  # (B·(t-1), C, H, W): slot s + 1
    reach = radius * patch
    padded = F.pad(second, (reach, reach, reach, reach), value=float("inf"))  # outside = never matches
    shifts = range(-reach, reach + 1, step)  # Python ints: no values read back from the device
    H, W = first.shape[-2:]
    costs, moves = [], []
    for dy in shifts:
        for dx in shifts:
            window = padded[:, :, reach + dy: reach + dy + H, reach + dx: reach + dx + W]
            diff = (window - first).abs().mean(dim=1, keepdim=True)  # (B·(t-1), 1, H, W)
            cost = F.avg_pool2d(diff, patch)[:, 0]  # (B·(t-1), h, w); inf where the patch left the frame
            costs.append(cost + penalty * (dx * dx + dy * dy) ** 0.5 / patch)
            moves.append((dx / patch, dy / patch))
    best = torch.stack(costs).argmin(dim=0)  # (B·(t-1), h, w) index of the best candidate
    table = torch.tensor(moves, dtype=torch.float32, device=video.device)  # (K, 2)
    flow = table[best]  # (B·(t-1), h, w, 2)
    return flow.permute(0, 3, 1, 2).reshape(B, t - 1, 2, h, w)


def opencv_flow(video: torch.Tensor, patch: int, tubelet: int, *, method: str = "dis") -> torch.Tensor:
    """Token-grid flow from OpenCV's dense optical flow (``"dis"`` or ``"farneback"``).

    Each pair of slot-start frames is turned into grey levels, OpenCV computes a per-pixel flow
    from the first to the second, and the flow is averaged over every patch and divided by the
    patch size. Runs on the host (the frames are copied to the CPU). Needs
    ``opencv-python-headless``; without it, an ImportError names the install command.
    Returns float ``(B, t-1, 2, h, w)`` on ``video.device``.
    """
    if method not in ("dis", "farneback"):
        raise ValueError(f"method must be 'dis' or 'farneback', got {method!r}")
    try:
        import cv2
    except ImportError as e:  # optional dependency
        raise ImportError("opencv_flow needs OpenCV: pip install opencv-python-headless") from e
    import numpy as np

    t, h, w = _check_video(video, patch, tubelet)
    frames = slot_frames(video, tubelet).float().cpu()  # (B, t, C, H, W)
    grey = frames.mean(dim=2)  # (B, t, H, W)
    lo = grey.amin(dim=(1, 2, 3), keepdim=True)
    hi = grey.amax(dim=(1, 2, 3), keepdim=True)
    grey = ((grey - lo) / (hi - lo).clamp_min(1e-8) * 255).round().to(torch.uint8).numpy()
    if method == "dis":
        estimator = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    B = grey.shape[0]
    out = np.zeros((B, max(t - 1, 0), 2, h, w), dtype=np.float32)
    for b in range(B):
        for s in range(t - 1):
            if method == "dis":
                field = estimator.calc(grey[b, s], grey[b, s + 1], None)  # (H, W, 2) pixels
            else:
                field = cv2.calcOpticalFlowFarneback(grey[b, s], grey[b, s + 1], None,
                                                     0.5, 3, 15, 3, 5, 1.2, 0)
            pooled = field.reshape(h, patch, w, patch, 2).mean(axis=(1, 3))  # (h, w, 2)
            out[b, s] = pooled.transpose(2, 0, 1) / patch
    return torch.from_numpy(out).to(video.device)


def token_flow(video: torch.Tensor, patch: int, tubelet: int, method: str = "block") -> torch.Tensor:
    """Token-grid flow of ``video`` by ``method`` (one of :data:`FLOW_METHODS`)."""
    if method == "block":
        return block_matching_flow(video, patch, tubelet)
    if method in ("dis", "farneback"):
        return opencv_flow(video, patch, tubelet, method=method)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def pool_pixel_flow(pixel_flow: torch.Tensor, patch: int, tubelet: int) -> torch.Tensor:
    """A per-pixel flow brought onto the token grid, in this module's layout.

    Args:
        pixel_flow: ``(B, T - tubelet, 2, H, W)`` pixels, the motion from every frame ``f`` to
            frame ``f + tubelet`` (the synthetic clips' ``flow`` rendered with
            ``flow_step=tubelet``, stacked over a batch).
        patch, tubelet: the model's token size.

    The flow of slot ``s`` is the one from its first frame (``s · tubelet``) to the next slot's
    first frame, the pair the estimators compare; it is averaged over every patch and divided
    by the patch size. Returns float ``(B, t-1, 2, h, w)`` in token units.
    """
    if not isinstance(pixel_flow, torch.Tensor) or pixel_flow.dim() != 5 or pixel_flow.shape[2] != 2:
        raise ValueError(f"pixel_flow must be a (B, T-tubelet, 2, H, W) tensor, got "
                         f"{getattr(pixel_flow, 'shape', type(pixel_flow))}")
    for name, v in (("patch", patch), ("tubelet", tubelet)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    B, pairs, _, H, W = pixel_flow.shape
    if (pairs + tubelet) % tubelet or H % patch or W % patch:
        raise ValueError(f"pixel flow of {pairs} frame pairs at {H}×{W} does not come from a clip of "
                         f"whole tubelets of {tubelet} and patches of {patch} (expected T - tubelet pairs)")
    starts = pixel_flow[:, ::tubelet].float()  # (B, t-1, 2, H, W): slot start → next slot start
    pooled = F.avg_pool2d(starts.flatten(0, 1), patch)  # (B·(t-1), 2, h, w) pixels
    return (pooled / patch).reshape(B, starts.shape[1], 2, H // patch, W // patch)


def grade_flow(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far a token-grid flow estimate is from the truth, per clip.

    Args:
        estimate, truth: ``(B, t-1, 2, h, w)`` in token units (this module's layout).

    Returns ``{"endpoint_error": (B,), "rounded_agreement": (B,)}``: the mean length of the
    difference vector over a clip's tokens and slots (the usual end-point error, in tokens),
    and the share of them whose motion **rounded to whole tokens** is right — what
    :func:`~maskvid_edu.masking.flow_guided_mask` uses, so the number that decides the mask.
    """
    if not isinstance(estimate, torch.Tensor) or not isinstance(truth, torch.Tensor) or \
            estimate.shape != truth.shape or estimate.dim() != 5 or estimate.shape[2] != 2:
        raise ValueError("estimate and truth must be (B, t-1, 2, h, w) tensors of one shape, got "
                         f"{getattr(estimate, 'shape', type(estimate))} and {getattr(truth, 'shape', type(truth))}")
    error = (estimate.float() - truth.float()).norm(dim=2)  # (B, t-1, h, w) tokens
    agree = (estimate.round() == truth.round()).all(dim=2).float()  # (B, t-1, h, w)
    return {"endpoint_error": error.flatten(1).mean(1), "rounded_agreement": agree.flatten(1).mean(1)}
