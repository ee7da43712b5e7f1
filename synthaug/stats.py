"""Statistics over seeds: t-intervals, paired differences, Holm's correction, verdicts. Pure functions."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

HELPS = "helps"
HURTS = "hurts"
NO_DIFFERENCE = "no significant difference"
TOO_FEW_SEEDS = "too few seeds to tell"
TOO_FEW_DISTINCT = "too few distinct values"
NO_SYNTHETIC = "validation chose no synthetic"

# Paired differences closer than this count as one value: metrics of one test set differ by multiples of
# 1/n, so a gap this small is float rounding (0.8 - 0.7 != 0.9 - 0.8 in binary), not a second value.
DISTINCT_TOLERANCE = 1e-9


def t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval over ``values`` (one per seed). NaN CI for n < 2.

    The interval is not clipped to a metric's range: with few seeds it can pass 0 or 1, and a reader
    should see that rather than a bound that looks measured."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(confidence, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def distinct_values(values: Sequence[float], tolerance: float = DISTINCT_TOLERANCE) -> int:
    """How many different values ``values`` holds, values within ``tolerance`` of their neighbour counted once."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    return 0 if len(x) == 0 else 1 + int(np.count_nonzero(np.diff(x) > tolerance))


def paired_difference(treated: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean of ``treated - baseline`` (paired by seed), its t-interval, the paired t-test p-value, the
    number of pairs ``n`` and of ``distinct`` differences.

    When every paired difference is the same value (``distinct == 1`` with ``n >= 2``) the spread is 0:
    the t statistic is undefined, and a zero-width interval would claim certainty that a handful of
    seeds cannot give. Interval and p are then NaN, and ``verdict_of`` says "too few distinct values".
    """
    a, b = np.asarray(treated, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired difference needs equal lengths, got {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    n, distinct = len(d), distinct_values(d)
    mean, lo, hi = mean_ci(d, confidence)
    p = math.nan
    if n >= 2 and distinct == 1:
        lo = hi = math.nan
    elif n >= 2:
        from scipy import stats

        t = mean / (float(d.std(ddof=1)) / math.sqrt(n))
        p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"mean": mean, "lo": lo, "hi": hi, "p": p, "n": n, "distinct": distinct}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    The k-th smallest of the m p-values is multiplied by (m - k + 1), capped at 1, and made monotone
    (never below the adjusted value of a smaller p). NaN entries (no test: too few seeds, constant
    differences, validation chose no synthetic) stay NaN and are not counted in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return [float(v) for v in out]


def verdict(lo: float, hi: float) -> str:
    """"helps" when the whole CI of the difference is above 0, "hurts" when below, else no significant difference."""
    if math.isnan(lo) or math.isnan(hi):
        return TOO_FEW_SEEDS
    if lo > 0:
        return HELPS
    if hi < 0:
        return HURTS
    return NO_DIFFERENCE


def verdict_of(diff: Mapping[str, float], *, p: float | None = None, alpha: float = 0.05) -> str:
    """The verdict of a ``paired_difference``: "too few seeds to tell" under 2 pairs, "too few distinct
    values" when the differences are constant; else, with ``p`` (e.g. Holm-adjusted) given, "helps" /
    "hurts" by the sign of the mean when ``p < alpha``; without ``p``, by the interval (raw p < 0.05)."""
    if diff.get("n", 0) < 2:
        return TOO_FEW_SEEDS
    if diff.get("distinct", 2) <= 1:
        return TOO_FEW_DISTINCT
    if p is None:
        return verdict(diff["lo"], diff["hi"])
    if math.isnan(p):
        return TOO_FEW_SEEDS
    if p < alpha:
        return HELPS if diff["mean"] > 0 else HURTS
    return NO_DIFFERENCE


EQUIVALENT = "equivalent within the margin"
NOT_EQUIVALENT = "equivalence not shown"


def tost(treated: Sequence[float], baseline: Sequence[float], *, margin: float, alpha: float = 0.05) -> dict[str, Any]:
    """Paired two one-sided tests (Schuirmann's TOST) of ``|mean(treated - baseline)| < margin``.

    ``p`` is the larger of the two one-sided p-values; equivalence is shown when ``p < alpha``, which is the
    same as the ``1 - 2 alpha`` t-interval of the mean difference lying inside ``(-margin, +margin)``
    (returned as ``lo``/``hi``). ``upper`` is the one-sided ``1 - alpha`` upper bound: the largest gain the data
    do not exclude. Fewer than two pairs, or no spread, give NaN and ``verdict`` "too few seeds to tell".
    """
    from scipy import stats

    if not margin > 0:
        raise ValueError(f"margin={margin!r}: give the equivalence margin as a positive number, e.g. 0.02")
    d = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    d = d[~np.isnan(d)]
    n = len(d)
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    if n < 2 or not sd > 0:
        return {"mean": float(d.mean()) if n else math.nan, "lo": math.nan, "hi": math.nan, "upper": math.nan,
                "p": math.nan, "n": n, "margin": margin, "verdict": TOO_FEW_SEEDS}
    mean, se = float(d.mean()), sd / math.sqrt(n)
    p_lower = float(stats.t.sf((mean + margin) / se, n - 1))   # H0: mean <= -margin
    p_upper = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
    half = float(stats.t.ppf(1 - alpha, n - 1)) * se
    p = max(p_lower, p_upper)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "upper": mean + half, "p": p, "n": n,
            "margin": margin, "verdict": EQUIVALENT if p < alpha else NOT_EQUIVALENT}


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, family: int = 1,
                              power: float = 0.8) -> float:
    """The smallest true mean paired difference a two-sided paired t-test over ``n`` pairs detects with
    ``power``, at level ``alpha / family`` (Bonferroni: the threshold of Holm's first step, so conservative for
    every row of a Holm family of ``family`` tests); ``sd``: the SD of the paired differences. Exact: the
    power comes from the noncentral t distribution, solved for the effect."""
    from scipy import optimize, stats

    if n < 2:
        raise ValueError(f"n={n}: a paired t-test needs at least 2 pairs")
    if not 0 < power < 1 or not 0 < alpha < 1 or family < 1:
        raise ValueError(f"power={power}, alpha={alpha}, family={family}: give 0 < power, alpha < 1 and family >= 1")
    if sd == 0:
        return 0.0
    dof, crit = n - 1, float(stats.t.ppf(1 - alpha / family / 2, n - 1))

    def shortfall(shift: float) -> float:  # shift: the effect in standard errors
        wrong_tail = float(np.nan_to_num(stats.nct.cdf(-crit, dof, shift), nan=0.0))  # NaN: underflow to 0
        return float(stats.nct.sf(crit, dof, shift)) + wrong_tail - power

    high = crit + float(stats.norm.ppf(power))  # the normal-theory shift, then widened until it brackets
    while shortfall(high) < 0:
        high *= 1.5
    shift = optimize.brentq(shortfall, 0.0, high)
    return shift * sd / math.sqrt(n)


def pairs_needed(sd: float, effect: float, *, alpha: float = 0.05, family: int = 1, power: float = 0.8,
                 minimum: int = 2, maximum: int = 100_000) -> int:
    """The fewest pairs whose ``minimum_detectable_effect`` is at most ``effect`` (at least ``minimum``)."""
    if not effect > 0 or not sd >= 0:
        raise ValueError(f"effect={effect!r}, sd={sd!r}: give a positive effect and a non-negative SD")
    n = max(2, minimum)
    while minimum_detectable_effect(sd, n, alpha=alpha, family=family, power=power) > effect:
        n += 1
        if n > maximum:
            raise ValueError(f"more than {maximum} pairs needed to detect {effect} with SD {sd}")
    return n
