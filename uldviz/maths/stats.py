r"""Paired comparisons over seeds: the interval a verdict is read from, and the family-wise error policy.

Two runs trained with the same seeds see the same windows in the same order, so their per-seed differences
:math:`d_s = a_s - b_s` remove the noise both share. With :math:`n` seeds, mean :math:`\bar d` and sample standard
deviation :math:`s_d`, the interval at confidence :math:`1-\ell` (:math:`\ell` the level a comparison is tested
at; the course keeps :math:`\alpha` for label smoothing, :mod:`uldviz.course.notation`) is Student's

.. math:: \bar d \pm t_{1-\ell/2,\;n-1}\, \frac{s_d}{\sqrt n}.

**The policy for a family** of comparisons fixed before the runs (:func:`holm_levels`): Holm's step-down at a
family-wise error rate :data:`ALPHA` = 0.05. Sort the :math:`m` two-sided p-values; the :math:`k`-th smallest is
tested at :math:`\ell_k = 0.05/(m-k+1)` until the first that fails, after which every later one is tested at that
failed level. Each comparison's interval is drawn at the level it is tested at, so **the verdict is read off the
interval**: "better" / "worse" when it excludes 0, otherwise "no difference larger than X", with X the interval's
farther end — never "no effect". (Bits per byte: lower is better, so a − b < 0 means a is better.)

Pure Python and numpy: the t distribution is computed here (regularised incomplete beta), checked against
``scipy.stats`` in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ALPHA",
    "t_cdf",
    "t_quantile",
    "PairedDifference",
    "paired_difference",
    "holm_levels",
    "Verdict",
    "judge_family",
]

#: The family-wise error rate of every verdict the kit prints.
ALPHA = 0.05


# --------------------------------------------------------------------------- Student's t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    r""":math:`I_x(a, b)`, the regularised incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    r""":math:`P(X \le t)` for :math:`X` Student's t distributed with ``df`` degrees of freedom:
    :math:`1 - \tfrac12 I_{df/(df+t^2)}(df/2, 1/2)`."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- one comparison
@dataclass(frozen=True)
class PairedDifference:
    """a − b over the seeds both runs have: the differences, their mean, sd, n, the t statistic and two-sided p."""

    seeds: tuple
    diffs: tuple
    mean: float
    sd: float
    n: int
    t: float
    p: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Student's interval for the mean difference at confidence ``level`` (n − 1 degrees of freedom)."""
        if self.n < 2:
            return (-math.inf, math.inf)
        half = t_quantile(0.5 + level / 2.0, self.n - 1) * self.sd / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)


def paired_difference(a: dict | list, b: dict | list, seeds_a=None, seeds_b=None) -> PairedDifference:
    """Pair ``a`` and ``b`` by seed (dicts seed -> value, or lists with their ``seeds_*``) and summarise a − b."""
    if not isinstance(a, dict):
        a = dict(zip(seeds_a if seeds_a is not None else range(len(a)), a))
    if not isinstance(b, dict):
        b = dict(zip(seeds_b if seeds_b is not None else range(len(b)), b))
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError("the two runs share no seed: a paired comparison needs the same seeds on both sides")
    d = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else math.nan
    if n < 2:
        t, p = math.nan, math.nan
    elif sd == 0:
        t, p = (math.copysign(math.inf, mean), 0.0) if mean else (0.0, 1.0)
    else:
        t = mean / (sd / math.sqrt(n))
        p = 2.0 * (1.0 - t_cdf(abs(t), n - 1))
    return PairedDifference(seeds, tuple(d), mean, sd, n, t, p)


# --------------------------------------------------------------------------- a family of comparisons
def holm_levels(pvalues, alpha: float = ALPHA) -> list[tuple[float, bool]]:
    """For each p-value: (the level Holm's step-down tests it at, rejected?), in the input order.

    The k-th smallest of m is tested at alpha / (m - k + 1) while every smaller one was rejected; after the first
    failure the remaining ones are tested at the failed level (and fail), so a comparison's interval at its level
    excludes 0 exactly when Holm rejects it. A NaN p-value (one seed) is never rejected.
    """
    ps = list(pvalues)
    m = len(ps)
    order = sorted(range(m), key=lambda i: (math.isnan(ps[i]), ps[i]))
    out: list = [None] * m
    stopped = None
    for k, i in enumerate(order):
        level = stopped if stopped is not None else alpha / (m - k)
        reject = stopped is None and not math.isnan(ps[i]) and ps[i] < level
        if not reject and stopped is None:
            stopped = level
        out[i] = (level, reject)
    return out


@dataclass(frozen=True)
class Verdict:
    """A comparison judged within its family: the difference, its interval at the tested level, and the words."""

    diff: PairedDifference
    level: float  # the family-wise level this comparison was tested at (alpha / (m - k + 1))
    low: float
    high: float
    decided: bool  # the interval excludes 0
    bound: float  # the largest |difference| the interval allows

    @property
    def words(self) -> str:
        """'better' / 'worse' (a vs b; lower bits per byte is better), or 'no difference larger than X'."""
        if self.decided:
            return "better" if self.diff.mean < 0 else "worse"
        return f"no difference larger than {self.bound:.3f}"

    @property
    def confidence(self) -> float:
        """The interval's confidence, 1 − level (two-sided)."""
        return 1.0 - self.level


def judge_family(diffs: list[PairedDifference], alpha: float = ALPHA) -> list[Verdict]:
    """Judge a family of paired differences with Holm's step-down: one :class:`Verdict` each, in the input order."""
    out = []
    for d, (level, reject) in zip(diffs, holm_levels([d.p for d in diffs], alpha)):
        lo, hi = d.interval(1.0 - level)
        decided = bool(reject)
        if not (lo > 0 or hi < 0) and decided:  # rounding at the boundary: the interval decides
            decided = False
        out.append(Verdict(d, level, lo, hi, decided, max(abs(lo), abs(hi))))
    return out
