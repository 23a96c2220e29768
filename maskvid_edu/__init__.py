"""maskvid_edu: masked video modeling, taught and runnable.

The library behind the course in ``book/``. Each file holds one concept, and the packages read
top to bottom in the direction data flows (a module imports only what stands above it):

- :mod:`maskvid_edu.data`       — decoding, sampling, augmentation, datasets, list files, wrappers
- :mod:`maskvid_edu.masking`    — which tokens are hidden (tube, random, frame, running cell, pairs)
- :mod:`maskvid_edu.patches`, :mod:`~maskvid_edu.targets`, :mod:`~maskvid_edu.tokenizers`
  — what a model predicts: pixel patches, RGB differences, VQ codes
- :mod:`maskvid_edu.ema`        — the EMA target network
- :mod:`maskvid_edu.sparse`     — sparse ConvNet layers and backends
- :mod:`maskvid_edu.models`     — ``model(video, mask)`` for VideoMAE, MAM2, VideoMAC; the registry
- :mod:`maskvid_edu.train`      — one trainer for every method; :mod:`~maskvid_edu.checkpoints`
- :mod:`maskvid_edu.recipes`    — shipped recipes to model, data and training config
- :mod:`maskvid_edu.launch`     — multi-GPU plans
- :mod:`maskvid_edu.weights`    — published checkpoints and their cache; :mod:`~maskvid_edu.pretrained`
  builds a model from them (``from_pretrained``)
- :mod:`maskvid_edu.evaluate`   — label propagation, probes, fine-tuning, DAVIS, features to disk
- :mod:`maskvid_edu.measure`    — FLOPs, timing, memory, benchmarks, scaling
- :mod:`maskvid_edu.analysis`   — what the chapters measure: baselines, reconstructions, statistics
- :mod:`maskvid_edu.widgets`    — pure render functions and interactive explorers
- :mod:`maskvid_edu.exercises`  — the chapters' exercise checkers
- :mod:`maskvid_edu.cli`        — the ``maskvid-edu`` command: parsing and dispatch only
"""

__version__ = "0.1.0"
