"""What a step costs, measured side by side: FLOPs, time, memory, benchmarks, scaling.

- :mod:`~maskvid_edu.measure.flops`   — the one analytic FLOP model (a ViT block, a ViT encoder, a
  VideoMAE pre-training pass), the measured matmul peak, MFU, loader throughput
- :mod:`~maskvid_edu.measure.timing`  — the one interleaved timer every benchmark and chapter uses
- :mod:`~maskvid_edu.measure.memory`  — where training memory goes (weights, gradients, optimizer
  state, activations), counted exactly on any device
- :mod:`~maskvid_edu.measure.bench`   — our models next to the reference implementations, the sparse
  path next to the dense one, and the table ``maskvid-edu bench`` prints
- :mod:`~maskvid_edu.measure.scaling` — model sizes, what each optimisation of the step buys,
  memory against batch and mask ratio

Import the modules by name (``from maskvid_edu.measure import flops``): benchmarks pull in
heavier dependencies than the FLOP model.
"""
