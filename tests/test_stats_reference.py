"""Statistics over seeds against references: scipy's paired t-test and t intervals written out by hand.

The interval is ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)`` with the sample standard deviation (ddof=1).
For 1, 2 and 4 degrees of freedom the t quantile and the two-sided p-value have closed forms, so those
cases are checked without scipy's t distribution at all; the others use ``scipy.stats.t`` for the
quantile and ``scipy.stats.ttest_rel`` for the p-value, an implementation independent of synthaug's.
Holm's correction is checked against values worked by hand (and statsmodels' ``multipletests`` where it
is installed; it is not a dependency).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from synthaug.stats import TOO_FEW_DISTINCT, holm, mean_ci, paired_difference, t_quantile, verdict, verdict_of

TOL = dict(rel_tol=1e-9, abs_tol=1e-12)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, **TOL)


def t_975_closed_form(dof: int) -> float:
    """t_{0.975, dof} for dof 1 (Cauchy), 2 and 4, from the closed-form inverses of the t CDF."""
    p = 0.975
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if dof == 4:
        alpha = 4 * p * (1 - p)
        q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
        return 2 * math.sqrt(q - 1)
    raise ValueError(dof)


def two_sided_p_closed_form(t: float, dof: int) -> float:
    """P(|T| >= |t|) for dof 1 and 2."""
    t = abs(t)
    if dof == 1:
        return 1 - 2 / math.pi * math.atan(t)
    if dof == 2:
        return 1 - t / math.sqrt(2 + t * t)
    raise ValueError(dof)


def hand_interval(values: np.ndarray, t: float) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


# Fixed (treated, baseline) pairs over seeds: two to five seeds, both signs, and a larger random draw.
rng = np.random.default_rng(20240611)
_base10 = rng.normal(0.80, 0.03, 10)
_base30 = rng.normal(0.70, 0.05, 30)
CASES = {
    "n2": ([0.81, 0.86], [0.80, 0.82]),
    "n3": ([0.91, 0.88, 0.93], [0.87, 0.86, 0.90]),
    "n3-negative": ([0.70, 0.74, 0.69], [0.75, 0.76, 0.71]),
    "n5": ([0.80, 0.84, 0.79, 0.83, 0.86], [0.78, 0.80, 0.80, 0.79, 0.81]),
    "n5-mixed-signs": ([0.80, 0.79, 0.83, 0.77, 0.82], [0.81, 0.78, 0.80, 0.79, 0.80]),
    "n10": (list(_base10 + rng.normal(0.01, 0.02, 10)), list(_base10)),
    "n30": (list(_base30 - rng.normal(0.005, 0.03, 30)), list(_base30)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_paired_difference_equals_scipy_ttest_rel_and_the_hand_interval(name):
    treated, baseline = CASES[name]
    d = paired_difference(treated, baseline)
    diffs = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    n = len(diffs)
    mean, lo, hi = hand_interval(diffs, float(stats.t.ppf(0.975, n - 1)))
    assert d["n"] == n
    assert close(d["mean"], mean) and close(d["lo"], lo) and close(d["hi"], hi)
    assert close(d["p"], float(stats.ttest_rel(treated, baseline).pvalue))


@pytest.mark.parametrize("dof", [1, 2, 4])
def test_t_quantile_equals_the_closed_forms(dof):
    assert close(t_quantile(0.95, dof), t_975_closed_form(dof))


@pytest.mark.parametrize("name", ["n2", "n3", "n3-negative", "n5", "n5-mixed-signs"])
def test_small_cases_against_closed_forms_without_scipy(name):
    treated, baseline = CASES[name]
    diffs = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    n = len(diffs)
    d = paired_difference(treated, baseline)
    mean, lo, hi = hand_interval(diffs, t_975_closed_form(n - 1))
    assert close(d["mean"], mean) and close(d["lo"], lo) and close(d["hi"], hi)
    if n - 1 in (1, 2):
        sd = math.sqrt(sum((v - mean) ** 2 for v in diffs) / (n - 1))
        assert close(d["p"], two_sided_p_closed_form(mean / (sd / math.sqrt(n)), n - 1))


@pytest.mark.parametrize("values", [[0.8, 0.9, 1.0], [0.71, 0.69, 0.74, 0.70, 0.72], list(_base10), list(_base30)])
@pytest.mark.parametrize("confidence", [0.95, 0.90, 0.99])
def test_mean_ci_equals_the_hand_interval(values, confidence):
    n = len(values)
    expected = hand_interval(np.asarray(values), float(stats.t.ppf(0.5 + confidence / 2, n - 1)))
    got = mean_ci(values, confidence)
    assert all(close(g, e) for g, e in zip(got, expected)), (got, expected)
    # the same interval scipy gives for a mean (t distribution, scale = standard error)
    lo, hi = stats.t.interval(confidence, n - 1, loc=np.mean(values), scale=stats.sem(values))
    assert close(got[1], float(lo)) and close(got[2], float(hi))


def test_pairs_with_a_missing_value_are_dropped_as_scipy_omits_them():
    treated = [0.81, math.nan, 0.86, 0.84, 0.83]
    baseline = [0.80, 0.79, 0.82, math.nan, 0.80]
    d = paired_difference(treated, baseline)
    keep = [0, 2, 4]
    reference = stats.ttest_rel([treated[i] for i in keep], [baseline[i] for i in keep])
    assert d["n"] == 3
    assert close(d["p"], float(reference.pvalue))
    assert close(d["p"], float(stats.ttest_rel(treated, baseline, nan_policy="omit").pvalue))
    mean, lo, hi = hand_interval(np.array([treated[i] - baseline[i] for i in keep]), t_975_closed_form(2))
    assert close(d["mean"], mean) and close(d["lo"], lo) and close(d["hi"], hi)


# --------------------------------------------------------------------------- the constant-difference branch
# Exactly representable values, so every paired difference is the same float and sd is exactly 0. scipy's
# t statistic is then undefined (0/0 or x/0). A zero-width interval would read as certainty ("helps" from
# three identical differences); synthaug gives no interval, no p and the verdict "too few distinct values".
@pytest.mark.parametrize(("treated", "baseline", "mean"), [
    ([1.5, 2.5, 3.5, 4.5], [1.0, 2.0, 3.0, 4.0], 0.5),
    ([0.75, 0.5, 0.25], [1.0, 0.75, 0.5], -0.25),
    ([0.8, 0.9, 0.7], [0.8, 0.9, 0.7], 0.0),
])
def test_constant_paired_differences_give_no_verdict(treated, baseline, mean):
    diffs = np.asarray(treated) - np.asarray(baseline)
    assert (diffs == diffs[0]).all() and diffs.std(ddof=1) == 0  # the premise: truly constant
    d = paired_difference(treated, baseline)
    assert d["mean"] == mean and d["n"] == len(treated) and d["distinct"] == 1
    assert math.isnan(d["lo"]) and math.isnan(d["hi"]) and math.isnan(d["p"])
    assert verdict_of(d) == TOO_FEW_DISTINCT == "too few distinct values"
    assert verdict_of(d, p=0.001) == TOO_FEW_DISTINCT  # an adjusted p cannot rescue it


def test_differences_equal_but_for_float_rounding_are_constant_too():
    """0.8 - 0.7 and 0.9 - 0.8 differ in the last bits: scipy then finds p ~ 0 from rounding noise."""
    treated, baseline = [0.8, 0.9, 0.7], [0.7, 0.8, 0.6]
    diffs = np.asarray(treated) - np.asarray(baseline)
    with warnings.catch_warnings():  # scipy warns of the cancellation, then answers anyway
        warnings.simplefilter("ignore", RuntimeWarning)
        naive = float(stats.ttest_rel(treated, baseline).pvalue)
    assert diffs.std(ddof=1) > 0 and naive < 1e-6  # the premise
    d = paired_difference(treated, baseline)
    assert d["distinct"] == 1 and math.isnan(d["p"]) and verdict_of(d) == TOO_FEW_DISTINCT


def test_two_distinct_values_are_tested():
    d = paired_difference([0.9, 0.9, 0.8], [0.8, 0.8, 0.8])  # differences 0.1, 0.1, 0.0
    assert d["distinct"] == 2 and d["n"] == 3
    assert close(d["p"], float(stats.ttest_rel([0.9, 0.9, 0.8], [0.8, 0.8, 0.8]).pvalue))
    assert verdict_of(d) == verdict(d["lo"], d["hi"])


# --------------------------------------------------------------------------- Holm's step-down correction
# Worked by hand: sort, multiply the k-th smallest of m by (m - k + 1), cap at 1, carry the running maximum.
@pytest.mark.parametrize(("raw", "adjusted"), [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),   # 0.005*4, 0.01*3, 0.03*2, max(0.06, 0.04*1)
    ([0.5, 0.2], [0.5, 0.4]),                                  # 0.2*2, 0.5*1
    ([0.6, 0.7], [1.0, 1.0]),                                  # 0.6*2 capped at 1, then max(1, 0.7)
    ([0.01, 0.01, 0.2], [0.03, 0.03, 0.2]),                    # ties: 0.01*3, max(0.03, 0.01*2), 0.2*1
    ([0.04], [0.04]),                                          # one test: nothing to correct
    ([], []),
])
def test_holm_against_hand_computed_values(raw, adjusted):
    got = holm(raw)
    assert len(got) == len(adjusted) and all(close(g, e) for g, e in zip(got, adjusted)), got


def test_holm_leaves_untested_rows_out_of_the_family():
    got = holm([0.02, math.nan, 0.5, 0.01])   # m = 3: 0.01*3, 0.02*2, 0.5*1
    assert math.isnan(got[1])
    assert [close(g, e) for g, e in zip([got[0], got[2], got[3]], [0.04, 0.5, 0.03])] == [True] * 3
    assert all(math.isnan(v) for v in holm([math.nan, math.nan]))


def test_holm_is_never_below_raw_and_keeps_the_order():
    raw = list(np.random.default_rng(7).uniform(0, 0.2, 12))
    got = holm(raw)
    assert all(g >= r for g, r in zip(got, raw))
    order = np.argsort(raw)
    assert all(got[order[i]] <= got[order[i + 1]] for i in range(len(raw) - 1))


def test_holm_equals_statsmodels_when_installed():
    multitest = pytest.importorskip("statsmodels.stats.multitest")  # not a dependency: skipped without it
    raw = list(np.random.default_rng(3).uniform(0, 0.3, 15))
    reject, expected, _, _ = multitest.multipletests(raw, alpha=0.05, method="holm")
    assert all(close(g, float(e)) for g, e in zip(holm(raw), expected))


def test_the_verdict_reads_the_adjusted_p():
    d = paired_difference([0.84, 0.86, 0.85, 0.88], [0.80, 0.81, 0.80, 0.82])
    assert d["p"] < 0.01 and verdict_of(d) == "helps"        # raw: significant
    assert verdict_of(d, p=0.06) == "no significant difference"  # adjusted above alpha: not a gain
    assert verdict_of(d, p=0.01) == "helps"
    worse = paired_difference([0.80, 0.81, 0.80, 0.82], [0.84, 0.86, 0.85, 0.88])
    assert verdict_of(worse, p=0.01) == "hurts"


def test_one_pair_gives_no_interval_and_no_p():
    d = paired_difference([0.9], [0.8])
    assert d["n"] == 1 and close(d["mean"], 0.1)
    assert math.isnan(d["lo"]) and math.isnan(d["hi"]) and math.isnan(d["p"])
    assert verdict(d["lo"], d["hi"]) == "too few seeds to tell" == verdict_of(d)
    empty = paired_difference([math.nan, 0.5], [0.5, math.nan])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("mean", "lo", "hi", "p"))
