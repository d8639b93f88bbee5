"""Tests for fitbook.vae_losses (chapter "A VAE", losses beyond (y_true, y_pred))."""

import keras
import numpy as np
import pytest

from fitbook.models import ActivityPenalty
from fitbook.reproducibility import set_seed
from fitbook.vae_losses import (
    ExpectedCost,
    MirrorConsistentModel,
    consistency_loss,
)

COST = [[0.0, 1.0, 4.0], [1.0, 0.0, 2.0], [3.0, 1.0, 0.0]]
Y = np.array([0, 2])
PROBS = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=np.float32)


def test_expected_cost_weights_each_probability_by_its_cost():
    loss = ExpectedCost(COST)
    per_example = [0.5 * 0 + 0.3 * 1 + 0.2 * 4, 0.1 * 3 + 0.6 * 1 + 0.3 * 0]
    np.testing.assert_allclose(float(loss(Y, PROBS)), np.mean(per_example), rtol=1e-6)
    np.testing.assert_allclose(float(loss(Y[:, None], PROBS)), np.mean(per_example),
                               rtol=1e-6)  # labels shaped (n, 1) work too


def test_expected_cost_config_round_trip_keeps_the_matrix(tmp_path):
    clone = ExpectedCost.from_config(ExpectedCost(COST).get_config())
    np.testing.assert_array_equal(clone.cost_matrix, COST)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Softmax()])
    model.compile(loss=ExpectedCost(COST))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.loss.cost_matrix, COST)


def test_expected_cost_rejects_a_non_square_matrix():
    with pytest.raises(ValueError, match="must be square"):
        ExpectedCost([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]])


def test_add_loss_penalty_joins_the_compiled_loss():
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    y = np.zeros((4, 3), dtype=np.float32)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ActivityPenalty(0.5)(inputs))  # identity + penalty
    model(x)
    penalty = 0.5 * np.mean(np.abs(x))
    np.testing.assert_allclose(float(model.losses[0]), penalty, rtol=1e-6)
    model.compile(loss="mse")
    mse = np.mean(x**2)  # the model's output is x and the target is zero
    loss = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, mse + penalty, rtol=1e-5)
    with pytest.raises(ValueError, match="rate must be a non-negative number"):
        ActivityPenalty(-1.0)


def mirror_model(weight):
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(flat)
    return MirrorConsistentModel(inputs, outputs, weight=weight)


def test_train_step_loss_is_compiled_loss_plus_weighted_consistency():
    set_seed(0)
    x = np.random.default_rng(0).random((8, 4, 4, 1)).astype(np.float32)
    y = np.arange(8) % 3
    model = mirror_model(weight=2.0)
    y_pred = np.asarray(model(x))
    y_mirror = np.asarray(model(x[:, :, ::-1]))
    crossentropy = -np.mean(np.log(y_pred[np.arange(8), y]))
    consistency = np.mean((y_pred - y_mirror) ** 2)
    assert consistency > 1e-4  # random images are not mirror-symmetric
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    # One step: the reported values are those before the update.
    assert logs["consistency"][0] == pytest.approx(consistency, rel=1e-4)
    assert logs["loss"][0] == pytest.approx(crossentropy + 2.0 * consistency, rel=1e-5)


def test_mirror_model_keeps_its_weight_through_a_keras_file(tmp_path):
    model = mirror_model(weight=0.25)
    model.save(tmp_path / "mirror.keras")
    loaded = keras.saving.load_model(tmp_path / "mirror.keras")
    assert isinstance(loaded, MirrorConsistentModel) and loaded.weight == 0.25
    x = np.random.default_rng(1).random((2, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_train_step_rejects_inputs_that_are_not_images():
    inputs = keras.Input((3,))
    model = MirrorConsistentModel(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)


def test_consistency_loss_weights_samples_like_a_compiled_loss():
    y_pred = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
    y_mirror = np.zeros((2, 2), "float32")
    # Per sample: mean over outputs (0.5 and 2.0); weighted, divided by 2 samples.
    assert float(consistency_loss(y_pred, y_mirror)) == pytest.approx(1.25)
    weighted = consistency_loss(y_pred, y_mirror, np.array([2.0, 0.0], "float32"))
    assert float(weighted) == pytest.approx(0.5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_mirror_model_without_consistency_equals_fit(policy):
    """weight=0: the same step as Keras' own, loss scale and batch sizes included."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        rng = np.random.default_rng(2)
        x = rng.random((10, 4, 4, 1)).astype(np.float32)
        y, sample_weight = np.arange(10) % 3, rng.uniform(0, 2, 10)
        results = []
        for build in (lambda: keras.Model(*mirror_parts()),
                      lambda: MirrorConsistentModel(*mirror_parts(), weight=0.0)):
            model = build()
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss="sparse_categorical_crossentropy",
                          weighted_metrics=["accuracy"])
            logs = model.fit(x, y, sample_weight=sample_weight, batch_size=4,
                             epochs=2, shuffle=False, verbose=0).history
            results.append((model.get_weights(), logs))
    finally:
        keras.config.set_dtype_policy(before)
    (builtin_weights, builtin_logs), (weights, logs) = results
    for ours, theirs in zip(weights, builtin_weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert set(logs) == set(builtin_logs) | {"consistency"}
    for name, values in builtin_logs.items():
        np.testing.assert_array_equal(logs[name], values, err_msg=name)


def mirror_parts():
    """Inputs and outputs of a seeded 4x4-image classifier."""
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    init = keras.initializers.GlorotUniform(0)
    return inputs, keras.layers.Dense(3, activation="softmax", kernel_initializer=init)(
        flat
    )
