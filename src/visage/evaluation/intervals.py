"""Counts and means with their 95 % intervals, as the audits report them.

- A rate ``k of n`` carries the exact (Clopper-Pearson) two-sided 95 % interval.
  With ``k = 0`` its upper end is the one a reader wants ("0 of 200; at most 1.8 %").
- A mean carries a percentile bootstrap 95 % interval (seeded, so reruns agree).
- An expected Poisson (or binomial) count carries the central 95 % range of counts it allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Rate:
    """``events`` of ``total``, with the exact binomial 95 % interval."""

    events: int
    total: int

    @property
    def value(self) -> float:
        return self.events / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.events, self.total)

    def describe(self) -> str:
        """Plain words: ``3 of 200 (1.5 %, 95 % CI 0.3-4.3 %)`` or ``0 of 200 (95 % upper bound 1.8 %)``."""
        if self.total == 0:
            return "no data"
        low, high = self.interval
        if self.events == 0:
            return f"0 of {self.total:,} (95 % upper bound {_percent(high)})"
        return f"{self.events:,} of {self.total:,} ({_percent(self.value)}, 95 % CI {_percent(low)}-{_percent(high)})"

    def short(self) -> str:
        """``40.0 % (2/5)``, or ``0/200 (<= 1.8 %)`` with the 95 % upper bound."""
        if self.total == 0:
            return "no data"
        if self.events == 0:
            return f"0/{self.total:,} (<= {_percent(self.interval[1])})"
        return f"{_percent(self.value)} ({self.events:,}/{self.total:,})"

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "events": self.events,
            "total": self.total,
            "value": _round(self.value),
            "ci95": [_round(low), _round(high)],
        }


@dataclass(frozen=True)
class Mean:
    """A mean of ``n`` values with its bootstrap 95 % interval and the values' standard deviation."""

    value: float
    n: int
    low: float
    high: float
    sd: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    def describe(self, unit: str = "", scale: float = 1.0) -> str:
        """``6.4 years (95 % CI 5.9-6.9, n = 200)``; ``scale`` 100 shows a mean of rates in %."""
        if self.n == 0:
            return "no data"
        return f"{self.value * scale:.1f}{unit} (95 % CI {self.low * scale:.1f}-{self.high * scale:.1f}, n = {self.n})"

    def short(self, unit: str = "", scale: float = 1.0) -> str:
        return "no data" if self.n == 0 else f"{self.value * scale:.1f}{unit} (n = {self.n})"

    def to_json(self) -> dict[str, Any]:
        return {
            "value": _round(self.value),
            "n": self.n,
            "ci95": [_round(self.low), _round(self.high)],
            "sd": _round(self.sd),
        }


Measure = Rate | Mean


def clopper_pearson(events: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact two-sided interval for a binomial proportion; (0, 1) without data."""
    if total == 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if events == 0 else float(stats.beta.ppf(alpha / 2, events, total - events + 1))
    high = 1.0 if events == total else float(stats.beta.ppf(1 - alpha / 2, events + 1, total - events))
    return low, high


def bootstrap_mean(values: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = LEVEL) -> Mean:
    """The mean of ``values`` with a percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Mean(float("nan"), 0, float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Mean(
        float(values.mean()),
        int(values.size),
        float(low),
        float(high),
        float(values.std(ddof=1)) if values.size > 1 else 0.0,
    )


def poisson_range(expected: float, level: float = LEVEL) -> tuple[int, int]:
    """The central range of counts a Poisson variable of mean ``expected`` falls in with probability >= ``level``."""
    if expected <= 0:
        return 0, 0
    alpha = 1.0 - level
    return int(stats.poisson.ppf(alpha / 2, expected)), int(stats.poisson.ppf(1 - alpha / 2, expected))


def binomial_range(trials: int, probability: float, level: float = LEVEL) -> tuple[int, int]:
    """The central range of successes a Binomial(trials, probability) falls in with probability >= ``level``."""
    if trials == 0 or probability <= 0:
        return 0, 0
    alpha = 1.0 - level
    return int(stats.binom.ppf(alpha / 2, trials, probability)), int(
        stats.binom.ppf(1 - alpha / 2, trials, probability)
    )


def _percent(x: float) -> str:
    if x == 0:
        return "0 %"
    if x < 0.001:
        return f"{x * 100:.2g} %"
    if 0.999 < x < 1:  # 99.96 %, not a rounded 100.0 %
        return f"{x * 100:.2f} %"
    return f"{x * 100:.1f} %"


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 8)  # NaN -> null in JSON
