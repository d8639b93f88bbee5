"""Building block: argument validators, one message style.

Each returns the value (as int/float/tuple) when it is acceptable and raises a
``ValueError`` that names the argument, what it must be and what it got. Bools
are never numbers here: ``True`` is not a count.
"""

import math
import numbers


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(name, value, *, allow_none=False, hint=""):
    """``value`` as an int >= 1 (or None if ``allow_none``), else a ValueError."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        also = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive int{also}, got {value!r}.{hint}")
    return int(value)


def non_negative_int(name, value, *, hint=""):
    """``value`` as an int >= 0, else a ValueError."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}.{hint}")
    return int(value)


def positive_number(name, value, *, allow_none=False, hint=""):
    """``value`` as a number > 0 (or None if ``allow_none``), else a ValueError."""
    if value is None and allow_none:
        return None
    if not _is_number(value) or not value > 0:
        also = " or None" if allow_none else ""
        raise ValueError(
            f"{name} must be a positive number{also}, got {value!r}.{hint}"
        )
    return value


def non_negative_number(name, value, *, finite=False, hint=""):
    """``value`` as a number >= 0 (and finite if ``finite``), else a ValueError."""
    if (not _is_number(value) or not value >= 0
            or (finite and not math.isfinite(value))):
        kind = "finite, non-negative" if finite else "non-negative"
        raise ValueError(f"{name} must be a {kind} number, got {value!r}.{hint}")
    return value


def positive_ints(name, values, *, hint=""):
    """``values`` as a non-empty tuple of ints >= 1, else a ValueError."""
    values = tuple(values)
    if not values or not all(_is_int(v) and v >= 1 for v in values):
        raise ValueError(
            f"{name} must be a tuple of positive ints, got {values!r}.{hint}"
        )
    return tuple(int(v) for v in values)
