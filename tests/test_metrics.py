"""DAVIS J&F, VIP mIoU and JHMDB PCK: hand-computed cases, and agreement with the reference
evaluation code's formulas rewritten literally below."""

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from maskvid_edu.evaluate import metrics as M

# --------------------------------------------------------------------------------------------
# The davis2017-evaluation toolkit, literally (cv2.dilate → scipy binary_dilation with the same
# disk: both grow a binary image by the structuring element and add nothing at the border)
# --------------------------------------------------------------------------------------------


def ref_db_eval_iou(annotation, segmentation, void_pixels=None):
    annotation = annotation.astype(bool)
    segmentation = segmentation.astype(bool)
    void_pixels = np.zeros_like(segmentation) if void_pixels is None else void_pixels.astype(bool)
    inters = np.sum((segmentation & annotation) & np.logical_not(void_pixels), axis=(-2, -1))
    union = np.sum((segmentation | annotation) & np.logical_not(void_pixels), axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inters / union
    if j.ndim == 0:
        j = 1 if np.isclose(union, 0) else j
    else:
        j[np.isclose(union, 0)] = 1
    return j


def ref_seg2bmap(seg):
    seg = seg.astype(bool)
    seg[seg > 0] = 1
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def ref_f_measure(foreground_mask, gt_mask, void_pixels=None, bound_th=0.008):
    void_pixels = np.zeros_like(foreground_mask).astype(bool) if void_pixels is None else void_pixels.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = ref_seg2bmap(foreground_mask * np.logical_not(void_pixels))
    gt_boundary = ref_seg2bmap(gt_mask * np.logical_not(void_pixels))
    fg_dil = ndimage.binary_dilation(fg_boundary.astype(np.uint8), disk(bound_pix))
    gt_dil = ndimage.binary_dilation(gt_boundary.astype(np.uint8), disk(bound_pix))
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_db_eval_boundary(annotation, segmentation, void_pixels=None, bound_th=0.008):
    f_res = np.zeros(annotation.shape[0])
    for frame_id in range(annotation.shape[0]):
        vp = None if void_pixels is None else void_pixels[frame_id]
        f_res[frame_id] = ref_f_measure(segmentation[frame_id], annotation[frame_id], vp, bound_th=bound_th)
    return f_res


def ref_db_statistics(per_frame_values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M_ = np.nanmean(per_frame_values)
        O = np.nanmean(per_frame_values > 0.5)
    N_bins = 4
    ids = np.round(np.linspace(1, len(per_frame_values), N_bins + 1) + 1e-10) - 1
    ids = ids.astype(np.uint8)
    D_bins = [per_frame_values[ids[i] : ids[i + 1] + 1] for i in range(0, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(D_bins[0]) - np.nanmean(D_bins[3])
    return M_, O, D


def ref_separate(masks, num_objects):
    """get_all_masks(separate_objects_masks=True) / Results.read_masks."""
    tmp = np.ones((num_objects, *masks.shape))
    tmp = tmp * np.arange(1, num_objects + 1)[:, None, None, None]
    return tmp == masks[None, ...]


def ref_evaluate(sequences):
    """DAVISEvaluation.evaluate (semi-supervised) + evaluation_method.py's final mean."""
    J, F = {"M": [], "R": [], "D": []}, {"M": [], "R": [], "D": []}
    for gt, res in sequences.values():
        gt = np.where(gt == 255, 0, gt)
        n = int(np.max(gt[0]))
        all_gt, all_res = ref_separate(gt, n)[:, 1:-1], ref_separate(res, n)[:, 1:-1]
        for ii in range(n):
            j = ref_db_eval_iou(all_gt[ii], all_res[ii])
            f = ref_db_eval_boundary(all_gt[ii], all_res[ii])
            for store, values in ((J, j), (F, f)):
                m, r, d = ref_db_statistics(values)
                store["M"].append(m)
                store["R"].append(r)
                store["D"].append(d)
    return {"J&F-Mean": (np.mean(J["M"]) + np.mean(F["M"])) / 2, "J-Mean": np.mean(J["M"]),
            "J-Recall": np.mean(J["R"]), "J-Decay": np.mean(J["D"]), "F-Mean": np.mean(F["M"]),
            "F-Recall": np.mean(F["R"]), "F-Decay": np.mean(F["D"])}


def blobs(T, H, W, n_obj, seed, jitter=0):
    """Random overlapping rectangles and discs per frame: ids 1..n_obj (later ones on top)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((T, H, W), np.int64)
    yy, xx = np.mgrid[:H, :W]
    for t in range(T):
        for k in range(1, n_obj + 1):
            cy, cx = rng.integers(8, H - 8), rng.integers(8, W - 8)
            if rng.random() < 0.5:
                r = rng.integers(4, 12)
                out[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
            else:
                dy0, dy1, dx0, dx1 = rng.integers(3, 9), rng.integers(3, 9), rng.integers(3, 12), rng.integers(3, 12)
                out[t][cy - dy0 : cy + dy1, cx - dx0 : cx + dx1] = k
    return out


# --------------------------------------------------------------------------------------------
# J
# --------------------------------------------------------------------------------------------


def square(shift=0, size=100, lo=20, hi=60):
    m = np.zeros((size, size), bool)
    m[lo:hi, lo + shift : hi + shift] = True
    return m


def test_jaccard_by_hand():
    gt = np.zeros((6, 6), bool)
    gt[1:5, 1:5] = True  # 16 px
    pred = np.zeros_like(gt)
    pred[1:5, 2:6] = True  # shifted one column: 12 shared, union 20
    assert M.jaccard(gt, pred) == pytest.approx(12 / 20)
    empty = np.zeros_like(gt)
    assert M.jaccard(empty, empty) == 1.0  # nothing to find, nothing found
    assert M.jaccard(empty, pred) == 0.0 and M.jaccard(gt, empty) == 0.0
    void = np.zeros_like(gt)
    void[:, 5] = True  # ignoring the column only the prediction covers: 12 / 16
    assert M.jaccard(gt, pred, void) == pytest.approx(12 / 16)
    stack = M.jaccard(np.stack([gt, empty]), np.stack([pred, empty]))
    assert stack.shape == (2,) and stack.tolist() == pytest.approx([0.6, 1.0])


# --------------------------------------------------------------------------------------------
# F
# --------------------------------------------------------------------------------------------


def test_seg2bmap_of_a_square_is_the_outline_shifted_half_a_pixel():
    b = M.seg2bmap(square())  # square rows/cols 20..59
    assert b.sum() == 4 * 41 - 4  # outline of rows/cols 19..59: 160 pixels
    assert b[19, 19] and b[59, 59] and b[19, 59] and b[59, 19]
    assert not b[20:59, 20:59].any() and not b[60:, :].any()
    assert np.array_equal(b, ref_seg2bmap(square()))


def test_boundary_f_tolerance_by_hand():
    # 100×100 frame: bound_pix = ceil(0.008 · √(100² + 100²)) = ceil(1.13) = 2 pixels
    assert M.boundary_f(square(), square(2)) == 1.0  # every edge within 2 px
    # Shift by 3: of the 160 outline pixels of the prediction, the top and bottom rows match
    # but for their far corner (2 × 40), the left column only next to the top and bottom rows
    # (4 more), the right column never: 84 / 160 for precision, and recall by symmetry.
    assert M.boundary_f(square(), square(3)) == pytest.approx(84 / 160)
    assert M.boundary_f(square(), square(3), bound_th=3) == 1.0  # bound_th >= 1 is in pixels
    empty = np.zeros((100, 100), bool)
    assert M.boundary_f(empty, empty) == 1.0
    assert M.boundary_f(square(), empty) == 0.0  # P = 1, R = 0
    assert M.boundary_f(empty, square()) == 0.0  # P = 0, R = 1


def test_disk_dilation_equals_skimage_disk():
    rng = np.random.default_rng(0)
    for r in range(1, 9):
        b = rng.random((40, 57)) < 0.01
        ref = ndimage.binary_dilation(b, disk(r))
        assert np.array_equal(M._dilate_disk(b, float(r)), ref), r


def test_j_and_f_equal_the_toolkit_on_a_two_frame_two_object_case():
    gt = blobs(2, 48, 64, 2, seed=0)
    pred = blobs(2, 48, 64, 2, seed=1)
    pred[0] = np.where(np.roll(gt[0], (1, 2), axis=(0, 1)) > 0, np.roll(gt[0], (1, 2), axis=(0, 1)), pred[0])
    J, F = M.davis_object_scores(gt, pred, exclude_first_last=False)
    assert J.shape == F.shape == (2, 2)
    for i in range(2):
        g, p = gt == i + 1, pred == i + 1
        assert np.allclose(J[i], ref_db_eval_iou(g, p))
        assert np.allclose(F[i], ref_db_eval_boundary(g, p))
    assert ((0 < J) & (J < 1)).any() and ((0 < F) & (F < 1)).any()  # not only trivial cases
    void = np.zeros_like(gt, bool)
    void[:, :10] = True
    g, p = gt == 1, pred == 1
    assert np.allclose(M.jaccard(g, p, void), ref_db_eval_iou(g, p, void))
    assert np.allclose(M.boundary_f(g, p, void), ref_db_eval_boundary(g, p, void))


def test_db_statistics_equal_the_toolkit():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 5, 8, 13, 40):
        v = rng.random(n)
        assert np.allclose(M.db_statistics(v), ref_db_statistics(v), equal_nan=True), n
    # decay by hand: 9 frames, bins [0..2], [2..4], [4..6], [6..8] → mean(v[0:3]) − mean(v[6:9])
    v = np.arange(9, dtype=float)[::-1]
    assert M.db_statistics(v)[2] == pytest.approx(7.0 - 1.0)
    assert M.db_statistics(np.array([0.2, 0.6, 0.9]))[1] == pytest.approx(2 / 3)


def test_davis_jf_equals_the_toolkit_and_drops_first_and_last_frames():
    seqs = {}
    for s, (n_obj, T) in enumerate([(2, 6), (1, 5), (3, 7)]):
        gt = blobs(T, 40, 56, n_obj, seed=10 + s)
        pred = gt.copy()
        pred[2:] = blobs(T - 2, 40, 56, n_obj, seed=20 + s)  # wrong from frame 2 on
        pred[1] = np.roll(gt[1], 2, axis=1)  # nearly right at frame 1
        gt[-1, :5, :5] = 255  # void, read as background like the toolkit does
        seqs[f"seq{s}"] = (gt, pred)
    ours, ref = M.davis_jf(seqs), ref_evaluate(seqs)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert len(ours["per_object"]) == 2 + 1 + 3 and "seq2_3" in ours["per_object"]
    # the first and last frames do not count: making them perfect changes nothing
    perfect_ends = {k: (g, np.concatenate([g[:1], p[1:-1], np.where(g[-1:] == 255, 0, g[-1:])]))
                    for k, (g, p) in seqs.items()}
    assert M.davis_jf(perfect_ends)["J&F-Mean"] == pytest.approx(ours["J&F-Mean"])
    everything = M.davis_jf(seqs, exclude_first_last=False)["J&F-Mean"]
    assert everything != pytest.approx(ours["J&F-Mean"])


def test_davis_object_ids_follow_the_first_frame():
    gt = np.zeros((4, 10, 10), np.int64)
    gt[:, 2:5, 2:5] = 1
    gt[:, 6:9, 6:9] = 2
    pred = gt.copy()
    pred[1:, 6:9, 6:9] = 0  # object 2 lost in the prediction: it scores 0, it is not dropped
    J, F = M.davis_object_scores(gt, pred)
    assert J.shape == (2, 2) and np.all(J[0] == 1) and np.all(J[1] == 0)
    assert np.all(F[1] == 0)


# --------------------------------------------------------------------------------------------
# VIP mIoU
# --------------------------------------------------------------------------------------------


def test_confusion_and_miou_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 3]])  # 255 pixels are ignored whatever is predicted
    conf = M.confusion_matrix(gt, pred, 4)
    assert conf.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    miou, iou = M.miou_from_confusion(conf)
    # class 0: TP 1, FP 1, FN 1 → 1/3; class 1: 2/3; class 2: 1/2; class 3 absent → nan, skipped
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and np.isnan(iou[3])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="pred"):
        M.confusion_matrix(gt, np.where(gt == 2, 4, pred), 4)  # id 4 on a counted pixel


def test_vip_miou_accumulates_one_matrix_over_frames():
    rng = np.random.default_rng(0)
    seqs = [(rng.integers(0, 20, (3, 16, 16)), rng.integers(0, 20, (3, 16, 16))) for _ in range(2)]
    result = M.vip_miou(seqs)
    # the ATEN / CRW script: fast_hist over all frames, IoU = diag / (rows + cols − diag)
    hist = np.zeros((20, 20))
    for g, p in seqs:
        for gf, pf in zip(g, p):
            k = (gf >= 0) & (gf < 20)
            hist += np.bincount(20 * gf[k].astype(int) + pf[k], minlength=400).reshape(20, 20)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    assert result["mIoU"] == pytest.approx(np.nanmean(iu))
    assert np.array_equal(result["confusion"], hist)
    perfect = M.vip_miou([(g, g) for g, _ in seqs])
    assert perfect["mIoU"] == 1.0


# --------------------------------------------------------------------------------------------
# JHMDB PCK
# --------------------------------------------------------------------------------------------


def test_pck_by_hand():
    # 3 joints at the corners of a 30 × 40 box: diagonal 50, size 0.6 · 50 = 30 px,
    # so α = 0.1 allows 3 px and α = 0.2 allows 6 px.
    gt = np.array([[[10.0, 10.0], [40.0, 10.0], [10.0, 50.0]]] * 3)  # (T=3, J=3, 2)
    pred = gt.copy()
    pred[1] += [[2.9, 0.0], [0.0, 3.1], [0.0, 0.0]]  # correct / wrong at 0.1 / correct
    pred[2] += [[0.0, 5.9], [6.2, 0.0], [0.0, 0.0]]  # wrong at 0.1, right at 0.2 / wrong / correct
    pred[0] += 100  # frame 0 is given: never scored
    r = M.pck(pred, gt, alphas=(0.1, 0.2))
    assert r["per_joint"][0.1].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert r[0.1] == pytest.approx(0.5)
    assert r["per_joint"][0.2].tolist() == pytest.approx([1.0, 0.5, 1.0])
    assert r[0.2] == pytest.approx(2.5 / 3)
    # max(box side) = 40 as the size instead: α = 0.1 allows 4 px
    side = M.pck(pred, gt, alphas=(0.1,), normalizer="max_side")
    assert side["per_joint"][0.1].tolist() == pytest.approx([0.5, 0.5, 1.0])


def test_pck_mean_is_over_joints_and_skips_lost_joints():
    gt = np.zeros((3, 3, 2))
    gt[:, 0] = [5.0, 5.0]
    gt[:, 1] = [30.0, 40.0]
    gt[:, 2] = [30.0, 0.0]  # box 25 × 40 → size 0.6 · 47.2 = 28.3 px
    pred = gt.copy()
    pred[1, 0] = [-1.0, -1.0]  # joint 0 lost at frame 1: not counted (reference convention)
    pred[2, 1] += [10.0, 0.0]  # joint 1 wrong at frame 2 (10 / 28.3 > 0.1)
    r = M.pck([pred, pred], [gt, gt], alphas=(0.1,))  # two identical videos
    # joint 0: frame 2 only → 1; joint 1: right at frame 1, wrong at 2 → 1/2; joint 2 → 1
    assert r["per_joint"][0.1].tolist() == pytest.approx([1.0, 0.5, 1.0])
    assert r[0.1] == pytest.approx(2.5 / 3)  # mean over joints, not 8/10 over entries
    r2 = M.pck(pred, gt, alphas=(0.1,), visible=np.ones((3, 3), bool))  # explicit visibility
    assert r2["per_joint"][0.1][0] == pytest.approx(0.5)  # joint 0 now counts, wrong at frame 1


def test_pck_reference_formula_on_random_tracks():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(0, 200, (5, 15, 2)) for _ in range(3)]
    preds = [g + rng.normal(0, 8, g.shape) for g in gts]
    preds[1][2, 4] = -1  # a lost joint
    # eval_pck.py, with (2, J, T) arrays turned into our (T, J, 2)
    dist = {j: [] for j in range(15)}
    for p, g in zip(preds, gts):
        for k in range(1, p.shape[0]):
            vis = p[k, :, 0] >= 0
            lo, hi = g[k][vis].min(0), g[k][vis].max(0)
            box = 0.6 * np.linalg.norm(hi - lo)
            for j in range(15):
                if vis[j]:
                    dist[j].append(np.linalg.norm(p[k, j] - g[k, j]) / box)
    for a in (0.1, 0.2):
        per = [100.0 * np.sum(np.array(dist[j]) <= a) / len(dist[j]) for j in range(15)]
        assert M.pck(preds, gts, alphas=(a,))[a] == pytest.approx(np.mean(per) / 100)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="shape"):
        M.jaccard(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="normalizer"):
        M.pck(np.zeros((2, 1, 2)), np.zeros((2, 1, 2)), normalizer="torso")
    with pytest.raises(ValueError, match="videos"):
        M.pck([np.zeros((2, 1, 2))], [np.zeros((2, 1, 2))] * 2)
    with pytest.raises(ValueError, match="object"):
        M.davis_jf({"empty": (np.zeros((3, 4, 4), np.int64), np.zeros((3, 4, 4), np.int64))})
    assert math.isnan(M.db_statistics(np.array([]))[0])
