"""A video dataset whose classes are decided by motion alone.

Every clip shows one textured shape (sometimes two) over a textured background. The class is
*how the shape moves relative to the background*: ``move_left``, ``move_right``, ``move_up``,
``move_down``, ``rotate_cw``, ``rotate_ccw``, ``grow``, ``shrink``. Shape, size, position,
orientation, colours and textures are drawn independently of the class, so no single frame
tells the class; two frames do. That is the property a video model must exploit and an image
model cannot, which is what the course needs to show.

Why a tracking camera
---------------------
The obvious design — a shape sliding left over a still background — leaks the class into
single frames. A clip that must keep the shape inside the frame while it moves left has to
start it further right: at the first frame the mean x-position of a ``move_left`` shape is
larger than that of a ``move_right`` shape, and at the last frame it is smaller. No choice of
start positions can fix this: if the shape's position had the same distribution at every frame
for both classes, its mean displacement would be zero, yet it is ``-D`` for one class and
``+D`` for the other. The same argument holds for sizes under ``grow``/``shrink``.

So the default camera (``camera="tracking"``) follows the object, as a film camera does:

- the object's **on-screen** path (start position, drift, size) is drawn the same way for every
  class; its angle starts uniform on the circle and, for the rotation classes, turns;
- the **background** is a world texture seen through the camera. The camera pans and zooms by
  the class: for ``move_left`` the world slides right on screen under the object, for ``grow``
  the world zooms out around it. Relative to the background, the object moves left or grows;
- the background texture is *statistically invariant to any shift or zoom*: a sum of octaves
  (periods ``P·2^k``) of one pattern (value noise, stripes or a checkerboard), each with a
  uniformly random phase, weighted by a fixed window over the *on-screen* log-period — the
  visual twin of a Shepard tone. Panning changes only the phases (still uniform); zooming moves
  every octave along the log-period axis, the window fades octaves in and out, and the set of
  periods is the same in distribution because its offset ``P`` is log-uniform over one octave.
  Consecutive octaves are turned by 90°, so that stripes never hide a motion along them (the
  aperture problem).

Consequence, exactly (not just approximately): **for every frame index t, the distribution of
frame t (and of its instance mask) is the same for every class.** Even the whole mask track is
class-independent except for the turning of the shape under ``rotate_*``. The classes differ
only in how the background moves relative to the object — which takes at least two frames to
see. :func:`render_clip` with the same index and a different ``label`` makes the point
concretely: all classes share the first frame, pixel for pixel.

``camera="static"`` renders the naive design (the object itself moves on screen over a still
background, start positions chosen to keep it inside the frame). It exists as the counter-example:
its first (or last) frame leaks the class — a linear probe on one frame reaches about 35 %
against 12.5 % chance (``tests/test_synthetic.py``). Pooled over *all* frames of the clips it
is balanced, because playing a clip backwards swaps ``move_left`` and ``move_right`` (and
``grow`` and ``shrink``); a test of "one frame does not tell" must therefore fix the frame
index, as the tests do.

Determinism
-----------
Clip ``i`` is a pure function of ``(config, i)``: its parameters come from
``numpy.random.default_rng([seed, i])`` and the rendering is deterministic tensor code, so the
same clip comes out in every run, every DataLoader worker and every process. Labels are
balanced: clip ``i`` has label ``i % num_classes``.

Rendering (vectorised over frames and pixels): every pixel of every frame gets world coordinates
by the camera map, every object gets *object-local* coordinates by its inverse similarity
transform (translate, rotate, scale); shapes are inequalities on local coordinates and object
textures are patterns evaluated at local coordinates, so a texture moves, turns and grows with
its object. A 16×64×64 clip takes a few milliseconds on one CPU core.

True motion: because every layer is an affine map of the pixel position per frame, the exact
optical flow comes out of the same maps (``render_clip(..., flow_step=k)``): a surface point
keeps its layer coordinates, so where it goes is one small matrix inverse away. It grades
optical-flow estimators (``maskvid_edu.flow.grade_flow``) and guides MGMAE's masks without one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .transforms import normalize

__all__ = [
    "SYNTHETIC_CLASSES",
    "SHAPES",
    "TEXTURES",
    "SyntheticConfig",
    "SyntheticClip",
    "SyntheticVideoDataset",
    "render_clip",
    "translating_texture",
]

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
)
"""Class names in label order. ``num_classes = k`` uses the first ``k`` (4: the translations,
6: + rotations, 8: + scale changes). Screen coordinates have y pointing down, so
``rotate_cw`` turns clockwise as you look at the screen."""

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "star")
TEXTURES: tuple[str, ...] = ("noise", "stripes", "checker")
CAMERAS: tuple[str, ...] = ("tracking", "static")

# Local-coordinate geometry: an object of radius r covers local |q| <= _EXTENT (circumradius).
_EXTENT = 1.2
# Background window over log2(on-screen period / frame size): periods from size/16 to size.
_WINDOW_LO, _WINDOW_OCTAVES = -4.0, 4
# Octave slots whose phases are always drawn (so the random stream does not depend on the class).
_OCTAVE_SLOTS = range(-6, 7)
_NOISE_TABLE = 16  # value-noise lattice is periodic with this many cells per side


@dataclass(frozen=True)
class SyntheticConfig:
    """What :class:`SyntheticVideoDataset` generates.

    Args:
        num_frames: ``T`` frames per clip (≥ 2).
        size: frame height = width in pixels (≥ 16). 64–112 for the CPU preset, 224 full size.
        num_classes: how many of :data:`SYNTHETIC_CLASSES` to use (2–8, a prefix of the list).
        num_samples: dataset length.
        seed: clip ``i`` is a pure function of ``(seed, i)`` and the other fields.
        camera: ``"tracking"`` (default; single frames carry no class information) or
            ``"static"`` (the naive, leaky design; a counter-example).
        distractor_prob: probability that a clip has a second object (instance id 2) whose
            on-screen motion is drawn independently of the class. It never turns, so rotation
            is always the first object's.
        radius: range of the object radius as a fraction of ``size`` (the shape's circumradius
            is 1.2 × radius). Under ``camera="static"`` this is the geometric-mean radius of a
            growing or shrinking object.
        translation: range of the relative displacement over the clip, fraction of ``size``.
        rotation: range of the relative turn over the clip, in degrees.
        zoom: range of the relative scale factor over the clip (> 1).
        drift: largest class-independent on-screen displacement of an object over the clip,
            fraction of ``size`` (tracking camera only).
    """

    num_frames: int = 16
    size: int = 64
    num_classes: int = 8
    num_samples: int = 1024
    seed: int = 0
    camera: str = "tracking"
    distractor_prob: float = 0.5
    radius: tuple[float, float] = (0.12, 0.2)
    translation: tuple[float, float] = (0.25, 0.4)
    rotation: tuple[float, float] = (90.0, 180.0)
    zoom: tuple[float, float] = (1.5, 2.0)
    drift: float = 0.15

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(f"SyntheticConfig: {message}")

        need(isinstance(self.num_frames, int) and self.num_frames >= 2,
             f"num_frames must be an int >= 2, got {self.num_frames!r}")
        need(isinstance(self.size, int) and self.size >= 16, f"size must be an int >= 16, got {self.size!r}")
        need(isinstance(self.num_classes, int) and 2 <= self.num_classes <= len(SYNTHETIC_CLASSES),
             f"num_classes must be an int in [2, {len(SYNTHETIC_CLASSES)}], got {self.num_classes!r}")
        need(isinstance(self.num_samples, int) and self.num_samples >= 1,
             f"num_samples must be an int >= 1, got {self.num_samples!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an int >= 0, got {self.seed!r}")
        need(self.camera in CAMERAS, f"camera must be one of {CAMERAS}, got {self.camera!r}")
        need(0.0 <= self.distractor_prob <= 1.0, f"distractor_prob must be in [0, 1], got {self.distractor_prob!r}")
        for name, lo_min, hi_max in (("radius", 0.02, 0.3), ("translation", 0.0, 0.6),
                                     ("rotation", 0.0, 720.0), ("zoom", 1.0, 4.0)):
            lo, hi = getattr(self, name)
            need(lo_min <= lo <= hi <= hi_max,
                 f"{name} must be a range (lo, hi) with {lo_min} <= lo <= hi <= {hi_max}, got {(lo, hi)!r}")
        need(0.0 <= self.drift <= 0.4, f"drift must be in [0, 0.4], got {self.drift!r}")
        # every object path must fit inside the frame (room = what the centre may travel)
        room = 1.0 - 2.0 * self.radius[1] * _EXTENT - 2.0 / self.size
        if self.camera == "tracking":
            need(room >= self.drift, f"an object of radius {self.radius[1]} cannot drift by {self.drift} "
                 "inside the frame: lower radius or drift")
        else:
            need(room >= self.translation[1],
                 f"camera='static' cannot keep an object of radius {self.radius[1]} inside the frame over a "
                 f"displacement of {self.translation[1]}: lower radius or translation")
            grown = 1.0 - 2.0 * self.radius[1] * math.sqrt(self.zoom[1]) * _EXTENT - 2.0 / self.size
            need(grown >= 0.0, f"camera='static': an object of radius {self.radius[1]} grown by "
                 f"sqrt({self.zoom[1]}) does not fit inside the frame: lower radius or zoom")

    @property
    def classes(self) -> tuple[str, ...]:
        return SYNTHETIC_CLASSES[: self.num_classes]


@dataclass
class SyntheticClip:
    """One rendered clip.

    Attributes:
        frames: ``(3, T, H, W)`` float32 RGB in [0, 1] (not normalised).
        masks: ``(T, H, W)`` int64 instance ids: 0 background, 1 the object, 2 the distractor.
        label: class index into :data:`SYNTHETIC_CLASSES`.
        params: the drawn parameters (shape, textures, motion), for display and tests.
        flow: the true motion, when asked for (``render_clip(..., flow_step=k)``): float
            ``(T-k, 2, H, W)`` in pixels, channel 0 rightwards, channel 1 downwards — where the
            surface point seen at each pixel of frame ``t`` is in frame ``t + k``. None otherwise.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    label: int
    params: dict = field(default_factory=dict)
    flow: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
# Patterns: functions of coordinates measured in periods, values in [-1, 1]
# --------------------------------------------------------------------------------------------


def _noise_tile(table: torch.Tensor, oversample: int = 8) -> torch.Tensor:
    """Smooth periodic value noise as an image: lattice ``table`` (M, M) → ``(1, 1, R+1, R+1)``.

    Values between lattice points are blended with a smoothstep (C1 across cells); ``R = M ·
    oversample`` samples per period plus one wrapped row/column, so bilinear look-ups with
    ``grid_sample`` reproduce the periodic field to within about 1 % of its range."""
    m = table.shape[0]
    f = torch.arange(oversample, dtype=torch.float32) / oversample
    f = f * f * (3 - 2 * f)  # smoothstep weights inside one cell
    idx = torch.arange(m)
    # interpolate along x, then along y: (M, M) → (M, R) → (R, R)
    rows = table[:, idx, None] * (1 - f) + table[:, (idx + 1) % m, None] * f  # (M, M, o)
    rows = rows.reshape(m, m * oversample)  # (M, R)
    tile = rows[idx, None, :] * (1 - f)[:, None] + rows[(idx + 1) % m, None, :] * f[:, None]  # (M, o, R)
    tile = tile.reshape(m * oversample, m * oversample)  # (R, R)
    tile = torch.cat([tile, tile[:1]], dim=0)
    tile = torch.cat([tile, tile[:, :1]], dim=1)  # (R+1, R+1): wrap for the last interval
    return tile[None, None]


def _value_noise(tile: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sample the periodic noise ``tile`` at lattice coordinates ``u, v`` (any equal shapes)."""
    m = _NOISE_TABLE
    gx = torch.remainder(u, m) * (2.0 / m) - 1.0  # [0, M) → [-1, 1) with align_corners=True
    gy = torch.remainder(v, m) * (2.0 / m) - 1.0
    grid = torch.stack([gx.reshape(1, -1, 1), gy.reshape(1, -1, 1)], dim=-1)  # (1, n, 1, 2)
    out = F.grid_sample(tile, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(u.shape)


def _pattern(kind: str, u: torch.Tensor, v: torch.Tensor, tile: torch.Tensor | None) -> torch.Tensor:
    """One period of a texture per unit of ``u`` (and ``v``); ``tile`` (for noise) from
    :func:`_noise_tile`."""
    if kind == "stripes":
        return torch.cos(2 * math.pi * u)
    if kind == "checker":
        return torch.sign(torch.sin(2 * math.pi * u) * torch.sin(2 * math.pi * v))
    return (2.0 * _value_noise(tile, 2 * u, 2 * v)).clamp(-1, 1)  # 2 lattice cells per period


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Parameters of one clip
# --------------------------------------------------------------------------------------------


def _draw_object(rng: np.random.Generator, cfg: SyntheticConfig, bg_hue: float) -> dict:
    """Appearance and class-independent on-screen motion of one object (always the same draws)."""
    hue = (bg_hue + rng.uniform(0.25, 0.75)) % 1.0  # away from the background's hue
    return {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "texture": TEXTURES[rng.integers(len(TEXTURES))],
        "radius": float(rng.uniform(*cfg.radius)),
        "angle": float(rng.uniform(0.0, 2 * math.pi)),  # uniform on the circle
        "start": rng.uniform(0.0, 1.0, size=2),  # position in the feasible box, mapped below
        "drift": rng.uniform(-1.0, 1.0, size=2) * cfg.drift / math.sqrt(2.0),
        "tex_freq": float(rng.uniform(0.8, 1.6)),  # texture periods per radius
        "tex_angle": float(rng.uniform(0.0, math.pi)),
        "tex_offset": rng.uniform(0.0, _NOISE_TABLE, size=2),
        "table": rng.uniform(-1.0, 1.0, size=(_NOISE_TABLE, _NOISE_TABLE)),
        "colors": (_hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)),
                   _hsv_to_rgb((hue + rng.uniform(-0.1, 0.1)) % 1.0, rng.uniform(0.3, 1.0), rng.uniform(0.1, 0.5))),
    }


def _draw_params(cfg: SyntheticConfig, index: int) -> dict:
    """Everything random about clip ``index``; the class is *not* used here."""
    rng = np.random.default_rng([cfg.seed, index])
    bg_hue = float(rng.uniform())
    params = {
        "bg_texture": TEXTURES[rng.integers(len(TEXTURES))],
        "bg_angle": float(rng.uniform(0.0, math.pi)),
        "bg_log_period": float(rng.uniform(0.0, 1.0)),  # offset of the octave ladder, in octaves
        "bg_phases": rng.uniform(0.0, _NOISE_TABLE, size=(len(_OCTAVE_SLOTS), 2)),
        "bg_table": rng.uniform(-1.0, 1.0, size=(_NOISE_TABLE, _NOISE_TABLE)),
        "bg_colors": (_hsv_to_rgb(bg_hue, rng.uniform(0.2, 0.7), rng.uniform(0.5, 0.9)),
                      _hsv_to_rgb((bg_hue + rng.uniform(-0.08, 0.08)) % 1.0, rng.uniform(0.2, 0.7),
                                  rng.uniform(0.15, 0.5))),
        # motion magnitudes (their directions come from the class)
        "translation": float(rng.uniform(*cfg.translation)),
        "rotation": math.radians(float(rng.uniform(*cfg.rotation))),
        "zoom": float(rng.uniform(*cfg.zoom)),
        "objects": [_draw_object(rng, cfg, bg_hue)],
    }
    distractor = _draw_object(rng, cfg, bg_hue)
    if rng.uniform() < cfg.distractor_prob:
        params["objects"].append(distractor)
    params["draw_order"] = rng.permutation(len(params["objects"])).tolist()
    return params


def _class_motion(name: str, p: dict) -> tuple[np.ndarray, float, float]:
    """Relative motion of the class over the whole clip: displacement (fraction of the frame size),
    turn (radians, positive = clockwise on screen), log of the relative zoom."""
    d, zero = p["translation"], np.zeros(2)
    table = {
        "move_left": (np.array([-d, 0.0]), 0.0, 0.0),
        "move_right": (np.array([d, 0.0]), 0.0, 0.0),
        "move_up": (np.array([0.0, -d]), 0.0, 0.0),
        "move_down": (np.array([0.0, d]), 0.0, 0.0),
        "rotate_cw": (zero, p["rotation"], 0.0),  # y down: increasing angle turns clockwise
        "rotate_ccw": (zero, -p["rotation"], 0.0),
        "grow": (zero, 0.0, math.log(p["zoom"])),
        "shrink": (zero, 0.0, -math.log(p["zoom"])),
    }
    return table[name]


def _start_position(unit: np.ndarray, margin: float, displacement: np.ndarray) -> np.ndarray:
    """Map ``unit`` ∈ [0, 1]² to a start position keeping ``start + s·displacement`` (s ∈ [0, 1])
    inside ``[margin, 1 - margin]`` (all as fractions of the frame size)."""
    lo = margin - np.minimum(displacement, 0.0)
    hi = 1.0 - margin - np.maximum(displacement, 0.0)
    return lo + unit * np.maximum(hi - lo, 0.0)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


# Every coordinate the renderer needs (object-local, texture, background world) is an affine
# function of the pixel position, one per frame: [u, v] = M_t [x, y] + b_t with M (T, 2, 2) and
# b (T, 2). Transforms are composed on these small matrices; only the final coordinates are
# evaluated on the full (T, H, W) grid, by a broadcast sum of an x-part and a y-part.


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """(…,) angles → (…, 2, 2) rotation matrices (x right, y down: positive turns clockwise)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _then(outer: tuple[torch.Tensor, torch.Tensor], inner: tuple[torch.Tensor, torch.Tensor]):
    """Composition ``outer ∘ inner`` of affine maps ``(M, b)``; ``outer``'s M may be (2, 2)."""
    (m2, b2), (m1, b1) = outer, inner
    return m2 @ m1, (m2 @ b1[..., None])[..., 0] + b2


def _evaluate(affine: tuple[torch.Tensor, torch.Tensor], pix: torch.Tensor):
    """Coordinates ``(u, v)``, each (T, H, W), of the pixel centres ``pix`` (size,) under ``affine``."""
    m, b = affine
    x, y = pix[None, None, :], pix[None, :, None]  # (1, 1, W), (1, H, 1)
    out = []
    for row in range(2):
        xpart = m[:, row, 0, None, None] * x + b[:, row, None, None]  # (T, 1, W)
        out.append(xpart + m[:, row, 1, None, None] * y)  # (T, H, W)
    return out


def _object_map(center: torch.Tensor, radius: torch.Tensor, angle: torch.Tensor):
    """Screen → object-local coordinates ``q = R(-angle) (x - center) / radius``.

    center: (T, 2) pixels; radius: (T,) pixels; angle: (T,) radians. In local units the shape
    has circumradius ≤ 1.2, so ``|q| ≤ 1.2`` covers it."""
    m = _rotation(-angle) / radius[:, None, None]  # (T, 2, 2)
    return m, -(m @ center[..., None])[..., 0]


def _inside(shape: str, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Which local points lie in the shape (circumradius ≤ 1.2; area 1.9 (triangle) to 3.1 (disc))."""
    if shape == "disc":
        return qx * qx + qy * qy <= 1.0
    if shape == "square":
        return torch.maximum(qx.abs(), qy.abs()) <= 0.85
    if shape == "triangle":  # regular, apothem 0.6, a vertex pointing up (-y) at angle 0
        h = math.sqrt(3) / 2
        return torch.maximum(torch.maximum(qy, h * qx - 0.5 * qy), -h * qx - 0.5 * qy) <= 0.6
    # five-petalled star in polar form
    r, phi = torch.sqrt(qx * qx + qy * qy), torch.atan2(qy, qx)
    return r <= 0.8 + 0.35 * torch.cos(5 * phi)


def _object_layer(obj: dict, local: tuple[torch.Tensor, torch.Tensor], pix: torch.Tensor):
    """Colours (3, T, H, W) and coverage (T, H, W) of one object.

    The texture is evaluated at the object's local coordinates (rotated by ``tex_angle``, scaled
    by ``tex_freq`` periods per radius), so it moves, turns and scales with the object."""
    qx, qy = _evaluate(local, pix)
    rot = _rotation(torch.tensor(-obj["tex_angle"])) * obj["tex_freq"]
    offset = torch.as_tensor(obj["tex_offset"], dtype=torch.float32)
    u, v = _evaluate(_then((rot, offset), local), pix)
    tile = _noise_tile(torch.as_tensor(obj["table"], dtype=torch.float32)) if obj["texture"] == "noise" else None
    mix = 0.5 + 0.5 * _pattern(obj["texture"], u, v, tile)  # (T, H, W) in [0, 1]
    c0, c1 = (torch.as_tensor(col, dtype=torch.float32)[:, None, None, None] for col in obj["colors"])
    return c1 + (c0 - c1) * mix, _inside(obj["shape"], qx, qy)  # (3, T, H, W), (T, H, W)


def _background(p: dict, world: tuple[torch.Tensor, torch.Tensor], log_zoom: torch.Tensor,
                pix: torch.Tensor) -> torch.Tensor:
    """Shift- and zoom-invariant background (3, T, H, W).

    world: affine map screen → world (world unit = one pixel at zoom 1); log_zoom: (T,) log2 of
    the on-screen size of one world unit. Octave ``k`` has world period ``P_k = size/16 ·
    2^(k + offset)`` with ``offset`` uniform in [0, 1); its on-screen log-period relative to the
    frame, ``ℓ = log2(P_k · zoom / size)``, sets its weight ``sin²(π (ℓ + 4) / 4)`` on ``ℓ ∈
    [-4, 0]`` (0 elsewhere). Any four consecutive octaves' weights sum to 2, so the contrast
    stays constant while octaves fade in and out under a zoom. The pattern of octave ``k`` is
    turned by ``bg_angle + k·90°``."""
    size = pix.shape[0]
    tile = _noise_tile(torch.as_tensor(p["bg_table"], dtype=torch.float32)) if p["bg_texture"] == "noise" else None
    total = torch.zeros(log_zoom.shape[0], size, size)
    for slot, k in enumerate(_OCTAVE_SLOTS):
        octave = k + p["bg_log_period"]  # log2(P_k / (size/16))
        ell = octave + _WINDOW_LO + log_zoom  # (T,) on-screen log-period relative to size
        inside = (ell > _WINDOW_LO) & (ell < _WINDOW_LO + _WINDOW_OCTAVES)
        if not bool(inside.any()):
            continue
        weight = torch.where(inside, torch.sin(math.pi * (ell - _WINDOW_LO) / _WINDOW_OCTAVES) ** 2, 0.0)
        period = size / 16.0 * 2.0**octave
        phase = torch.as_tensor(p["bg_phases"][slot], dtype=torch.float32)
        # consecutive octaves are turned by 90°: stripes along one direction would hide any
        # motion along them (the aperture problem); alternating, each direction always carries
        # exactly half of the weight (sin² + cos² over every other octave)
        orient = _rotation(torch.tensor(-(p["bg_angle"] + k * math.pi / 2)))
        u, v = _evaluate(_then((orient / period, phase), world), pix)  # in periods of octave k
        total = total + weight[:, None, None] * _pattern(p["bg_texture"], u, v, tile)
    mix = (0.5 + 0.25 * total).clamp(0, 1)  # weights sum to 2 → total ∈ [-2, 2]
    c0, c1 = (torch.as_tensor(col, dtype=torch.float32)[:, None, None, None] for col in p["bg_colors"])
    return c1 + (c0 - c1) * mix  # (3, T, H, W)


def _layer_flow(affine: tuple[torch.Tensor, torch.Tensor], step: int, pix: torch.Tensor):
    """True motion of one layer from frame ``t`` to frame ``t + step``, each (T-step, H, W) pixels.

    ``affine`` maps screen → the layer's own coordinates, one map per frame (``q = M_t x + b_t``).
    A surface point keeps its coordinates ``q``, so the pixel ``x`` of frame ``t`` is found in
    frame ``t + step`` at ``x' = M_{t+step}⁻¹ (M_t x + b_t - b_{t+step})``; the flow ``x' - x``
    is again affine in ``x``, ``(M_{t+step}⁻¹ M_t - I) x + M_{t+step}⁻¹ (b_t - b_{t+step})``."""
    m, b = affine
    later_inv = torch.linalg.inv(m[step:])  # (T-step, 2, 2)
    a = later_inv @ m[:-step] - torch.eye(2)  # (T-step, 2, 2)
    c = (later_inv @ (b[:-step] - b[step:])[..., None])[..., 0]  # (T-step, 2)
    return _evaluate((a, c), pix)


def render_clip(config: SyntheticConfig, index: int, *, label: int | None = None,
                objects: bool = True, flow_step: int | None = None) -> SyntheticClip:
    """Render clip ``index`` of ``config`` (a pure function of its arguments).

    Args:
        config: the dataset description.
        index: clip number (any int ≥ 0; ``num_samples`` only bounds the dataset's length).
        label: override the class (default ``index % num_classes``). Appearance and on-screen
            object path stay the same, so one can compare classes on identical content.
        objects: ``False`` renders the background alone (masks all 0); for figures and tests.
        flow_step: also render the **true optical flow** from every frame ``t`` to frame
            ``t + flow_step`` (1 ≤ flow_step < T): ``clip.flow``, (T - flow_step, 2, H, W) in
            pixels. Exact, not estimated: every layer (background, each object) is drawn through
            an affine map per frame, and the flow at a pixel is that of the layer visible there
            in frame ``t``. It is the motion of the surface point, also where that point is
            occluded or has left the frame by ``t + flow_step`` (optical flow's usual
            convention). The background's flow is exact motion, but under a zoom its octaves
            fade in and out, so its brightness is not exactly constant along the flow.

    Returns:
        :class:`SyntheticClip` with ``frames`` (3, T, H, W) in [0, 1], ``masks`` (T, H, W) and,
        with ``flow_step``, ``flow``.
    """
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    label = int(index) % config.num_classes if label is None else label
    if not isinstance(label, (int, np.integer)) or not 0 <= label < config.num_classes:
        raise ValueError(f"label must be an int in [0, {config.num_classes}), got {label!r}")
    label = int(label)
    T = config.num_frames
    if flow_step is not None and (isinstance(flow_step, bool) or not isinstance(flow_step, (int, np.integer))
                                  or not 1 <= flow_step < T):
        raise ValueError(f"flow_step must be an int in [1, {T}) for clips of {T} frames, got {flow_step!r}")
    p = _draw_params(config, int(index))
    name = config.classes[label]
    shift, turn, log_zoom_total = _class_motion(name, p)  # relative motion over the whole clip
    size = config.size
    tau = torch.linspace(0.0, 1.0, T)  # (T,) clip time, 0 at the first frame, 1 at the last
    pix = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    tracking = config.camera == "tracking"

    # objects: on-screen centre (T, 2), radius (T,), angle (T,) in pixels / radians
    paths = []
    for k, obj in enumerate(p["objects"]):
        main = k == 0
        if tracking:
            # same on-screen path for every class; only the main object's angle depends on it
            displacement, log_scale = obj["drift"], 0.0
        else:
            displacement = shift if main else np.zeros(2)
            log_scale = log_zoom_total if main else 0.0
        r_mid = obj["radius"]  # geometric mean radius over the clip (fraction of size)
        r_max = r_mid * math.exp(abs(log_scale) / 2)
        start = _start_position(obj["start"], r_max * _EXTENT + 1.0 / size, displacement)
        center = torch.as_tensor(start, dtype=torch.float32)[None] + tau[:, None] * torch.as_tensor(
            displacement, dtype=torch.float32)[None]  # (T, 2) fraction of size
        radius = r_mid * torch.exp(log_scale * (tau - 0.5))  # (T,)
        angle = obj["angle"] + (turn if main else 0.0) * tau  # (T,)
        paths.append((center * size, radius * size, angle))

    # background: world coordinates of every pixel, X = W_t + (x - p_t) / z_t, where p_t is the
    # object's on-screen centre and W_t the world point under it (tracking), or X = x (static)
    eye = torch.eye(2).expand(T, 2, 2)
    if tracking:
        log_zoom = -log_zoom_total * tau / math.log(2.0)  # (T,) log2 on-screen size of a world unit
        m = eye / (2.0**log_zoom)[:, None, None]  # (T, 2, 2)
        under = torch.as_tensor(shift, dtype=torch.float32)[None] * size * tau[:, None]  # (T, 2) W_t
        world = (m, under - (m @ paths[0][0][..., None])[..., 0])
    else:
        log_zoom = torch.zeros(T)
        world = (eye, torch.zeros(T, 2))
    frames = _background(p, world, log_zoom, pix)  # (3, T, H, W)
    masks = torch.zeros(T, size, size, dtype=torch.int64)

    if objects:
        for k in p["draw_order"]:  # later objects occlude earlier ones
            rgb, inside = _object_layer(p["objects"][k], _object_map(*paths[k]), pix)
            frames = torch.where(inside, rgb, frames)  # (3, T, H, W)
            masks = masks.masked_fill(inside, k + 1)

    flow = None
    if flow_step is not None:
        step = int(flow_step)
        visible = masks[:-step]  # (T-step, H, W): the layer each pixel of frame t shows
        flow = torch.stack(_layer_flow(world, step, pix), dim=1)  # (T-step, 2, H, W)
        for k in range(len(p["objects"]) if objects else 0):
            moved = torch.stack(_layer_flow(_object_map(*paths[k]), step, pix), dim=1)
            flow = torch.where((visible == k + 1)[:, None], moved, flow)

    info = {
        "class": name,
        "camera": config.camera,
        "background": p["bg_texture"],
        "objects": [{"shape": o["shape"], "texture": o["texture"], "radius": o["radius"]} for o in p["objects"]],
        "translation": p["translation"],
        "rotation_deg": math.degrees(p["rotation"]),
        "zoom": p["zoom"],
    }
    frames = frames.clamp(0, 1)  # (3, T, H, W)
    return SyntheticClip(frames=frames, masks=masks, label=label, params=info, flow=flow)


class SyntheticVideoDataset(Dataset):
    """Seeded, procedurally generated clips whose class is decided by motion alone.

    ``dataset[i]`` is ``{"video": (3, T, H, W) float32 ImageNet-normalised, "label": int,
    "masks": (T, H, W) int64}``; :meth:`clip` gives the same clip with [0, 1] frames. Nothing
    is cached or stored: every access renders the clip again (a few ms at 64 px), identically.

    Example::

        ds = SyntheticVideoDataset(SyntheticConfig(num_frames=16, size=64, num_samples=512))
        item = ds[3]          # item["video"]: (3, 16, 64, 64); item["label"] == 3
        ds.classes[item["label"]]   # 'move_down'
    """

    def __init__(self, config: SyntheticConfig | None = None, **overrides):
        if config is None:
            config = SyntheticConfig(**overrides)
        elif overrides:
            config = SyntheticConfig(**{**asdict(config), **overrides})
        if not isinstance(config, SyntheticConfig):
            raise ValueError(f"config must be a SyntheticConfig, got {type(config).__name__}")
        self.config = config

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def __len__(self) -> int:
        return self.config.num_samples

    def _index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} clips")
        return int(index) % n

    def label(self, index: int) -> int:
        """Class of clip ``index`` without rendering it."""
        return self._index(index) % self.config.num_classes

    def clip(self, index: int, *, flow_step: int | None = None) -> dict:
        """``{"frames": (3, T, H, W) float [0, 1], "label": int, "masks": (T, H, W) int64}``,
        plus ``"flow"`` (T - flow_step, 2, H, W), the true motion in pixels, with ``flow_step``
        (see :func:`render_clip`)."""
        c = render_clip(self.config, self._index(index), flow_step=flow_step)
        out = {"frames": c.frames, "label": c.label, "masks": c.masks}
        if c.flow is not None:
            out["flow"] = c.flow
        return out

    def __getitem__(self, index: int) -> dict:
        c = render_clip(self.config, self._index(index))
        return {"video": normalize(c.frames), "label": c.label, "masks": c.masks}

    def __repr__(self) -> str:
        c = self.config
        return (f"SyntheticVideoDataset({c.num_samples} clips, {c.num_classes} classes, "
                f"T={c.num_frames}, {c.size}×{c.size}, camera={c.camera!r}, seed={c.seed})")


def translating_texture(num_frames: int = 8, size: int = 64, shift: tuple[int, int] = (4, 0),
                        seed: int = 0) -> torch.Tensor:
    """A clip in which *everything* translates by whole pixels: ``(3, T, H, W)``, ImageNet-normalised.

    A window of ``size × size`` pixels slides over a larger random texture (per-pixel uniform
    noise, box-blurred over 3 × 3, so every patch is distinct), moving the content by
    ``shift = (dx, dy)`` pixels to the right / down per frame; new content enters at the opposite
    edge. Frame ``f + 1`` equals frame ``f`` shifted by ``shift``, exactly, wherever both show the
    same texture pixel — the clip on which a mask that follows the motion can be tested against
    one that stays in place (its flow is :func:`maskvid_edu.masking.constant_flow`).
    """
    dx, dy = (int(v) for v in shift)
    if num_frames < 1 or size < 1:
        raise ValueError(f"num_frames and size must be ≥ 1, got {num_frames} and {size}")
    g = torch.Generator().manual_seed(int(seed))
    pad_x, pad_y = abs(dx) * num_frames, abs(dy) * num_frames
    noise = torch.rand(1, 3, size + pad_y + 2, size + pad_x + 2, generator=g)
    texture = F.avg_pool2d(noise, 3, stride=1)[0]  # (3, size + pad_y, size + pad_x)
    x0, y0 = (pad_x if dx > 0 else 0), (pad_y if dy > 0 else 0)
    frames = []
    for f in range(num_frames):
        x, y = x0 - f * dx, y0 - f * dy  # the window moves against the content
        frames.append(texture[:, y : y + size, x : x + size])
    return normalize(torch.stack(frames, dim=1))  # (3, T, H, W)
