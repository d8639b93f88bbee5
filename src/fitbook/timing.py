"""Time training runs fairly: warm-up, alternating rounds, best round.

One timing function, :func:`time_runs`, serves every throughput number in the
book: the chapters "What fit() does", "Training loops from scratch", "Scaling
out with tf.distribute" and "Performance", and the scripts in ``benchmarks/``.
It needs nothing but TensorFlow, so every other module can import it.
"""

import dataclasses
import functools
import html
import math
import statistics
import time

import tensorflow as tf

from fitbook.checks import positive_int


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Timed rounds of one contender (chapter "Performance").

    Every round ran ``steps`` training steps of ``batch_size`` samples; the best
    (shortest) round counts, since other work on the machine only slows it down.
    """

    name: str
    steps: int
    seconds: tuple  # wall-clock seconds of each timed round
    batch_size: int = 1

    @property
    def steps_per_second(self):
        """Steps per second of the best round."""
        return self.steps / min(self.seconds)

    @property
    def samples_per_second(self):
        """Samples per second of the best round."""
        return self.steps_per_second * self.batch_size

    @property
    def spread(self):
        """Median round time over the best one: 1.0 on a quiet machine."""
        return statistics.median(self.seconds) / min(self.seconds)

    @property
    def median_steps_per_second(self):
        """Steps per second of the median round."""
        return self.steps / statistics.median(self.seconds)

    def ratio(self, baseline):
        """This contender's steps per second over ``baseline``'s."""
        return self.steps_per_second / baseline.steps_per_second


def finish(result):
    """``result`` with every tensor read back to NumPy, so queued work is done."""
    return tf.nest.map_structure(
        lambda v: v.numpy() if isinstance(v, (tf.Tensor, tf.Variable)) else v,
        result,
    )


def epoch_steps(n, batch_size):
    """Steps in one epoch of ``n`` samples: the last batch may be partial."""
    return math.ceil(positive_int("n", n) / positive_int("batch_size", batch_size))


def time_runs(runs, steps, rounds=3, warmup=1, batch_size=1):
    """Time each callable of ``runs`` (name -> run); return name -> Measurement.

    Every call of a run must perform ``steps`` training steps. Each run is first
    called ``warmup`` times untimed (tracing, compiling, filling caches); then
    ``rounds`` rounds call every run once in turn, so a burst of load from other
    processes hits all of them alike. Whatever a run returns is read back
    (:func:`finish`) before the clock stops.
    """
    positive_int("steps", steps)
    positive_int("rounds", rounds)
    positive_int("batch_size", batch_size)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}.")
    if not runs:
        raise ValueError("runs is empty: pass a dict of name -> callable.")
    for run in runs.values():
        for _ in range(warmup):
            finish(run())
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            finish(run())
            seconds[name].append(time.perf_counter() - start)
    return {
        name: Measurement(name, steps, tuple(s), batch_size)
        for name, s in seconds.items()
    }


def time_run(name, run, steps, repeats=3, batch_size=1):
    """The Measurement of one contender: ``time_runs({name: run}, ...)[name]``."""
    return time_runs({name: run}, steps, rounds=repeats, batch_size=batch_size)[name]


def step_run(step, steps):
    """A run: ``steps`` calls of the one-step callable ``step``, returning the
    last result, which ``time_runs`` reads back (chapter "Performance")."""
    positive_int("steps", steps)

    def run():
        result = None
        for _ in range(steps):
            result = step()
        return result

    return run


def time_steps(step, steps, rounds=3, warmup=1, name="step", batch_size=1):
    """Time a one-step callable ``step``: ``steps`` calls per round (after
    ``warmup`` untimed calls); return a Measurement (chapter "Performance")."""
    run = step_run(step, steps)
    for _ in range(warmup):
        finish(step())
    return time_runs({name: run}, steps, rounds, 0, batch_size)[name]


def fit_run(model, x, y, batch_size):
    """A run: one ``fit()`` epoch over ``(x, y)`` (chapter "Performance")."""
    return functools.partial(
        model.fit, x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0
    )


def per_call_rates(runs, steps, calls=6):
    """Steps per second and CPU use of every call of each run, taking turns.

    Each run (name -> callable that performs ``steps`` steps) is called once
    untimed, then ``calls`` times, the runs taking turns. A ``fit()`` run
    (:func:`dataset_run`) makes a new iterator of its dataset on every call,
    as each epoch of ``fit()`` does. Returns name -> one ``(steps per second,
    CPU seconds per second)`` pair per call; the CPU time is that of all the
    process's threads, so 2.0 means two cores busy throughout (chapter
    "Performance").
    """
    positive_int("steps", steps)
    positive_int("calls", calls)
    if not runs:
        raise ValueError("runs is empty: pass a dict of name -> callable.")
    for run in runs.values():
        finish(run())
    rates = {name: [] for name in runs}
    for _ in range(calls):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            finish(run())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[name].append((steps / wall, cpu / wall))
    return rates


def dataset_run(model, dataset, steps):
    """A run: ``steps`` ``fit()`` steps on batches of a (repeated) ``dataset``
    (chapter "Performance")."""
    positive_int("steps", steps)
    return functools.partial(
        model.fit, dataset, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0
    )


def _check_rows(headers, rows):
    """Raise a clear ValueError unless every row has one cell per header."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells, like the headers.")


def markdown_table(headers, rows):
    """A Markdown table from a header list and rows of cells (any values)."""
    _check_rows(headers, rows)

    def cell(value):
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join(" --- " for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers, rows):
    """An HTML table from a header list and rows of cells (chapter "Performance").

    The book renders cell outputs as CommonMark, which has no tables.
    """
    _check_rows(headers, rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def measurement_table(measurements, baseline, unit="samples/s", html=False):
    """A table of measurements: steps/s, samples/s and ratio to ``baseline``.

    ``baseline`` is a Measurement (or the name of one in ``measurements``), e.g.
    plain ``fit()``; its ratio is 1.00x. Markdown, or HTML with ``html=True``
    (chapter "Performance").
    """
    measurements = list(measurements)
    if isinstance(baseline, str):
        found = [m for m in measurements if m.name == baseline]
        if not found:
            raise ValueError(f"no measurement named {baseline!r} to compare with.")
        baseline = found[0]
    rows = [
        (
            m.name,
            f"{m.steps_per_second:,.1f}",
            f"{m.samples_per_second:,.0f}",
            f"{m.ratio(baseline):.2f}x",
            f"{m.spread:.2f}",
        )
        for m in measurements
    ]
    headers = ("run", "steps/s", unit, f"vs {baseline.name}", "median/best")
    return (html_table if html else markdown_table)(headers, rows)
