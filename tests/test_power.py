"""Equivalence (TOST) and power: the tools the pre-registered malaria plan sizes its draws with."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from synthaug.stats import EQUIVALENT, NOT_EQUIVALENT, minimum_detectable_effect, pairs_needed, tost


def test_tost_matches_two_one_sided_t_tests():
    rng = np.random.default_rng(0)
    treated, baseline = rng.normal(0.805, 0.02, 12), rng.normal(0.8, 0.02, 12)
    result = tost(treated, baseline, margin=0.02)
    d = treated - baseline
    p_low = sps.ttest_1samp(d, -0.02, alternative="greater").pvalue
    p_high = sps.ttest_1samp(d, 0.02, alternative="less").pvalue
    assert result["p"] == pytest.approx(max(p_low, p_high), rel=1e-9)
    half = sps.t.ppf(0.95, 11) * d.std(ddof=1) / math.sqrt(12)
    assert (result["lo"], result["hi"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)


def test_tost_shows_equivalence_only_when_the_interval_sits_inside_the_margin():
    base = np.linspace(0.7, 0.9, 30)
    close = base + np.tile([0.002, -0.002, 0.001], 10)
    assert tost(close, base, margin=0.02)["verdict"] == EQUIVALENT
    far = base + 0.03 + np.tile([0.002, -0.002, 0.001], 10)
    assert tost(far, base, margin=0.02)["verdict"] == NOT_EQUIVALENT
    noisy = base + np.tile([0.1, -0.1, 0.0], 10)
    assert tost(noisy, base, margin=0.02)["verdict"] == NOT_EQUIVALENT


def test_tost_refuses_a_bad_margin_and_reports_too_few_pairs():
    with pytest.raises(ValueError, match="margin"):
        tost([0.1, 0.2], [0.1, 0.2], margin=0)
    assert tost([0.1], [0.2], margin=0.02)["verdict"] == "too few seeds to tell"


@pytest.mark.parametrize("n, family", [(5, 18), (30, 4), (12, 1)])
def test_minimum_detectable_effect_has_the_asked_power(n, family):
    sd = 0.025
    effect = minimum_detectable_effect(sd, n, family=family)
    level = 0.05 / family
    crit = sps.t.ppf(1 - level / 2, n - 1)
    shift = effect / (sd / math.sqrt(n))
    exact = sps.nct.sf(crit, n - 1, shift) + np.nan_to_num(sps.nct.cdf(-crit, n - 1, shift))
    assert exact == pytest.approx(0.8, abs=1e-6)
    # and the rough normal-theory figure agrees for many pairs
    if n >= 30:
        assert effect == pytest.approx((sps.norm.ppf(1 - level / 2) + sps.norm.ppf(0.8)) * sd / math.sqrt(n), rel=0.1)


def test_pairs_needed_is_the_first_n_that_detects_the_effect():
    n = pairs_needed(0.026, 0.02, family=4)
    assert minimum_detectable_effect(0.026, n, family=4) <= 0.02 < minimum_detectable_effect(0.026, n - 1, family=4)
    assert pairs_needed(0.026, 0.02, family=4, minimum=30) >= 30
    with pytest.raises(ValueError, match="positive effect"):
        pairs_needed(0.02, 0.0)
