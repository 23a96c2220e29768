"""maskvid_edu: masked video modeling, taught and runnable.

The library behind the course in ``book/``. Each file holds one concept:

- :mod:`maskvid_edu.masking`  — which tokens are hidden (tube, random, frame, running cell, pairs)
- :mod:`maskvid_edu.patches`  — video ⇄ tubelet patches, pixel targets
- :mod:`maskvid_edu.data`     — synthetic motion-defined videos, real clips
- :mod:`maskvid_edu.widgets`  — pure render functions and interactive explorers
"""

__version__ = "0.1.0"
