"""Run old Keras code and report what it did (appendix "From TF 2.2-era Keras").

Old idioms fail in three ways in Keras 3: they raise, they warn (through Python's
``warnings`` or through a logger, which writes to stderr), or they run and quietly
compute something else. :func:`capture_outcome` catches the first two so that an
executed page can print them instead of spilling them onto stderr. While it runs,
the loggers of :data:`CAPTURED_LOGGERS` write nowhere else; records below
WARNING (TensorFlow's "Assets written to ..." notes, say) are dropped.
"""

import dataclasses
import logging
import textwrap
import warnings

# Loggers whose records we capture: Keras warns through absl's logger.
CAPTURED_LOGGERS = ("absl", "keras", "tensorflow")
WIDTH = 88  # printed lines stay as narrow as the book's code listings


@dataclasses.dataclass
class Outcome:
    """What one call did: value, exception, warnings (appendix on migrating)."""

    value: object = None
    error: Exception = None  # the exception it raised, or None
    warnings: list = dataclasses.field(default_factory=list)  # Python's, then logs'

    def describe(self, width=WIDTH):
        """Return a short report, one wrapped paragraph per warning or error."""
        parts = [f"warning: {message}" for message in self.warnings]
        if self.error is not None:
            parts.append(f"raised {type(self.error).__name__}: {self.error}")
        elif not parts:
            parts.append(f"ran without a warning and returned {self.value!r}")
        return "\n".join(
            textwrap.fill(" ".join(part.split()), width, subsequent_indent="    ")
            for part in parts
        )


class _RecordMessages(logging.Handler):
    """Logging handler that keeps WARNING and higher messages, drops the rest."""

    def __init__(self, messages):
        super().__init__(level=logging.WARNING)
        self.messages = messages

    def emit(self, record):
        self.messages.append(record.getMessage())


def capture_outcome(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)``; return its :class:`Outcome` (migration appendix)."""
    if not callable(fn):
        raise TypeError(
            f"capture_outcome expects a callable, got {type(fn).__name__}; "
            "pass the function itself, e.g. capture_outcome(model.save, 'dir')."
        )
    outcome = Outcome()
    handler = _RecordMessages(outcome.warnings)
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    saved = [(logger.handlers, logger.propagate) for logger in loggers]
    for logger in loggers:  # only our handler sees their records, none reach stderr
        logger.handlers, logger.propagate = [handler], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                outcome.value = fn(*args, **kwargs)
            except Exception as err:  # the error is the result being reported
                outcome.error = err
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate
    outcome.warnings[:0] = [str(w.message) for w in caught]
    return outcome
