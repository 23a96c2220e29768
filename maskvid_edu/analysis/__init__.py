"""What the chapters measure about methods, as library code the notebooks call.

- :mod:`~maskvid_edu.analysis.baselines`          — the copy baseline and how alike frames are
  (chapter 1)
- :mod:`~maskvid_edu.analysis.reconstruct`        — what a VideoMAE paints back, its PSNR, and the
  all-tokens design timed against the asymmetric one (chapter 2)
- :mod:`~maskvid_edu.analysis.sparse_dissipation` — mask-pattern dissipation and the agreement of
  the sparse backends (chapter 3)
- :mod:`~maskvid_edu.analysis.compare`            — a fair pre-training race between targets
  (chapter 5)
- :mod:`~maskvid_edu.analysis.data_efficiency`    — fine-tuning from a zoo encoder against random
  init over labelled-set sizes and seeds, frozen-feature probes of both (chapter 6)
- :mod:`~maskvid_edu.analysis.heldout`            — held-out clips and the reconstruction claim
  against its baselines (the zoo, chapter 2)
- :mod:`~maskvid_edu.analysis.stats`              — the one statistics helper: 95 % intervals

Import the modules by name (``from maskvid_edu.analysis import reconstruct``).
"""
