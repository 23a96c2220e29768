"""Means, differences and their 95 % intervals — the one statistics helper of the course.

Every comparison the book prints goes through this module, and so does the sentence that
interprets it: a chapter never types "A beats B", it prints :func:`verdict` of the numbers.

Two kinds of repetition give an interval:

- **over seeds** (a handful of independent training runs): the mean and a Student-*t*
  interval, ``mean ± t_{0.975, n−1} · s / √n`` with ``s`` the sample standard deviation.
  With 3 seeds ``t`` is 4.30, so three runs resolve only large differences — which the
  verdict says.
- **over items** (clips, sequences, test videos: many, not normally distributed): the
  percentile bootstrap, resampling the items with replacement ``num_resamples`` times from
  a seeded generator (same numbers on every run).

A comparison of A against B is *paired* when both were measured on the same seeds or items
(the same held-out clips, the same seed of the same data order): the interval is then that
of the per-pair differences ``a_i − b_i``, which removes the spread the two share.

The *smallest resolvable difference* is the true difference that an experiment of this size
and spread would detect four times in five (power 0.8) at the 5 % level: ``(q_{0.975} +
q_{0.8}) · SE`` with ``q`` the *t* (over seeds) or normal (bootstrap) quantiles. A verdict of
"no difference resolvable" quotes it, so that a null result states its power.

Only numpy and the standard library are needed: the *t* quantiles are computed here by
integrating the *t* density (Simpson's rule) and inverting by bisection, accurate to about
1e-9 (tests compare with SciPy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "Estimate",
    "t_quantile",
    "normal_quantile",
    "mean_ci",
    "rank_correlation",
    "bootstrap_ci",
    "paired_difference",
    "difference",
    "verdict",
    "format_estimate",
]

CONFIDENCE = 0.95
POWER = 0.8
METHODS = ("t", "bootstrap")


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval.

    ``mean``: the point estimate; ``low``/``high``: the ``confidence`` interval; ``n``: how many
    seeds or items it averages; ``method``: ``"t"`` or ``"bootstrap"``; ``se``: the standard
    error (for the bootstrap, the standard deviation of the resampled means); ``resolvable``:
    the smallest difference from zero this experiment would detect with power 0.8.
    """

    mean: float
    low: float
    high: float
    n: int
    method: str
    se: float
    resolvable: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return format_estimate(self)


def _t_density(x: np.ndarray, df: float) -> np.ndarray:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))


def _t_cdf_above_half(x: float, df: float, intervals: int = 4000) -> float:
    """P(T ≤ x) − 0.5 for x ≥ 0, by Simpson's rule on [0, x]."""
    if x == 0:
        return 0.0
    grid = np.linspace(0.0, x, intervals + 1)  # intervals is even
    f = _t_density(grid, df)
    return float(x / intervals / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))


def normal_quantile(p: float) -> float:
    """The standard normal quantile ``Φ⁻¹(p)``, by bisection on ``erf`` (to 1e-12)."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return (lo + hi) / 2


def t_quantile(p: float, df: float) -> float:
    """The quantile of Student's *t* with ``df`` degrees of freedom: ``t_{p, df}``.

    ``t_quantile(0.975, 2)`` = 4.303, ``t_quantile(0.975, 1e6)`` → 1.960 (the normal's).
    """
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    target = p - 0.5
    lo, hi = 0.0, 1.0
    while _t_cdf_above_half(hi, df) < target:  # bracket: the tails of df = 1 are heavy
        lo, hi = hi, hi * 2
        if hi > 1e7:
            raise ValueError(f"t quantile {p} with df={df} is beyond 1e7")
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_cdf_above_half(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return (lo + hi) / 2


def _as_values(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name}: no values to summarise")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{name}: {bad} of {x.size} values are not finite (NaN or inf)")
    return x


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return float(confidence)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean over seeds with a Student-*t* interval.

    ``values``: one number per independent run (at least 2 for an interval; a single value
    gives an infinite interval, honestly). ``mean ± t_{(1+c)/2, n−1} · s/√n``.
    """
    confidence = _check_confidence(confidence)
    x = _as_values(values, "mean_ci")
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, -math.inf, math.inf, n, "t", math.inf, math.inf, confidence)
    se = float(x.std(ddof=1) / math.sqrt(n))
    df = n - 1
    half = t_quantile((1 + confidence) / 2, df) * se
    resolvable = (t_quantile((1 + confidence) / 2, df) + t_quantile(POWER, df)) * se
    return Estimate(mean, mean - half, mean + half, n, "t", se, resolvable, confidence)


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE, *,
                 num_resamples: int = 10_000, seed: int = 0) -> Estimate:
    """Mean over items with a percentile-bootstrap interval.

    The items are resampled with replacement ``num_resamples`` times from
    ``numpy.random.default_rng(seed)``; the interval is the ``(1 ± c)/2`` percentiles of the
    resampled means. ``se`` is their standard deviation.
    """
    confidence = _check_confidence(confidence)
    x = _as_values(values, "bootstrap_ci")
    if num_resamples < 100:
        raise ValueError(f"num_resamples must be at least 100, got {num_resamples}")
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, -math.inf, math.inf, n, "bootstrap", math.inf, math.inf, confidence)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(num_resamples, n))  # (R, n) resampled item indices
    means = x[index].mean(axis=1)  # (R,)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    se = float(means.std(ddof=1))
    resolvable = (normal_quantile(1 - alpha) + normal_quantile(POWER)) * se
    return Estimate(mean, float(low), float(high), n, "bootstrap", se, resolvable, confidence)


def _summarise(x: np.ndarray, method: str, confidence: float, seed: int) -> Estimate:
    if method == "t":
        return mean_ci(x, confidence)
    if method == "bootstrap":
        return bootstrap_ci(x, confidence, seed=seed)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def paired_difference(a: Sequence[float], b: Sequence[float], *, method: str = "t",
                      confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """The mean of ``a_i − b_i`` over pairs measured on the same seed or item, with its interval.

    ``method="t"`` for seeds, ``"bootstrap"`` for items.
    """
    x, y = _as_values(a, "paired_difference: a"), _as_values(b, "paired_difference: b")
    if x.shape != y.shape:
        raise ValueError(f"paired_difference needs as many a as b values (one pair each), got {x.size} and {y.size}")
    return _summarise(x - y, method, confidence, seed)


def difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> Estimate:
    """``mean(a) − mean(b)`` for two *independent* groups (Welch's *t* interval).

    Use :func:`paired_difference` when the values pair up by seed or item.
    """
    confidence = _check_confidence(confidence)
    x, y = _as_values(a, "difference: a"), _as_values(b, "difference: b")
    if x.size < 2 or y.size < 2:
        raise ValueError(f"difference needs at least 2 values per group, got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    mean = float(x.mean() - y.mean())
    if se == 0:
        return Estimate(mean, mean, mean, x.size + y.size, "t", 0.0, 0.0, confidence)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))  # Welch–Satterthwaite
    q = t_quantile((1 + confidence) / 2, df)
    resolvable = (q + t_quantile(POWER, df)) * se
    return Estimate(mean, mean - q * se, mean + q * se, x.size + y.size, "t", se, resolvable, confidence)


def _fmt(value: float, digits: int) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def format_estimate(e: Estimate, digits: int = 1, unit: str = "") -> str:
    """``"61.3 ± 2.4 (95 % CI [58.9, 63.7], n = 3)"``."""
    unit = f" {unit}" if unit else ""
    return (f"{_fmt(e.mean, digits)}{unit} ± {_fmt(e.half_width, digits)} "
            f"({e.confidence:.0%} CI [{_fmt(e.low, digits)}, {_fmt(e.high, digits)}], n = {e.n})").replace("%", " %")


def verdict(name_a: str, name_b: str, diff: Estimate, *, unit: str = "points", digits: int = 1,
            higher_is_better: bool = True) -> str:
    """One sentence that says what the interval of ``a − b`` supports, computed from it.

    - interval above 0: ``"tube beats random by 6.1 points, 95 % CI [2.3, 9.8]"``
      (or "falls behind" when it lies below 0; with ``higher_is_better=False``, e.g. for a
      loss, a positive difference means a falls behind). The sentence states the size of the
      gap, ``|a − b|``, and its interval is the interval of that size (for ``a < b``, the
      interval of ``b − a``), so "by 6.1, CI [2.3, 9.8]" always reads the same way;
    - interval across 0: ``"no difference resolvable between tube and random: CI [-2.0, 3.1],
      smallest resolvable difference ≈ 4.0 points"``.
    """
    def interval(low: float, high: float) -> str:
        return f"{diff.confidence:.0%} CI [{_fmt(low, digits)}, {_fmt(high, digits)}]".replace("%", " %")

    if not diff.excludes_zero():
        return (f"no difference resolvable between {name_a} and {name_b}: {interval(diff.low, diff.high)}, "
                f"smallest resolvable difference ≈ {_fmt(diff.resolvable, digits)} {unit}")
    better = (diff.mean > 0) == higher_is_better
    word = "beats" if better else "falls behind"
    # the sentence states a size, |a − b|: its interval is that of |a − b| too (flipped when a < b)
    low, high = (diff.low, diff.high) if diff.mean > 0 else (-diff.high, -diff.low)
    return f"{name_a} {word} {name_b} by {_fmt(abs(diff.mean), digits)} {unit}, {interval(low, high)}"


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (0 = smallest), ties given their mean rank."""
    order = np.argsort(x, axis=-1, kind="stable")
    ranks = np.empty_like(x, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(x.shape[-1], dtype=np.float64) * np.ones_like(x), axis=-1)
    for row in np.ndindex(x.shape[:-1]):  # ties: the mean of the ranks they span
        values, inverse = np.unique(x[row], return_inverse=True)
        if values.size < x.shape[-1]:
            sums = np.bincount(inverse, weights=ranks[row])
            ranks[row] = (sums / np.bincount(inverse))[inverse]
    return ranks


def rank_correlation(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE, *,
                     num_resamples: int = 10_000, seed: int = 0) -> Estimate:
    """Spearman's rank correlation of paired values ``a[i]``, ``b[i]`` (do two measures order the
    same items alike?), with a percentile-bootstrap interval over the pairs. Resamples in which
    either side has a single distinct value have no correlation and are left out; ``n`` is the
    number of pairs, ``resolvable`` the smallest |ρ| this experiment would tell from 0."""
    confidence = _check_confidence(confidence)
    x, y = _as_values(a, "rank_correlation"), _as_values(b, "rank_correlation")
    if x.size != y.size:
        raise ValueError(f"rank_correlation needs paired values, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"rank_correlation needs at least 3 pairs, got {x.size}")

    def rho(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:  # (..., n) ranks → (...,)
        rx = rx - rx.mean(axis=-1, keepdims=True)
        ry = ry - ry.mean(axis=-1, keepdims=True)
        norm = np.sqrt((rx ** 2).sum(axis=-1) * (ry ** 2).sum(axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, (rx * ry).sum(axis=-1) / norm, np.nan)

    value = float(rho(_ranks(x), _ranks(y)))
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(num_resamples, x.size))  # (R, n) resampled pairs
    boot = rho(_ranks(x[index]), _ranks(y[index]))  # (R,)
    boot = boot[np.isfinite(boot)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    se = float(boot.std(ddof=1))
    resolvable = (normal_quantile(1 - alpha) + normal_quantile(POWER)) * se
    return Estimate(value, float(low), float(high), int(x.size), "bootstrap", se, resolvable, confidence)
