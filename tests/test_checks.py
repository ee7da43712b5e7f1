"""synthaug.checks: the one set of option validators; each message names owner, option and value."""
from __future__ import annotations

import numpy as np
import pytest

from synthaug.checks import check_bool, check_choice, check_float, check_int, check_range, did_you_mean, is_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_int_accepts_integers_and_returns_python_int(value):
    out = check_int(value, "n", "m")
    assert out == value and type(out) is int


@pytest.mark.parametrize("value, kwargs, message", [
    (0, {}, "m: n=0 must be an integer >= 1"),
    (True, {}, "m: n=True must be an integer >= 1"),
    (2.0, {}, "m: n=2.0 must be an integer >= 1"),
    (5, {"minimum": 1, "maximum": 3}, "m: n=5 must be an integer from 1 to 3"),
    (-1, {"minimum": None, "maximum": -2}, "m: n=-1 must be an integer <= -2"),
    ("3", {"minimum": None}, "m: n='3' must be an integer"),
])
def test_check_int_refuses_with_the_owner_option_and_value(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        check_int(value, "n", "m", **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("value, kwargs, message", [
    (1.0, {"minimum": 0, "maximum": 1, "max_inclusive": False}, "x: r=1.0 must be a number in [0, 1)"),
    (0, {"minimum": 0, "min_inclusive": False}, "x: r=0 must be a number > 0"),
    (float("nan"), {}, "x: r=nan must be a finite number"),
    (float("inf"), {"minimum": 0}, "x: r=inf must be a number >= 0"),
    (False, {}, "x: r=False must be a finite number"),
    (3, {"maximum": 1}, "x: r=3 must be a number <= 1"),
])
def test_check_float_refuses_out_of_bounds_and_non_numbers(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        check_float(value, "r", "x", **kwargs)
    assert str(err.value) == message


def test_check_float_and_range_accept_bounds_they_include():
    assert check_float(0, "r", minimum=0, maximum=1) == 0.0
    assert check_float(np.float32(0.5), "r", minimum=0, maximum=1) == 0.5
    assert check_range(0.0, "ratio", "S", 0, 1) == 0.0
    with pytest.raises(ValueError, match=r"S: ratio=1 must be a number in \[0, 1\) \(the share\)"):
        check_range(1, "ratio", "S", 0, 1, "the share")


def test_check_choice_suggests_the_closest_choice():
    assert check_choice("hinge", "loss", "cgan", ("bce", "hinge")) == "hinge"
    with pytest.raises(ValueError) as err:
        check_choice("hinje", "loss", "cgan", ("bce", "hinge"))
    assert str(err.value) == "cgan: loss='hinje': use one of ['bce', 'hinge'] (did you mean 'hinge'?)"
    assert did_you_mean("zzz", ["bce", "hinge"]) == "" and did_you_mean(3, ["a"]) == ""


def test_check_bool_and_is_int():
    assert check_bool(np.bool_(True), "ema") is True
    with pytest.raises(ValueError, match="g: ema=1 must be true or false"):
        check_bool(1, "ema", "g")
    assert is_int(np.int8(1)) and not is_int(True) and not is_int(1.0)
