"""capture_outcome reports values, errors, Python warnings and log records."""

import logging
import warnings

import keras
import pytest

from fitbook.migration import Outcome, capture_outcome


def warn_and_return(value):
    warnings.warn("old argument", UserWarning)
    return value


def log_warning():
    logging.getLogger("absl").warning("legacy format")


def test_value_is_returned_and_described():
    outcome = capture_outcome(sum, [1, 2, 3])
    assert outcome.value == 6 and outcome.error is None and outcome.warnings == []
    assert outcome.describe() == "ran without a warning and returned 6"


def test_error_is_captured_not_raised():
    outcome = capture_outcome(int, "seven")
    assert isinstance(outcome.error, ValueError)
    assert outcome.describe().startswith("raised ValueError: invalid literal")


def test_python_warning_is_captured(recwarn):
    outcome = capture_outcome(warn_and_return, 5)
    assert outcome.value == 5
    assert outcome.warnings == ["old argument"]
    assert len(recwarn) == 0, "the warning escaped capture_outcome"


def log_to_tensorflow():
    logger = logging.getLogger("tensorflow")
    logger.info("Assets written to somewhere")
    logger.warning("tf warning")


@pytest.fixture
def tensorflow_logger_with_own_handler():
    """The 'tensorflow' logger as TensorFlow sets it up: its own stderr handler."""
    logger = logging.getLogger("tensorflow")
    saved = logger.handlers, logger.level
    logger.handlers, logger.level = [logging.StreamHandler()], logging.INFO
    yield logger
    logger.handlers, logger.level = saved


def test_log_record_is_captured_and_kept_off_stderr(capfd):
    absl = logging.getLogger("absl")
    before = absl.handlers[:], absl.propagate
    outcome = capture_outcome(log_warning)
    assert outcome.warnings == ["legacy format"]
    assert capfd.readouterr().err == ""
    assert (absl.handlers, absl.propagate) == before, "absl logger not restored"


def test_logger_with_its_own_handler_stays_quiet(
    capfd, tensorflow_logger_with_own_handler
):
    own = tensorflow_logger_with_own_handler.handlers[:]
    outcome = capture_outcome(log_to_tensorflow)
    assert outcome.warnings == ["tf warning"], "INFO dropped, WARNING kept"
    assert capfd.readouterr().err == ""
    assert tensorflow_logger_with_own_handler.handlers == own


def test_describe_wraps_long_messages():
    outcome = Outcome(error=RuntimeError("word " * 60))
    lines = outcome.describe(width=40).splitlines()
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert all(line.startswith("    ") for line in lines[1:])


def test_real_keras3_idioms():
    leaky = capture_outcome(keras.layers.LeakyReLU, alpha=0.3)
    assert leaky.value.negative_slope == pytest.approx(0.3)
    assert any("negative_slope" in message for message in leaky.warnings)
    reset = capture_outcome(lambda: keras.metrics.Mean().reset_states())
    assert isinstance(reset.error, AttributeError)


def test_non_callable_is_a_clear_error():
    with pytest.raises(TypeError, match="expects a callable"):
        capture_outcome("model.save")
