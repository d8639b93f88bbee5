"""Chapter "Overriding train_step": the right variants match fit(), the wrong ones
report exactly the wrong numbers the chapter shows."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import labeled_images
from fitbook.batches import batch_size_of, unpack_x_y
from fitbook.models import classifier
from fitbook.train_step import (
    CustomTrainStepModel,
    LastBatchModel,
    LegacyTrainStepModel,
    MetricsLoopModel,
    OwnLossModel,
    UnlistedTrackerModel,
    UnscaledLossModel,
    build_two_output_model,
    loss_tracker,
    update_norm,
)

COMPILED = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])


@pytest.fixture(scope="module")
def data():
    """256 random images in 4 batches of 64, so epochs hold equal sample counts."""
    return labeled_images(256, seed=0)


def train(model_class, x, y, epochs=2, callbacks=(), **compile_options):
    """Fit a seed-0 classifier of ``model_class``; return it and its History."""
    model = classifier(model_class, seed=0, probabilities=True)
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
    model = classifier(model_class, seed=0, probabilities=True)
    options = COMPILED if model_class is CustomTrainStepModel else {}
    model.compile(optimizer="adam", **options)
    with pytest.raises(ValueError, match=r"must be \(x, y\); got 1 element"):
        model.fit(x[:8], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x[:8], y[:8], class_weight={0: 2.0}, epochs=1, verbose=0)


def test_loss_scale_keeps_mixed_float16_steps_full_size(data):
    x, y = data[0][:32], data[1][:32]
    full = update_norm(keras.Model, x, y, "mixed_float16")
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert update_norm(CustomTrainStepModel, x, y, "mixed_float16") == full
    unscaled = update_norm(UnscaledLossModel, x, y, "mixed_float16")
    # Gradients of the unscaled loss, divided by the initial scale 2**15.
    assert unscaled == pytest.approx(full / 2**15, rel=0.05)


@pytest.fixture(scope="module")
def two_outputs(data):
    """One epoch of each step on a two-output model: its logs."""
    x = data[0]
    y = [4 * x[:, :14].mean(axis=(1, 2, 3)), 2 * x[:, 14:].mean(axis=(1, 2, 3))]
    logs = {}
    for model_class in (keras.Model, MetricsLoopModel, CustomTrainStepModel):
        model = build_two_output_model(model_class)
        model.compile("sgd", loss=["mse", "mse"], metrics=[["mae"], ["mae"]])
        history = model.fit(x, y, batch_size=64, shuffle=False, verbose=0)
        logs[model_class] = {k: values[0] for k, values in history.history.items()}
    return logs


def test_compute_metrics_matches_builtin_with_two_outputs(two_outputs):
    builtin = two_outputs[keras.Model]
    assert set(builtin) == {"loss", "top_loss", "bottom_loss", "top_mae", "bottom_mae"}
    assert two_outputs[CustomTrainStepModel] == builtin


def test_metrics_loop_counts_per_output_losses_twice(two_outputs):
    builtin, loop = two_outputs[keras.Model], two_outputs[MetricsLoopModel]
    assert loop["loss"] == builtin["loss"]  # the loss tracker and training are right
    for name in ("top_loss", "bottom_loss"):
        assert loop[name] != pytest.approx(builtin[name], rel=1e-3)


def test_loss_tracker_needs_a_compiled_model():
    model = classifier(CustomTrainStepModel, seed=0, probabilities=True)
    with pytest.raises(ValueError, match="no metric named 'loss'.*compile"):
        loss_tracker(model)
    model.compile(optimizer="sgd", loss="mse")
    assert loss_tracker(model).name == "loss"


def test_batch_size_of_counts_the_first_input():
    assert int(batch_size_of(X)) == 2
    assert int(batch_size_of({"a": X, "b": tf.zeros((2, 5))})) == 2


def test_update_norm_shows_what_scale_loss_does_under_mixed_float16():
    x, y = labeled_images(64, seed=0)
    norms = {
        policy: [update_norm(cls, x, y, policy) for cls in
                 (keras.Model, CustomTrainStepModel, UnscaledLossModel)]
        for policy in ("float32", "mixed_float16")
    }
    assert norms["float32"][0] == pytest.approx(norms["float32"][2], rel=1e-5)
    builtin, custom, unscaled = norms["mixed_float16"]
    assert custom == pytest.approx(builtin, rel=1e-2)
    assert unscaled < builtin / 1000  # gradients divided by the initial scale
    assert keras.config.dtype_policy().name == "float32"  # restored
