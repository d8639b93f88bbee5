"""Tests for fitbook.accumulation: k micro-batches accumulated = one big batch."""

import keras
import numpy as np
import pytest

from fitbook import accumulation as acc

TOLERANCE = 1e-6  # float32 sums in another order; a real difference is >= 1e-4
MICRO, K = 16, 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((MICRO * K, 28, 28, 1), dtype="float32")
    return x, rng.integers(0, 10, len(x))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_group_equals_one_big_batch(data, optimizer):
    x, y = data
    weights = acc.compare(optimizer, x, y, MICRO, K)
    assert acc.max_difference(weights["ours"], weights["big"]) < TOLERANCE
    # Keras' option agrees when the micro-batches are equal.
    assert acc.max_difference(weights["keras"], weights["big"]) < TOLERANCE
    # The check has teeth: the weights moved by much more than the tolerance.
    start = [v.numpy() for v in acc.make_model("big", optimizer).trainable_variables]
    assert acc.max_difference(start, weights["big"]) > 1e-4


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_short_last_micro_batch_is_weighted_by_its_size(data, optimizer):
    x, y = data
    x, y = x[:-10], y[:-10]  # the last micro-batch holds 6 samples, not 16
    weights = acc.compare(optimizer, x, y, MICRO, K)
    assert acc.max_difference(weights["ours"], weights["big"]) < TOLERANCE
    # Keras' option weights every micro-batch 1/K: it differs from the big batch.
    assert acc.max_difference(weights["keras"], weights["big"]) > 1e-4


def test_short_last_group_is_applied_at_the_epoch_end(data):
    x, y = data
    x, y = x[: MICRO * (K - 1)], y[: MICRO * (K - 1)]  # one group of K - 1
    model = acc.make_model("ours", "sgd", K)
    callback = acc.ApplyLeftoverGradients()
    model.fit(x, y, batch_size=MICRO, shuffle=False, verbose=0, callbacks=[callback])
    big = acc.train(acc.make_model("big", "sgd"), x, y, len(x))
    ours = [v.numpy() for v in model.trainable_variables]
    assert callback.leftovers == [K - 1]
    assert acc.max_difference(ours, big) < TOLERANCE
    assert int(model.micro_batches.numpy()) == 0
    assert float(model.samples.numpy()) == 0.0


def test_weights_do_not_move_inside_a_group(data):
    x, y = data
    model = acc.make_model("ours", "adam", K)
    start = [v.numpy() for v in model.trainable_variables]
    model.fit(x[: MICRO * 2], y[: MICRO * 2], batch_size=MICRO, shuffle=False,
              verbose=0)  # no callback: two micro-batches stay pending
    assert acc.max_difference(start, model.trainable_variables) == 0.0
    assert int(model.optimizer.iterations.numpy()) == 0
    assert int(model.micro_batches.numpy()) == 2
    assert model.apply_leftover() == 2
    assert int(model.optimizer.iterations.numpy()) == 1


def test_accumulation_steps_must_be_a_positive_int():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="accumulation_steps"):
            acc.make_model("ours", "sgd", bad)


def test_keras_option_leaves_a_short_last_group_pending(data):
    x, y = data
    x, y = x[: MICRO * (K - 1)], y[: MICRO * (K - 1)]
    model = acc.make_model("keras", "sgd", K)
    start = [v.numpy() for v in model.trainable_variables]
    acc.train(model, x, y, MICRO)
    assert acc.max_difference(start, model.trainable_variables) == 0.0
    pending = model.optimizer._accumulated_gradients
    assert max(float(np.abs(g.numpy()).max()) for g in pending) > 0.0


def test_keras_option_schedules_per_micro_batch_ours_per_update(data):
    x, y = data  # 2 K micro-batches of 8: two groups
    halving = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    rates = {}
    for kind in ("keras", "ours"):
        model = acc.make_model(kind, "sgd", K, learning_rate=halving)
        acc.train(model, x[: 2 * K * 8], y[: 2 * K * 8], 8)
        assert int(model.optimizer.iterations) == 2
        rates[kind] = float(model.optimizer.learning_rate)
    assert rates["ours"] == pytest.approx(0.1 * 0.5**2)
    assert rates["keras"] == pytest.approx(0.1 * 0.5 ** (2 * K))
