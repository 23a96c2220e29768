"""The scores of the three propagation benchmarks: DAVIS J&F, VIP mIoU, JHMDB PCK.

Each follows its reference evaluation code, so numbers computed here can sit next to
published ones:

- **DAVIS 2017** (``davis2017-evaluation``): per object and per frame, the region similarity
  ``J`` (IoU) and the boundary F-measure ``F``; each object's scores are averaged over the
  frames *between the first and the last* (the semi-supervised task drops both: the first is
  given, the last is not annotated in the challenge sets); ``J-Mean`` and ``F-Mean`` average
  the objects of all sequences; ``J&F-Mean`` is their average.
- **VIP** (the ATEN / CRW script): one 20 × 20 confusion matrix accumulated over every frame of
  every sequence, IoU per class from it, mean over the classes that occur.
- **JHMDB** (TimeCycle / UVC / CRW ``eval_pck.py``): a joint counts as found when its distance
  to the truth is at most ``α`` times a person size; the size is ``0.6 ×`` the diagonal of the
  bounding box of the joints; PCK is computed per joint over all frames after the first,
  then averaged over joints.

All scores are fractions in ``[0, 1]`` (papers print them ×100).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "jaccard",
    "seg2bmap",
    "boundary_f",
    "db_statistics",
    "davis_object_scores",
    "davis_jf",
    "confusion_matrix",
    "miou_from_confusion",
    "vip_miou",
    "pck",
]


def _np(x, name: str) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got dtype object")
    return arr


# --------------------------------------------------------------------------------------------
# DAVIS: J (region) and F (boundary)
# --------------------------------------------------------------------------------------------


def jaccard(gt, pred, void=None):
    """Region similarity ``J = |gt ∩ pred| / |gt ∪ pred|`` per frame (``db_eval_iou``).

    Args:
        gt, pred: binary masks ``(..., H, W)`` of one object.
        void: optional ``(..., H, W)`` pixels to ignore.

    Returns:
        ``J`` with the leading shape (a float for a single frame). Both masks empty → 1
        (the toolkit's convention: nothing to find, nothing found).
    """
    gt, pred = _np(gt, "gt").astype(bool), _np(pred, "pred").astype(bool)
    if gt.shape != pred.shape or gt.ndim < 2:
        raise ValueError(f"gt and pred must be (..., H, W) of one shape, got {gt.shape} and {pred.shape}")
    keep = np.ones_like(gt) if void is None else ~_np(void, "void").astype(bool)
    if keep.shape != gt.shape:
        raise ValueError(f"void must have shape {gt.shape}, got {keep.shape}")
    inter = ((gt & pred) & keep).sum(axis=(-2, -1))
    union = ((gt | pred) & keep).sum(axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def seg2bmap(seg) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask (Martin et al.'s ``seg2bmap``).

    A pixel is on the boundary when it differs from its right, lower or lower-right
    neighbour, so the boundary sits half a pixel towards the origin from the true edge. On
    the last row only the right neighbour counts, on the last column only the lower one, and
    the bottom-right pixel is never a boundary.

    Args:
        seg: ``(H, W)`` mask (non-zero = inside).

    Returns:
        ``(H, W)`` bool.
    """
    seg = _np(seg, "seg").astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"seg must be (H, W), got shape {seg.shape}")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _dilate_disk(b: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation of ``b`` by a disk of ``radius`` (offsets with ``dy² + dx² ≤ r²``).

    For the integer radii the toolkit uses this is the same set as
    ``cv2.dilate(b, skimage.morphology.disk(r))``, computed with an exact Euclidean distance
    transform (fast for the large radii of 480p frames).
    """
    if not b.any():
        return np.zeros_like(b)
    d2 = ndimage.distance_transform_edt(~b) ** 2  # squared distance to the nearest True pixel
    return np.rint(d2) <= radius * radius + 1e-9


def _f_single(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None, bound_th: float) -> float:
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    keep = np.ones_like(gt) if void is None else ~void
    fg_b = seg2bmap(pred & keep)
    gt_b = seg2bmap(gt & keep)
    fg_dil = _dilate_disk(fg_b, bound_pix)
    gt_dil = _dilate_disk(gt_b, bound_pix)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt == 0:
        precision = recall = 1.0
    elif n_fg == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = float((fg_b & gt_dil).sum()) / n_fg
        recall = float((gt_b & fg_dil).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_f(gt, pred, void=None, bound_th: float = 0.008):
    """Boundary F-measure per frame (``db_eval_boundary`` / ``f_measure``).

    Both masks are reduced to their :func:`seg2bmap` boundaries; a boundary pixel of one
    counts as matched when a boundary pixel of the other lies within a disk of
    ``bound_pix = ceil(bound_th · √(H² + W²))`` pixels (``bound_th ≥ 1`` is taken as pixels
    directly) — 8 px on a 480 × 854 DAVIS frame. Precision = matched predicted / predicted
    boundary pixels, recall = matched true / true, ``F = 2PR / (P + R)``. Conventions: no
    boundary in either → 1; none predicted but some true → P = 1, R = 0; the reverse →
    P = 0, R = 1.

    Args:
        gt, pred: binary ``(H, W)`` or ``(T, H, W)`` masks of one object.
        void: optional pixels to ignore (removed from both masks before the boundaries).

    Returns:
        ``F`` (float) or ``(T,)`` array.
    """
    gt, pred = _np(gt, "gt").astype(bool), _np(pred, "pred").astype(bool)
    if gt.shape != pred.shape or gt.ndim not in (2, 3):
        raise ValueError(f"gt and pred must be (H, W) or (T, H, W) of one shape, got {gt.shape} and {pred.shape}")
    v = None if void is None else _np(void, "void").astype(bool)
    if v is not None and v.shape != gt.shape:
        raise ValueError(f"void must have shape {gt.shape}, got {v.shape}")
    if gt.ndim == 2:
        return _f_single(gt, pred, v, bound_th)
    return np.array([_f_single(gt[t], pred[t], None if v is None else v[t], bound_th) for t in range(gt.shape[0])])


def db_statistics(per_frame) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame scores (the toolkit's ``db_statistics``).

    ``M`` = nan-mean; ``O`` (recall) = fraction of frames scoring above 0.5; ``D`` (decay) =
    mean of the first quarter minus mean of the last quarter, quarters cut at
    ``round(linspace(1, n, 5)) − 1`` with each bin including its right edge.
    """
    v = np.asarray(per_frame, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"per_frame must be 1-D, got shape {v.shape}")
    with np.errstate(invalid="ignore"), _quiet():
        m = float(np.nanmean(v)) if v.size else float("nan")
        o = float(np.nanmean(v > 0.5)) if v.size else float("nan")
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
        bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
        d = float(np.nanmean(bins[0]) - np.nanmean(bins[3])) if v.size else float("nan")
    return m, o, d


class _quiet:
    """Silence numpy's 'Mean of empty slice' warnings, as the toolkit does."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def davis_object_scores(gt, pred, *, num_objects: int | None = None, exclude_first_last: bool = True,
                        bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame ``J`` and ``F`` of one sequence (semi-supervised protocol).

    Args:
        gt: ``(T, H, W)`` integer ids (255 = void in DAVIS files; the toolkit reads it as
            background, and so does this function).
        pred: ``(T, H, W)`` predicted ids.
        num_objects: default: the largest id in ``gt``'s first frame (the toolkit's rule).
        exclude_first_last: drop frames 0 and ``T − 1`` (the toolkit's semi-supervised
            evaluation); a 2-frame sequence then has no scored frame.

    Returns:
        ``J, F``: ``(num_objects, T')`` arrays, object ``i`` being id ``i + 1``.

    Unlike the toolkit, which stops with an error when the predictions' largest id differs
    from the annotation's, an object missing from the predictions simply scores 0 and ids
    above ``num_objects`` count as background.
    """
    gt, pred = _np(gt, "gt"), _np(pred, "pred")
    if gt.ndim != 3 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must be (T, H, W) of one shape, got {gt.shape} and {pred.shape}")
    gt = np.where(gt == 255, 0, gt).astype(np.int64)
    pred = pred.astype(np.int64)
    n_obj = int(gt[0].max()) if num_objects is None else int(num_objects)
    frames = slice(1, -1) if exclude_first_last else slice(None)
    gt, pred = gt[frames], pred[frames]
    J = np.zeros((n_obj, gt.shape[0]))
    Fm = np.zeros((n_obj, gt.shape[0]))
    for i in range(n_obj):
        g, p = gt == i + 1, pred == i + 1
        J[i] = jaccard(g, p)
        Fm[i] = boundary_f(g, p, bound_th=bound_th)
    return J, Fm


def davis_jf(sequences: Mapping[str, tuple] | Iterable[tuple], *, exclude_first_last: bool = True,
             bound_th: float = 0.008) -> dict:
    """The DAVIS table: ``J&F-Mean``, ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-…``.

    Args:
        sequences: ``{name: (gt, pred)}`` (or an iterable of ``(name, gt, pred)``), each
            ``(T, H, W)`` integer ids.

    Returns:
        A dict with the seven global numbers (means over every object of every sequence),
        and ``"per_object"``: ``{f"{name}_{i}": {"J": J-mean, "F": F-mean}}``.
    """
    items = sequences.items() if isinstance(sequences, Mapping) else ((n, (g, p)) for n, g, p in sequences)
    stats = {"J": [], "F": []}
    per_object = {}
    for name, (gt, pred) in items:
        J, Fm = davis_object_scores(gt, pred, exclude_first_last=exclude_first_last, bound_th=bound_th)
        for i in range(J.shape[0]):
            sj, sf = db_statistics(J[i]), db_statistics(Fm[i])
            stats["J"].append(sj)
            stats["F"].append(sf)
            per_object[f"{name}_{i + 1}"] = {"J": sj[0], "F": sf[0]}
    if not stats["J"]:
        raise ValueError("sequences holds no annotated object (the first frame of every gt is empty)")
    sj, sf = np.array(stats["J"]), np.array(stats["F"])  # (objects, 3): M, O, D
    j_mean, f_mean = float(np.mean(sj[:, 0])), float(np.mean(sf[:, 0]))
    return {
        "J&F-Mean": (j_mean + f_mean) / 2,
        "J-Mean": j_mean,
        "J-Recall": float(np.mean(sj[:, 1])),
        "J-Decay": float(np.mean(sj[:, 2])),
        "F-Mean": f_mean,
        "F-Recall": float(np.mean(sf[:, 1])),
        "F-Decay": float(np.mean(sf[:, 2])),
        "per_object": per_object,
    }


# --------------------------------------------------------------------------------------------
# VIP: mIoU over part classes
# --------------------------------------------------------------------------------------------


def confusion_matrix(gt, pred, num_classes: int) -> np.ndarray:
    """``(n, n)`` int64 counts, rows = true class, columns = predicted class.

    Pixels whose true id is outside ``[0, n)`` (e.g. 255, void) are ignored; a predicted id
    outside ``[0, n)`` on a counted pixel is an error.
    """
    gt, pred = _np(gt, "gt").astype(np.int64), _np(pred, "pred").astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have one shape, got {gt.shape} and {pred.shape}")
    n = int(num_classes)
    keep = (gt >= 0) & (gt < n)
    g, p = gt[keep], pred[keep]
    if p.size and (p.min() < 0 or p.max() >= n):
        raise ValueError(f"pred holds ids outside [0, {n}): [{p.min()}, {p.max()}]")
    return np.bincount(n * g + p, minlength=n * n).reshape(n, n)


def miou_from_confusion(conf) -> tuple[float, np.ndarray]:
    """IoU per class ``TP / (TP + FP + FN)`` and their mean over classes seen in truth or prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    with _quiet():
        return float(np.nanmean(iou)), iou


def vip_miou(pairs: Iterable[tuple], num_classes: int = 20) -> dict:
    """VIP body-part propagation: mIoU from one confusion matrix over all frames.

    Args:
        pairs: ``(gt, pred)`` id maps — single frames ``(H, W)`` or sequences ``(T, H, W)``.
        num_classes: 20 for VIP (background + 19 parts).

    Returns:
        ``{"mIoU": float, "IoU": (num_classes,) array (nan for an absent class),
        "confusion": (n, n) array}``.
    """
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for gt, pred in pairs:
        conf += confusion_matrix(gt, pred, num_classes)
    m, iou = miou_from_confusion(conf)
    return {"mIoU": m, "IoU": iou, "confusion": conf}


# --------------------------------------------------------------------------------------------
# JHMDB: PCK
# --------------------------------------------------------------------------------------------


def pck(pred: Sequence | np.ndarray, gt: Sequence | np.ndarray, alphas: Sequence[float] = (0.1, 0.2), *,
        visible: Sequence | None = None, normalizer: str = "diagonal", skip_first: bool = True) -> dict:
    """Percentage of correct keypoints over a set of videos (CRW / UVC ``eval_pck.py``).

    For every video, frame ``k`` (from the second on) and joint ``j`` that is *visible*,
    ``d = ‖pred − gt‖ / s_k`` with the person size

    - ``"diagonal"`` (reference): ``s_k = 0.6 · ‖(max − min)‖``, the diagonal of the box
      around frame ``k``'s visible true joints;
    - ``"max_side"``: ``s_k = max(box width, box height)``.

    ``PCK_j(α)`` = fraction of joint ``j``'s entries with ``d ≤ α``; ``PCK(α)`` = mean over
    joints (not over all entries). A frame with a single visible joint has size 0, and its
    entry counts as a miss (the reference divides by zero there).

    Args:
        pred, gt: one ``(T, J, 2)`` array of ``(x, y)`` pixels, or a list of them (videos).
        visible: matching ``(T, J)`` bools; default, as in the reference: a joint is visible
            when its prediction is not negative (propagation marks a vanished joint with −1).
        skip_first: leave out frame 0 (it is given).

    Returns:
        ``{alpha: PCK, ..., "per_joint": {alpha: (J,) array}}``.
    """
    def videos(x, name: str, single_ndim: int) -> list[np.ndarray]:
        if isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == single_ndim:
            return [_np(x, name)]  # one video
        return [_np(v, name) for v in x]

    preds, gts = videos(pred, "pred", 3), videos(gt, "gt", 3)
    if len(preds) != len(gts):
        raise ValueError(f"pred has {len(preds)} videos, gt has {len(gts)}")
    if normalizer not in ("diagonal", "max_side"):
        raise ValueError(f"normalizer must be 'diagonal' or 'max_side', got {normalizer!r}")
    vis_list = None if visible is None else videos(visible, "visible", 2)
    if vis_list is not None and len(vis_list) != len(preds):
        raise ValueError(f"visible has {len(vis_list)} videos, pred has {len(preds)}")
    dists: list[list[float]] = []
    for v, (p, g) in enumerate(zip(preds, gts)):
        p, g = p.astype(np.float64), g.astype(np.float64)
        if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
            raise ValueError(f"video {v}: pred and gt must both be (T, J, 2), got {p.shape} and {g.shape}")
        vis = (p[..., 0] >= 0) if vis_list is None else vis_list[v].astype(bool)
        if vis.shape != p.shape[:2]:
            raise ValueError(f"video {v}: visible must be (T, J) = {p.shape[:2]}, got {vis.shape}")
        if not dists:
            dists = [[] for _ in range(p.shape[1])]
        if len(dists) != p.shape[1]:
            raise ValueError(f"video {v} has {p.shape[1]} joints, earlier videos {len(dists)}")
        for k in range(1 if skip_first else 0, p.shape[0]):
            if not vis[k].any():
                continue
            pts = g[k][vis[k]]  # (J_vis, 2)
            span = pts.max(0) - pts.min(0)
            size = 0.6 * float(np.hypot(*span)) if normalizer == "diagonal" else float(span.max())
            for j in np.flatnonzero(vis[k]):
                d = float(np.hypot(*(p[k, j] - g[k, j])))
                with np.errstate(divide="ignore", invalid="ignore"):
                    dists[j].append(np.float64(d) / np.float64(size))
    if not dists or not any(dists):
        raise ValueError("no visible joint to score")
    result: dict = {"per_joint": {}}
    for a in alphas:
        per_joint = np.array([np.mean(np.asarray(dj) <= a) if dj else np.nan for dj in dists])
        result["per_joint"][a] = per_joint
        result[a] = float(np.nanmean(per_joint))
    return result
