"""Pictures of masks and reconstructions, and the interactive explorers of the book.

Two layers, so that everything a reader sees can be tested:

- **render functions** take tensors and return either an RGB ``uint8`` numpy image
  (:func:`masked_frames`) or a ``matplotlib.figure.Figure`` (``render_*``). They draw nothing on
  screen, use no global pyplot state and keep images small (110 dpi by default,
  no text under 9 pt: :data:`DPI`, :data:`MIN_FONT`).
- **widget factories** (:func:`mask_explorer`) return an ``ipywidgets`` object without displaying
  it. Its view is a PNG held by an ``ipywidgets.Image``; :func:`show` puts the controls on screen
  together with that PNG as an ordinary image output, which the controls keep up to date. A
  notebook saved after running therefore holds a plain ``<img>`` of the current view, and the
  static HTML book shows it even where widgets cannot run.

Pixels: videos arrive ImageNet-normalised (the data pipeline's convention); every function here
undoes that normalisation and clamps to [0, 1] before drawing, and the figures say so. Hidden
patches are *greyed*: a hidden pixel shows ``(1 − MASK_ALPHA) · pixel + MASK_ALPHA · MASK_GREY``,
so the reader still glimpses what the encoder does not see.

One module per explorer family; ``from maskvid_edu import widgets`` gives them all:

=================  ==========================================================================
``_core``          pixels, figure helpers, PNG conversion, :func:`show`, :func:`show_source`
``masks``          masks on a clip, strategies side by side, the copy baseline (chapters 1, 2)
``reconstruction`` a pre-trained model's reconstructions, VideoMAE V2's two masks (chapter 2)
``dissipation``    mask-pattern dissipation in ConvNets (chapter 3)
``curves``         training curves of any run (chapter 4 and ``maskvid-edu pretrain``)
``ema``            EMA momentum schedules, VideoMAC's loss terms and pair reconstructions (chapter 4)
``motion``         RGB-difference targets and probe accuracy over training (chapter 5)
``propagation``    propagated instance masks over a sequence (chapter 6)
``results``        accuracy against labelled clips, with intervals (chapter 6)
``scaling``        memory against the batch, step time against the FLOPs (chapter 7)
``block_flow``     multi-block vs tube masks, flow-guided masks on a moving clip (chapter 8)
=================  ==========================================================================
"""

from ._core import (
    DPI,
    MIN_FONT,
    MASK_ALPHA,
    MASK_GREY,
    PIXELS_NOTE,
    figure_to_png,
    mask_pixels,
    masked_frames,
    show,
    show_source,
    to_rgb,
)
from .block_flow import render_flow_guided, render_mask_rows
from .curves import CURVE_NOTE, curve_metrics, render_training_curves, training_curve_viewer
from .dissipation import dissipation_viewer, render_dissipation, render_dissipation_maps
from .ema import PAIR_NOTE, render_momentum_schedules, render_pair_losses, render_pair_reconstructions
from .masks import (
    STRATEGIES,
    mask_explorer,
    render_copy_baseline,
    render_mask_grid,
    render_mask_view,
    render_strategies,
)
from .motion import (
    MOTION_NOTE,
    difference_image,
    motion_explorer,
    render_motion_targets,
    render_motion_view,
    render_probe_curves,
    render_target_views,
    still_map,
)
from .propagation import PROPAGATION_NOTE, frame_jaccard, overlay_ids, propagation_viewer, render_propagation
from .results import EFFICIENCY_NOTE, render_data_efficiency
from .scaling import render_memory_sweep, render_step_times
from .reconstruction import (
    PATTERN_NOTE,
    RECON_COLUMNS,
    reconstruction_explorer,
    reconstruction_figure,
    render_dual_masking,
    render_reconstructions,
)

__all__ = [
    # shared
    "DPI",
    "MIN_FONT",
    "MASK_GREY",
    "MASK_ALPHA",
    "PIXELS_NOTE",
    "to_rgb",
    "mask_pixels",
    "masked_frames",
    "figure_to_png",
    "show",
    "show_source",
    # masks (chapters 1, 2)
    "STRATEGIES",
    "render_mask_grid",
    "render_strategies",
    "render_mask_view",
    "render_copy_baseline",
    "mask_explorer",
    # reconstruction (chapter 2, and the pretrain command's figure)
    "PATTERN_NOTE",
    "RECON_COLUMNS",
    "render_reconstructions",
    "reconstruction_explorer",
    "render_dual_masking",
    "reconstruction_figure",
    # dissipation (chapter 3)
    "render_dissipation",
    "render_dissipation_maps",
    "dissipation_viewer",
    # training curves (every chapter that trains)
    "CURVE_NOTE",
    "curve_metrics",
    "render_training_curves",
    "training_curve_viewer",
    # EMA target networks (chapter 4)
    "PAIR_NOTE",
    "render_momentum_schedules",
    "render_pair_losses",
    "render_pair_reconstructions",
    # motion (chapter 5)
    "MOTION_NOTE",
    "difference_image",
    "still_map",
    "render_motion_targets",
    "render_target_views",
    "render_probe_curves",
    "render_motion_view",
    "motion_explorer",
    # propagation (chapter 6)
    "PROPAGATION_NOTE",
    "overlay_ids",
    "frame_jaccard",
    "render_propagation",
    "propagation_viewer",
    # results with intervals (chapter 6)
    "EFFICIENCY_NOTE",
    "render_data_efficiency",
    # what scaling costs (chapter 7)
    "render_memory_sweep",
    "render_step_times",
    # multi-block and flow-guided masks (chapter 8)
    "render_mask_rows",
    "render_flow_guided",
]
