"""Chapter "Overriding train_step": the right variants match fit(), the wrong ones
report exactly the wrong numbers the chapter shows."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook.fit_internals import build_classifier
from fitbook.train_step import (
    CustomTrainStepModel,
    LastBatchModel,
    LegacyTrainStepModel,
    OwnLossModel,
    UnlistedTrackerModel,
    unpack_x_y,
)

COMPILED = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])


@pytest.fixture(scope="module")
def data():
    """256 random images in 4 batches of 64, so epochs hold equal sample counts."""
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1), dtype="float32")
    return x, rng.integers(0, 10, 256)


def train(model_class, x, y, epochs=2, callbacks=(), **compile_options):
    """Fit a seed-0 classifier of ``model_class``; return it and its History."""
    model = build_classifier(model_class, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **compile_options)
    history = model.fit(
        x, y, batch_size=64, epochs=epochs, shuffle=False, verbose=0,
        callbacks=list(callbacks),
    )
    return model, history.history


@pytest.fixture(scope="module")
def builtin(data):
    return train(keras.Model, *data, **COMPILED)


def largest_gap(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


@pytest.mark.parametrize(
    "model_class,options", [(CustomTrainStepModel, COMPILED), (OwnLossModel, {})]
)
def test_custom_step_matches_builtin_fit(data, builtin, model_class, options):
    model, history = train(model_class, *data, **options)
    reference, reference_history = builtin
    assert largest_gap(model.get_weights(), reference.get_weights()) < 1e-6
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(history[name], reference_history[name], rtol=1e-6)


def test_unlisted_tracker_mixes_epochs(data, builtin):
    _, history = train(UnlistedTrackerModel, *data)
    right = builtin[1]["accuracy"]
    # Never reset, the epoch-2 value is the mean over both (equal-sized) epochs.
    assert history["accuracy"][0] == pytest.approx(right[0], abs=1e-7)
    assert history["accuracy"][1] == pytest.approx((right[0] + right[1]) / 2, abs=1e-7)
    assert history["accuracy"][1] != pytest.approx(right[1], abs=1e-3)
    np.testing.assert_allclose(history["loss"], builtin[1]["loss"], rtol=1e-6)


def test_last_batch_model_reports_the_last_batch(data):
    batch_losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_losses.append(logs["loss"])
    )
    _, history = train(LastBatchModel, *data, epochs=1, callbacks=[record])
    assert len(batch_losses) == 4
    assert history["loss"] == [batch_losses[-1]]
    assert history["loss"][0] != pytest.approx(np.mean(batch_losses), abs=1e-3)


def test_legacy_step_reports_mean_prediction_as_loss(data, builtin):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, history = train(LegacyTrainStepModel, *data, **COMPILED)
    messages = {str(w.message).split("(")[0] for w in caught}
    assert messages == {"`model.compiled_loss", "`model.compiled_metrics"}
    # The loss tracker averaged softmax outputs: each row sums to 1 over 10 classes.
    np.testing.assert_allclose(history["loss"], [0.1, 0.1], rtol=1e-5)
    assert min(builtin[1]["loss"]) > 1.0  # the true loss, far from 0.1
    # Training itself and the other metrics are unaffected.
    np.testing.assert_allclose(history["accuracy"], builtin[1]["accuracy"], rtol=1e-6)
    assert largest_gap(model.get_weights(), builtin[0].get_weights()) < 1e-6


def test_unpack_x_y_accepts_pairs():
    assert unpack_x_y((X, Y)) == (X, Y)
    assert unpack_x_y([X, Y]) == (X, Y)


X, Y = tf.zeros((2, 3)), tf.zeros((2,))
BAD_BATCHES = {
    "x alone": (X, r"must be \(x, y\); got 1 element\(s\): \(float32 \(2, 3\)\)"),
    "(x,)": ((X,), r"must be \(x, y\); got 1 element"),
    "(x, None)": ((X, None), r"got 2 element\(s\): \(float32 \(2, 3\), None\)"),
    "4 elements": ((X, Y, Y, Y), r"must be \(x, y\); got 4 element"),
    "(x, y, w)": ((X, Y, Y), r"got \(x, y, sample_weight\).*class_weight"),
}


@pytest.mark.parametrize("name", BAD_BATCHES)
def test_unpack_x_y_says_what_a_batch_must_be(name):
    batch, message = BAD_BATCHES[name]
    with pytest.raises(ValueError, match=message):
        unpack_x_y(batch)


@pytest.mark.parametrize("model_class", [CustomTrainStepModel, OwnLossModel])
def test_fit_with_bad_batches_raises_clear_errors(data, model_class):
    x, y = data
    model = build_classifier(model_class)
    options = COMPILED if model_class is CustomTrainStepModel else {}
    model.compile(optimizer="adam", **options)
    with pytest.raises(ValueError, match=r"must be \(x, y\); got 1 element"):
        model.fit(x[:8], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x[:8], y[:8], class_weight={0: 2.0}, epochs=1, verbose=0)
