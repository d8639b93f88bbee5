"""Tests for fitbook.test_step: evaluate() over a whole set, validation, predict."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import WEIGHTED_BATCH_SIZE as BATCH_SIZE
from conftest import WEIGHTED_N as N
from conftest import weighted_classifier as compiled
from fitbook import test_step as ts


@pytest.fixture(scope="module")
def data(weighted_data):
    return weighted_data


@pytest.fixture(scope="module")
def trained(data):
    """Our model after a short weighted fit, so its predictions are not uniform."""
    x, y, sample_weight = data
    model = compiled(ts.WeightedTestStepModel)
    model.fit(x, y, sample_weight=sample_weight, batch_size=BATCH_SIZE, verbose=0)
    return model


def test_evaluate_equals_numpy_over_the_whole_set(data, trained):
    x, y, sample_weight = data
    result = trained.evaluate(
        x, y, sample_weight=sample_weight, batch_size=BATCH_SIZE, verbose=0,
        return_dict=True,
    )
    expected = ts.numpy_evaluate(y, trained.predict(x, verbose=0), sample_weight)
    assert result.keys() == expected.keys()
    for key in expected:
        assert result[key] == pytest.approx(expected[key], rel=1e-5), key
    # The check has teeth: the mean of batch losses differs with a partial batch.
    naive = ts.mean_of_batch_losses(y, trained.predict(x, verbose=0), sample_weight,
                                    BATCH_SIZE)
    assert abs(naive - result["loss"]) > 1e-3


def test_evaluate_without_weights_equals_numpy(data, trained):
    x, y, _ = data
    result = trained.evaluate(x, y, batch_size=BATCH_SIZE, verbose=0, return_dict=True)
    expected = ts.numpy_evaluate(y, trained.predict(x, verbose=0))
    assert result == pytest.approx(expected, rel=1e-5)
    assert result["accuracy"] == pytest.approx(result["weighted_accuracy"])


def test_evaluate_equals_builtin_evaluate(data, trained):
    x, y, sample_weight = data
    builtin = compiled(keras.Model, trained.get_weights())
    options = dict(sample_weight=sample_weight, batch_size=BATCH_SIZE, verbose=0,
                   return_dict=True)
    assert trained.evaluate(x, y, **options) == pytest.approx(
        builtin.evaluate(x, y, **options), rel=1e-6
    )


def test_mean_of_batch_losses_is_the_mean_of_per_batch_evaluations(data, trained):
    x, y, sample_weight = data
    per_batch = [
        trained.evaluate(x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE],
                         sample_weight=sample_weight[i : i + BATCH_SIZE],
                         verbose=0, return_dict=True)["loss"]
        for i in range(0, N, BATCH_SIZE)
    ]
    y_pred = trained.predict(x, verbose=0)
    assert ts.mean_of_batch_losses(y, y_pred, sample_weight, BATCH_SIZE) == (
        pytest.approx(np.mean(per_batch), rel=1e-5)
    )


def test_fit_validation_reports_weighted_whole_set_numbers(data):
    x, y, sample_weight = data
    model = compiled(ts.WeightedTestStepModel)
    history = model.fit(
        x[:30], y[:30], validation_data=(x[30:], y[30:], sample_weight[30:]),
        batch_size=8, epochs=1, verbose=0,
    )
    expected = ts.numpy_evaluate(y[30:], model.predict(x[30:], verbose=0),
                                 sample_weight[30:])
    for key in expected:
        reported = history.history[f"val_{key}"][-1]
        assert reported == pytest.approx(expected[key], rel=1e-5)


def test_evaluate_runs_our_checks(data):
    x, y, _ = data
    model = compiled(ts.WeightedTestStepModel)
    with pytest.raises(ValueError, match="needs targets"):
        model.evaluate(x, verbose=0)
    weights = np.ones((N, 2), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(None, 2\)"):
        model.evaluate(dataset, verbose=0)


def test_predict_step_returns_class_indices_and_probabilities(data, trained):
    x, _, _ = data
    model = compiled(ts.ClassPredictingModel, trained.get_weights())
    result = model.predict(x, batch_size=BATCH_SIZE, verbose=0)
    assert set(result) == {"class_index", "probabilities"}
    np.testing.assert_allclose(result["probabilities"], trained.predict(x, verbose=0),
                               rtol=1e-6)
    np.testing.assert_array_equal(result["class_index"],
                                  result["probabilities"].argmax(axis=1))
    assert result["class_index"].shape == (N,)  # the partial batch is included


def test_crossentropy_agrees_with_keras_on_a_softmax_output():
    rng = np.random.default_rng(2)
    logits = (5 * rng.normal(size=(20, 4))).astype("float32")
    y = rng.integers(0, 4, 20)
    probabilities = keras.activations.softmax(logits)  # carries its logits
    expected = keras.losses.sparse_categorical_crossentropy(y, probabilities).numpy()
    np.testing.assert_allclose(
        ts.crossentropy(y, np.asarray(probabilities)), expected, rtol=1e-5, atol=1e-6
    )  # Keras works in float32 from the logits


def test_keras_takes_a_softmax_outputs_logits_and_clips_nothing():
    # What the chapter says: a softmax output's loss comes from its logits; only
    # bare probabilities (no logits attached) are clipped to [1e-7, 1 - 1e-7].
    logits, y = np.array([[30.0, 0.0, -30.0]], "float32"), np.array([2])
    probabilities = keras.activations.softmax(logits)
    loss = keras.losses.sparse_categorical_crossentropy
    assert float(loss(y, probabilities)[0]) == pytest.approx(60.0, rel=1e-5)
    bare = np.asarray(probabilities)
    assert float(loss(y, bare)[0]) == pytest.approx(-np.log(1e-7), rel=1e-4)


def test_numpy_functions_reject_mismatched_input():
    with pytest.raises(ValueError, match=r"expected class probabilities of shape \(3,"):
        ts.numpy_evaluate([0, 1, 2], np.ones((2, 3)))
    with pytest.raises(ValueError, match="one weight per target"):
        ts.numpy_evaluate([0, 1], np.ones((2, 3)) / 3, sample_weight=[1.0])
    with pytest.raises(ValueError, match="expected class probabilities"):
        ts.mean_of_batch_losses([0, 1], np.ones(2), None, batch_size=1)
