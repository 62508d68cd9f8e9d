"""Small statistics for benchmark claims: bootstrap and t confidence intervals, the exact sign-flip
test, and paired differences.

A claim that one method beats another is a *paired* comparison: the same seeds, tasks and
sampling seeds in both arms, the difference taken per seed; its mean with a percentile bootstrap
95% CI, a Student t 95% interval and the exact two-sided sign-flip (permutation) p. "Beats" needs
p < 0.05 and a t-interval that excludes 0 (:meth:`PairedDifference.shown`); with 5 seeds the
sign-flip p cannot go below 2/32 = 0.0625, with 8 it can reach 2/256.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


def bootstrap_ci(values: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean of ``values`` (NaNs for no values).

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def cluster_bootstrap_ci(clusters: Sequence[Sequence[float]], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the pooled mean of values that come in clusters (seeds,
    teachers): each replicate draws clusters with replacement, then values within each drawn
    cluster, so the interval carries the spread between clusters, not only within them.

    >>> cluster_bootstrap_ci([[1.0, 1.0], [1.0]])
    (1.0, 1.0)
    """
    clusters = [list(values) for values in clusters if values]
    if not clusters:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = []
    for _ in range(reps):
        drawn = [rng.choices(values, k=len(values)) for values in rng.choices(clusters, k=len(clusters))]
        means.append(sum(map(sum, drawn)) / sum(map(len, drawn)))
    means.sort()
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, fraction = 1e-300, 1.0
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return fraction


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function (x in [0, 1])."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_quantile(probability: float, df: int) -> float:
    """The Student t quantile with ``df`` degrees of freedom (bisection on its CDF).

    >>> round(t_quantile(0.975, 4), 4), round(t_quantile(0.975, 7), 4)
    (2.7764, 2.3646)
    """
    def cdf(t: float) -> float:
        tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
        return 1.0 - tail if t > 0 else tail

    low, high = -1e4, 1e4
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean: mean +- t_{n-1} * sd / sqrt(n) (NaNs for fewer than 2 values).

    >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0])]
    [-0.484, 4.484]
    """
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def sign_flip_p(values: Sequence[float]) -> float:
    """Exact two-sided sign-flip (paired permutation) p of a zero mean: the share of the 2^n sign
    assignments whose |mean| is at least the observed one (NaN for no values; n <= 20).

    >>> sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0])
    0.0625
    """
    if not values:
        return float("nan")
    if len(values) > 20:
        raise ValueError(f"the exact sign-flip test enumerates 2^n assignments; got n = {len(values)} > 20")
    observed = abs(sum(values)) - 1e-9 * (1 + sum(abs(v) for v in values))  # ties count as extreme
    extreme = sum(abs(sum(s * v for s, v in zip(signs, values))) >= observed
                  for signs in itertools.product((1, -1), repeat=len(values)))
    return extreme / 2 ** len(values)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences (arm minus baseline) with its bootstrap 95% CI, its t 95% interval
    and the exact sign-flip p."""

    mean: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    t_low: float = float("nan")
    t_high: float = float("nan")
    p_sign_flip: float = float("nan")

    def __str__(self) -> str:
        return f"{self.mean:+.1f} [{self.ci_low:+.1f}, {self.ci_high:+.1f}]"

    def shown(self, alpha: float = 0.05) -> int:
        """+1 (the arm is ahead) or -1 (behind) when the sign-flip p < ``alpha`` and the t-interval
        excludes 0; 0: no difference shown."""
        if not self.p_sign_flip < alpha:
            return 0
        return 1 if self.t_low > 0 else (-1 if self.t_high < 0 else 0)


def paired_difference(arm: Sequence[float], baseline: Sequence[float]) -> PairedDifference:
    """Per-seed differences arm[i] - baseline[i] (same seed i in both), their mean and 95% CI.

    >>> str(paired_difference([50.0, 60.0], [40.0, 50.0]))
    '+10.0 [+10.0, +10.0]'
    """
    if len(arm) != len(baseline):
        raise ValueError(f"paired values need the same seeds in both arms, got {len(arm)} and {len(baseline)}")
    differences = [a - b for a, b in zip(arm, baseline)]
    low, high = bootstrap_ci(differences)
    mean = sum(differences) / len(differences) if differences else float("nan")
    return PairedDifference(mean, low, high, tuple(differences), *t_interval(differences), sign_flip_p(differences))


@dataclass(frozen=True)
class GapShare:
    """The share of a bound's gain over a control that an arm captures, with a bootstrap 95% CI over seeds."""

    share: float
    ci_low: float
    ci_high: float

    def __str__(self) -> str:
        return f"{self.share:.0%} [{self.ci_low:.0%}, {self.ci_high:.0%}]"


def gap_share(arm: Sequence[float], bound: Sequence[float], control: Sequence[float], reps: int = 2000,
              seed: int = 0) -> GapShare:
    """mean(arm - control) / mean(bound - control), all three paired by seed (index i is seed i in each):
    1 = the arm gains what the bound gains, 0 = what the control does. The percentile bootstrap resamples
    seeds, the same draw for numerator and denominator; a draw whose bound gain is not above 0 has no
    share and is left out (NaN share when the bound itself gains nothing).

    >>> str(gap_share([55.0, 65.0], [60.0, 70.0], [50.0, 60.0]))
    '50% [50%, 50%]'
    """
    if not len(arm) == len(bound) == len(control):
        raise ValueError(f"a gap share pairs seeds: got {len(arm)}, {len(bound)} and {len(control)} values")
    gains = [(a - c, b - c) for a, b, c in zip(arm, bound, control)]

    def share(draw: Sequence[tuple[float, float]]) -> float:
        bound_gain = sum(b for _, b in draw)
        return sum(a for a, _ in draw) / bound_gain if bound_gain > 0 else float("nan")

    rng = random.Random(seed)
    shares = sorted(s for s in (share(rng.choices(gains, k=len(gains))) for _ in range(reps)) if s == s)
    if not gains or not shares:
        return GapShare(share(gains) if gains else float("nan"), float("nan"), float("nan"))
    return GapShare(share(gains), shares[int(0.025 * len(shares))], shares[int(0.975 * len(shares)) - 1])
