"""Statistics over seeds: t-intervals, paired differences, verdicts. Pure functions."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval over ``values`` (one per seed). NaN CI for n < 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(confidence, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def paired_difference(treated: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean of ``treated - baseline`` (paired by seed), its t-interval, and the paired t-test p-value."""
    a, b = np.asarray(treated, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired difference needs equal lengths, got {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    mean, lo, hi = mean_ci(d, confidence)
    n = len(d)
    if n < 2:
        p = math.nan
    else:
        sd = float(d.std(ddof=1))
        if sd == 0:
            p = 1.0 if mean == 0 else 0.0
        else:
            from scipy import stats

            t = mean / (sd / math.sqrt(n))
            p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"mean": mean, "lo": lo, "hi": hi, "p": p, "n": n}


def verdict(lo: float, hi: float) -> str:
    """"helps" when the whole CI of the difference is above 0, "hurts" when below, else no significant difference."""
    if math.isnan(lo) or math.isnan(hi):
        return "too few seeds to tell"
    if lo > 0:
        return "helps"
    if hi < 0:
        return "hurts"
    return "no significant difference"
