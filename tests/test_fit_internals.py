"""Chapter "What fit() does": the recorded order of events is what fit() does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import labeled_images
from fitbook.batches import describe_batch
from fitbook.fit_internals import (
    EVENT_ROWS,
    InstrumentedModel,
    count_events,
    fit_throughput,
    plot_timeline,
    record_fit,
    train_traces,
)
from fitbook.models import classifier


@pytest.fixture(scope="module")
def data():
    """100 random images with labels: batches of 40 leave a last batch of 20."""
    return labeled_images(100, seed=0)


@pytest.fixture(scope="module")
def recorded(data):
    x, y = data
    return record_fit(x, y, batch_size=40, epochs=2, validation_data=(x[:30], y[:30]))


def expected_epoch(epoch, train_sizes, val_size):
    """The (name, detail) pairs of one epoch, as the chapter describes it."""
    events = [("reset_metrics", ""), ("on_epoch_begin", epoch)]
    for batch, size in enumerate(train_sizes):
        events += [
            ("on_train_batch_begin", batch),
            ("train_step", size),
            ("on_train_batch_end", batch),
        ]
    events += [
        ("on_test_begin", ""),
        ("reset_metrics", ""),
        ("on_test_batch_begin", 0),
        ("test_step", val_size),
        ("on_test_batch_end", 0),
        ("on_test_end", "accuracy, loss"),
        ("on_epoch_end", "accuracy, loss, val_accuracy, val_loss"),
    ]
    return events


def test_events_follow_fit_order(recorded):
    events, _ = recorded
    calls = [(name, detail) for _, name, detail in events if "trace" not in name]
    expected = [("on_train_begin", "")]
    for epoch in range(2):
        expected += expected_epoch(epoch, [40, 40, 20], 30)
    assert calls == expected + [("on_train_end", "")]


def test_steps_are_traced_in_the_first_epoch_only(recorded):
    events, _ = recorded
    names = [name for _, name, _ in events]
    first_call = names.index("train_step")
    assert "trace train_step" in names[:first_call]
    assert "trace train_step" not in names[first_call:]
    assert count_events(events, "trace test_step") == 1
    traces = [d for _, name, d in events if name == "trace train_step"]
    assert set(traces) == {"(float32 (None, 28, 28, 1), int64 (None,))"}


@pytest.mark.parametrize(
    "metrics, build_optimizer, expected",
    [([], False, 2), ([], True, 1), (["accuracy"], False, 2), (["accuracy"], True, 2)],
)
def test_a_second_trace_comes_from_lazily_created_variables(
    data, metrics, build_optimizer, expected
):
    # The optimizer's and the compiled metrics' variables are both created in the
    # first call; only with neither left to create is one trace enough.
    x, y = data
    assert train_traces(x, y, metrics, build_optimizer) == expected


def test_batch_dimension_is_static_when_the_samples_divide_evenly(data):
    x, y = data
    for n, batch in ((96, "32"), (100, "None")):
        events, _ = record_fit(x[:n], y[:n], batch_size=32, epochs=1)
        traces = {d for _, name, d in events if name == "trace train_step"}
        assert traces == {f"(float32 ({batch}, 28, 28, 1), int64 ({batch},))"}


def test_steps_per_execution_groups_batch_callbacks(data):
    x, y = data
    events, history = record_fit(x, y, batch_size=10, epochs=1, steps_per_execution=4)
    assert count_events(events, "train_step") == 10
    batch_ends = [d for _, name, d in events if name == "on_train_batch_end"]
    # One callback per execution of 4, 4 and 2 steps, each numbered by the last
    # step it would hold if full (EpochIterator yields begin + 4 - 1).
    assert batch_ends == [3, 7, 11]
    assert history.params["steps"] == 10


def test_history_holds_one_value_per_epoch(recorded):
    _, history = recorded
    assert history.epoch == [0, 1]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(values) == 2 for values in history.history.values())


def test_describe_batch():
    x = keras.ops.zeros((3, 4))
    assert describe_batch((x, None)) == "(float32 (3, 4), None)"
    assert describe_batch([x, (x,)]) == "(float32 (3, 4), (float32 (3, 4)))"


def test_same_seed_same_weights_for_any_class():
    a = classifier(keras.Model, seed=3, probabilities=True)
    b = classifier(InstrumentedModel, seed=3, probabilities=True)
    c = classifier(keras.Model, seed=4, probabilities=True)
    assert isinstance(b, InstrumentedModel)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_plot_timeline(recorded):
    fig = plot_timeline(recorded[0], title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(EVENT_ROWS)


def test_plot_timeline_rejects_unknown_events():
    with pytest.raises(ValueError, match="unknown names \\['fly'\\]"):
        plot_timeline([("model", "fly", "")])
    with pytest.raises(ValueError, match="non-empty"):
        plot_timeline([])


def test_fit_throughput(data):
    x, y = data
    model = classifier(keras.Model, seed=0, probabilities=True)
    with pytest.raises(ValueError, match="compile"):
        fit_throughput(model, x, y, batch_size=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="repeats"):
        fit_throughput(model, x, y, batch_size=10, repeats=0)
    rate = fit_throughput(model, x, y, batch_size=10, repeats=1)
    assert isinstance(rate, float) and rate > 0


def test_step_receives_tuples_from_arrays_datasets_and_weights(data):
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    weights = np.ones(len(x), "float32")
    for options, expected in [
        (dict(x=dataset, shuffle=False), "int64 (None,))"),
        (dict(x=x, y=y, sample_weight=weights, batch_size=32),
         "int64 (None,), float32 (None,))"),
    ]:
        events, _ = record_fit(epochs=1, **options)
        traces = {d for _, name, d in events if name == "trace train_step"}
        assert traces == {"(float32 (None, 28, 28, 1), " + expected}
        assert [d for _, name, d in events if name == "train_step"] == [32, 32, 32, 4]
