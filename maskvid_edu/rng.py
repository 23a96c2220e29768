"""Random streams of a training run: one seed per purpose and process, saved and restored whole.

A run draws from five sources: torch's global generator (dropout, init), numpy's and Python's
(augmentation code that uses them), CUDA's, and the trainer's own mask generator. Exact resume
needs every one of them back in the state it had, so :func:`capture_rng_state` returns them as a
dict that ``torch.load(weights_only=True)`` can read back (tensors and plain Python only), and
:func:`restore_rng_state` puts them back. :func:`derive_seed` gives each purpose (global RNGs,
masks, data loader) and each process an independent seed from the one the user chose.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["derive_seed", "seed_everything", "capture_rng_state", "restore_rng_state",
           "STREAM_GLOBAL", "STREAM_MASK", "STREAM_LOADER"]

#: purposes mixed into :func:`derive_seed`
STREAM_GLOBAL, STREAM_MASK, STREAM_LOADER = 0, 1, 2


def derive_seed(*keys: int) -> int:
    """An independent 63-bit seed per purpose (global RNGs, masks, data loader) and rank."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators from one 63-bit ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _numpy_state_to_tensors(state) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_tensors(d: dict):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached_gaussian"])


def _python_state(state):
    # weights_only loading turns the tuple of Python's Mersenne-Twister words into a list
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def capture_rng_state(mask_generator: torch.Generator, device: torch.device) -> dict:
    """Every random state of this process: torch, numpy, Python, the mask generator (and CUDA's
    on a CUDA ``device``), in a form a weights-only checkpoint can hold."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": random.getstate(),
        "mask": mask_generator.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, mask_generator: torch.Generator, device: torch.device) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state_from_tensors(state["numpy"]))
    random.setstate(_python_state(state["python"]))
    mask_generator.set_state(state["mask"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
