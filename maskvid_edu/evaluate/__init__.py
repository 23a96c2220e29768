"""How a pre-trained encoder is judged without fine-tuning it: label propagation on video
(DAVIS object masks, VIP body parts, JHMDB joints) and the scores of those benchmarks.

- :mod:`maskvid_edu.evaluate.propagation` — features of any encoder → labels carried from the
  first frame to the rest (the CRW / DINO protocol), DAVIS-layout PNG output
- :mod:`maskvid_edu.evaluate.metrics` — DAVIS J&F, VIP mIoU, JHMDB PCK, as their reference
  evaluation scripts compute them
- :mod:`maskvid_edu.evaluate.davis` — a trainer checkpoint → its encoder → DAVIS J&F by
  propagation (what ``maskvid-edu propagate`` runs)

and on action recognition, with and without training the encoder:

- :mod:`maskvid_edu.evaluate.probe` — frozen clip features, linear probe, weighted k-NN
- :mod:`maskvid_edu.evaluate.attentive_probe` — frozen tokens pooled by a learned query
  (V-JEPA's attentive probe)
- :mod:`maskvid_edu.evaluate.features` — sliding-window features of whole videos written to
  disk (one ``.npy`` per video and ``index.csv``; what ``maskvid-edu features`` runs)
- :mod:`maskvid_edu.evaluate.finetune` — VideoMAE's fine-tuning recipe (mixup/cutmix, layer
  decay, the classifier) and multi-view testing
"""

from .metrics import (
    boundary_f,
    confusion_matrix,
    davis_jf,
    davis_object_scores,
    db_statistics,
    jaccard,
    miou_from_confusion,
    pck,
    seg2bmap,
    vip_miou,
)
from .propagation import (
    DAVIS_PALETTE,
    FeatureExtractor,
    PropagationConfig,
    downsample_labels,
    heatmaps_to_keypoints,
    keypoint_heatmaps,
    labels_to_mask,
    propagate_keypoints,
    propagate_labels,
    propagate_masks,
    write_davis_masks,
)

__all__ = [
    "PropagationConfig",
    "FeatureExtractor",
    "downsample_labels",
    "labels_to_mask",
    "propagate_labels",
    "propagate_masks",
    "keypoint_heatmaps",
    "heatmaps_to_keypoints",
    "propagate_keypoints",
    "write_davis_masks",
    "DAVIS_PALETTE",
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
