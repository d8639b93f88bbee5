"""fitbook.checks: each validator accepts what it promises and explains the rest."""

import numpy as np
import pytest

from fitbook import checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_and_returns_int(value):
    assert checks.positive_int("n", value) == int(value)
    assert type(checks.positive_int("n", value)) is int


@pytest.mark.parametrize("value", [0, -1, 1.0, True, None, "2"])
def test_positive_int_rejects(value):
    with pytest.raises(ValueError, match=r"n must be a positive int, got"):
        checks.positive_int("n", value)


def test_allow_none_and_hint():
    assert checks.positive_int("k", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"positive int or None, got 0\. try 1"):
        checks.positive_int("k", 0, allow_none=True, hint=" try 1")
    assert checks.positive_number("c", None, allow_none=True) is None


def test_non_negative_int():
    assert checks.non_negative_int("i", 0) == 0
    for bad in (-1, 0.5, False):
        with pytest.raises(ValueError, match="i must be a non-negative int"):
            checks.non_negative_int("i", bad)


def test_numbers():
    assert checks.positive_number("lr", 0.5) == 0.5
    assert checks.non_negative_number("w", 0) == 0
    for bad in (0, -0.1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="lr must be a positive number"):
            checks.positive_number("lr", bad)
    with pytest.raises(ValueError, match="w must be a finite, non-negative number"):
        checks.non_negative_number("w", float("inf"), finite=True)
    assert checks.non_negative_number("w", float("inf")) == float("inf")


def test_positive_ints():
    assert checks.positive_ints("shape", [28, np.int64(28), 1]) == (28, 28, 1)
    for bad in ((), (28, 0), (28, None), (2.0,)):
        with pytest.raises(ValueError, match="shape must be a tuple of positive ints"):
            checks.positive_ints("shape", bad)
