"""The timing helper every throughput number uses. No assertion here depends on
how fast anything runs."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook.models import classifier
from fitbook.timing import (
    Measurement,
    dataset_run,
    epoch_steps,
    finish,
    fit_run,
    html_table,
    markdown_table,
    measurement_table,
    per_call_rates,
    step_run,
    time_run,
    time_runs,
    time_steps,
)


def test_time_runs_excludes_warmup_and_counts_rounds():
    calls = {"a": 0, "b": 0}

    def make(name):
        def run():
            calls[name] += 1
            return tf.constant(1.0)
        return run

    result = time_runs({"a": make("a"), "b": make("b")}, steps=10, rounds=4,
                       warmup=2, batch_size=8)
    assert calls == {"a": 6, "b": 6}  # 2 warm-up calls + 4 timed rounds each
    m = result["a"]
    assert (m.name, m.steps, m.batch_size, len(m.seconds)) == ("a", 10, 8, 4)
    assert m.steps_per_second == pytest.approx(10 / min(m.seconds))
    assert m.samples_per_second == pytest.approx(8 * m.steps_per_second)


def test_per_call_rates_times_every_call_after_one_untimed_call():
    order = []

    def make(name):
        def run():
            order.append(name)
            return tf.constant(1.0)
        return run

    rates = per_call_rates({"a": make("a"), "b": make("b")}, steps=4, calls=3)
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-up, then taking turns
    assert {name: len(pairs) for name, pairs in rates.items()} == {"a": 3, "b": 3}
    for pairs in rates.values():
        assert all(rate > 0 and cpu >= 0 for rate, cpu in pairs)


def test_per_call_rates_counts_the_cpu_time_of_the_work():
    def busy():  # 0.05 s of pure Python work, all on this thread
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass

    (rate, cpu), = per_call_rates({"busy": busy}, steps=1, calls=1)["busy"]
    assert 0.5 < cpu < 2.5  # about one core busy: CPU seconds per wall second
    assert rate < 25  # at most 20 calls a second: each took its 0.05 s of work


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"calls": 0}, {"calls": 1.5}])
def test_per_call_rates_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError):
        per_call_rates({"a": lambda: 1}, **{"steps": 1, "calls": 1, **kwargs})
    with pytest.raises(ValueError, match="runs is empty"):
        per_call_rates({}, steps=1)


def test_time_steps_calls_the_step_steps_times_per_round():
    counter = tf.Variable(0)
    step = tf.function(lambda: counter.assign_add(1))
    m = time_steps(step, steps=5, rounds=3, warmup=2, name="count")
    assert int(counter.numpy()) == 2 + 5 * 3
    assert (m.name, m.steps, len(m.seconds)) == ("count", 5, 3)


def test_step_run_calls_the_step_steps_times_and_returns_the_last():
    calls = []
    run = step_run(lambda: calls.append(len(calls)) or len(calls), steps=4)
    assert calls == []  # nothing runs until the run is called
    assert run() == 4 and calls == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="steps"):
        step_run(lambda: None, steps=0)


def test_finish_reads_nested_tensors_back():
    value = {"a": tf.constant(1.0), "b": [tf.Variable(2.0), 3]}
    result = finish(value)
    assert result == {"a": 1.0, "b": [2.0, 3]}
    assert isinstance(result["a"], (np.ndarray, np.generic))
    assert isinstance(result["b"][0], (np.ndarray, np.generic))
    assert result["b"][1] == 3 and isinstance(result["b"][1], int)


def test_epoch_steps_counts_the_partial_batch():
    assert epoch_steps(100, 32) == 4
    assert epoch_steps(96, 32) == 3
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        epoch_steps(10, 0)


def test_time_run_and_median_rate():
    m = time_run("noop", lambda: tf.constant(0.0), steps=4, repeats=3)
    assert m.name == "noop" and len(m.seconds) == 3
    assert Measurement("m", 10, (1.0, 2.0, 4.0)).median_steps_per_second == 5.0


def test_measurement_ratio_and_spread():
    fast = Measurement("fast", steps=10, seconds=(1.0, 2.0, 3.0), batch_size=4)
    slow = Measurement("slow", steps=10, seconds=(4.0,), batch_size=4)
    assert fast.ratio(slow) == pytest.approx(4.0)
    assert fast.spread == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(rounds=0), dict(warmup=-1), dict(batch_size=1.5),
     dict(steps=True)],
)
def test_time_runs_rejects_bad_counts(kwargs):
    options = dict(steps=1, rounds=1, warmup=0, batch_size=1) | kwargs
    with pytest.raises(ValueError, match="must be"):
        time_runs({"a": lambda: None}, **options)


def test_time_runs_needs_runs():
    with pytest.raises(ValueError, match="empty"):
        time_runs({}, steps=1)


def test_fit_run_trains_one_epoch_per_call():
    x = np.random.default_rng(0).random((20, 28, 28, 1)).astype("float32")
    y = np.arange(20) % 10
    model = classifier(keras.Model, hidden=8, seed=0, probabilities=True)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    run = fit_run(model, x, y, batch_size=8)
    run()
    run()
    assert int(model.optimizer.iterations.numpy()) == 2 * 3  # ceil(20 / 8) a call


def test_dataset_run_trains_that_many_steps_per_call():
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 10))
    model = classifier(keras.Model, hidden=8, seed=0, probabilities=True)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    run = dataset_run(model, dataset.repeat().batch(4), steps=3)
    run()
    assert int(model.optimizer.iterations.numpy()) == 3
    with pytest.raises(ValueError, match="steps must be a positive int"):
        dataset_run(model, dataset, steps=0)


def test_markdown_table():
    text = markdown_table(("a", "b"), [(1, "x|y"), (2.5, "z")])
    assert text.splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| 1 | x\\|y |",
        "| 2.5 | z |",
    ]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(("a", "b"), [(1,)])


def test_measurement_table_ratios():
    base = Measurement("fit()", steps=10, seconds=(1.0,), batch_size=100)
    twice = Measurement("fast", steps=10, seconds=(0.5, 1.0), batch_size=100)
    lines = measurement_table([base, twice], baseline="fit()").splitlines()
    assert lines[0] == "| run | steps/s | samples/s | vs fit() | median/best |"
    assert lines[2] == "| fit() | 10.0 | 1,000 | 1.00x | 1.00 |"
    assert lines[3] == "| fast | 20.0 | 2,000 | 2.00x | 1.50 |"
    with pytest.raises(ValueError, match="no measurement named"):
        measurement_table([base], baseline="missing")


def test_html_table_escapes_and_matches_the_markdown_cells():
    text = html_table(("a", "b"), [(1, "<x>")])
    assert text == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
        "<tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody></table>"
    )
    base = Measurement("fit()", steps=10, seconds=(1.0,), batch_size=100)
    assert "<td>1.00x</td>" in measurement_table([base], base, html=True)
    with pytest.raises(ValueError, match="2 cells"):
        html_table(("a", "b"), [(1,)])
