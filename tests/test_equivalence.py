"""Every custom train_step and test_step that claims to equal fit() or evaluate()
does: the same weights and every logged value, across the matrix dtype policy
(float32, mixed_float16, mixed_bfloat16) x outputs (1, 2) x sample weights (no,
yes). A step that cannot honour sample weights must say so, not ignore them.

Run alone with ``pytest -m equivalence``. ``python tests/test_equivalence.py``
prints the matrix of largest differences.
"""

import keras
import numpy as np
import pytest
from keras import tree

from fitbook.sample_weights import largest_difference
from fitbook.test_step import WeightedTestStepModel
from fitbook.train_step import CustomTrainStepModel, OwnLossModel, UnscaledLossModel

pytestmark = pytest.mark.equivalence

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
N, BATCH_SIZE, EPOCHS = 10, 4, 2  # batches of 4, 4 and 2: 6 steps, short ones too
# Our steps run the same operations as Keras' on the same values in the same
# order, so they should agree to the bit, and in float32 we demand it: any
# difference means a different computation. Measured on an AVX2 CPU: bit-identical
# in all three policies, with oneDNN's graph rewrites on and off. The float16 and
# bfloat16 kernels are the ones oneDNN picks most by CPU feature (AVX-512 BF16 and
# FP16, AMX), which we could not measure, so there we leave about one rounding
# step of order-1 values as headroom (2**-10 for float16, 2**-8 for bfloat16):
# still far below what a missing loss scale (updates 2**15 times too small:
# differences above 0.05 here) or a double-counted tracker (0.1) causes.
TOLERANCE = {"float32": 0.0, "mixed_float16": 1e-3, "mixed_bfloat16": 4e-3}


@pytest.fixture(params=POLICIES)
def policy(request):
    """Set the global dtype policy for one test, and restore it afterwards."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(before)


def make_data(outputs, weighted):
    """Tiny 2x2 'images', class labels (and a regression target for 2 outputs)."""
    rng = np.random.default_rng(0)
    x = rng.random((N, 2, 2, 1), dtype="float32")
    y = rng.integers(0, 3, N)
    if outputs == 2:
        y = [y, rng.normal(size=(N, 1)).astype("float32")]
    sample_weight = rng.uniform(0, 2, N).astype("float32") if weighted else None
    return x, y, sample_weight


def build(model_class, outputs, own_loss=False):
    """A seeded Dense classifier (plus a regression head), compiled as fit() needs.

    ``own_loss`` compiles with an optimizer only, for a step with its own loss.
    """
    init = keras.initializers.GlorotUniform
    inputs = keras.Input(shape=(2, 2, 1))
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(8, activation="relu", kernel_initializer=init(0))(
        hidden
    )
    heads = [
        keras.layers.Dense(3, activation="softmax", kernel_initializer=init(1),
                           name="a")(hidden),
        keras.layers.Dense(1, kernel_initializer=init(2), name="b")(hidden),
    ]
    model = model_class(inputs, heads[0] if outputs == 1 else heads)
    # SGD for one output, Adam (with its moment slots) for two.
    if outputs == 1:
        optimizer = keras.optimizers.SGD(0.1)
    else:
        optimizer = keras.optimizers.Adam(0.05)
    if own_loss:
        model.compile(optimizer=optimizer)
    elif outputs == 1:
        model.compile(
            optimizer=optimizer, loss="sparse_categorical_crossentropy",
            metrics=["accuracy"], weighted_metrics=["accuracy"],
        )
    else:
        model.compile(
            optimizer=optimizer, loss=["sparse_categorical_crossentropy", "mse"],
            metrics=[["accuracy"], ["mae"]], weighted_metrics=[["accuracy"], ["mae"]],
        )
    return model


def create_variables(model, x, y):
    """Create the optimizer's and the trackers' variables before fit(), which then
    traces its step once instead of twice: this halves the module's run time.
    fit() resets the trackers before its first epoch."""
    model.optimizer.build(model.trainable_variables)
    if model.loss is not None:  # the compiled loss builds its per-output trackers
        x, y = x[:1], tree.map_structure(lambda target: target[:1], y)
        y_pred = model(x)
        model.compute_loss(x=x, y=y, y_pred=y_pred)
        model.compute_metrics(x, y, y_pred)


def fit(model, outputs, weighted, validate=False):
    """Fit in order; return the model's weights and its logs.

    ``validate`` also runs the test step after each epoch, on the training data.
    """
    x, y, sample_weight = make_data(outputs, weighted)
    create_variables(model, x, y)
    validation_data = (x, y, sample_weight) if validate else None
    history = model.fit(
        x, y, sample_weight=sample_weight, batch_size=BATCH_SIZE, epochs=EPOCHS,
        shuffle=False, verbose=0, validation_data=validation_data,
    )
    return model.get_weights(), history.history


_builtin = {}  # (policy, outputs, weighted) -> weights and logs


def builtin_fit(policy, outputs, weighted):
    """Keras' own train_step and test_step on the same model and data (run once)."""
    key = (policy, outputs, weighted)
    if key not in _builtin:
        weights, logs = fit(build(keras.Model, outputs), outputs, weighted, True)
        initial = build(keras.Model, outputs).get_weights()
        # A check that can fail: training moved the weights (no skipped steps).
        assert largest_difference(weights, initial) > 0.05
        _builtin[key] = weights, logs
    return _builtin[key]


# (name, model class, outputs it serves, sample weights, validation)
# WeightedTestStepModel inherits WeightedTrainStepModel's train_step and adds a
# test_step: fit(validation_data=...) checks both.
STEPS = [
    ("CustomTrainStepModel", CustomTrainStepModel, (1, 2), (False,), False),
    ("OwnLossModel", OwnLossModel, (1,), (False,), False),
    ("WeightedTestStepModel", WeightedTestStepModel, (1, 2), (False, True), True),
]
CASES = [
    pytest.param(cls, outputs, weighted, validate,
                 id=f"{name}-{outputs}out-{'weighted' if weighted else 'plain'}")
    for name, cls, served, weightings, validate in STEPS
    for outputs in served
    for weighted in weightings
]


def compare(policy, model_class, outputs, weighted, validate):
    """Largest weight and logged-value differences between our steps and Keras'."""
    model = build(model_class, outputs, own_loss=model_class is OwnLossModel)
    weights, logs = fit(model, outputs, weighted, validate)
    reference_weights, reference_logs = builtin_fit(policy, outputs, weighted)
    # Every value we log, Keras logs too, and the other way round (OwnLossModel
    # has no weighted_metrics; without validation, there are no val_ values).
    expected = {name for name in reference_logs
                if validate or not name.startswith("val_")}
    if model_class is OwnLossModel:
        expected = {"loss", "accuracy"}
    assert set(logs) == expected, (sorted(logs), sorted(expected))
    return (
        largest_difference(weights, reference_weights),
        max(largest_difference(logs[name], reference_logs[name]) for name in expected),
    )


@pytest.mark.parametrize("model_class,outputs,weighted,validate", CASES)
def test_custom_steps_equal_builtin_steps(policy, model_class, outputs, weighted,
                                          validate):
    weight_gap, log_gap = compare(policy, model_class, outputs, weighted, validate)
    assert weight_gap <= TOLERANCE[policy]
    assert log_gap <= TOLERANCE[policy]


@pytest.mark.parametrize("model_class", [CustomTrainStepModel, OwnLossModel])
def test_steps_without_weights_refuse_them(model_class):
    model = build(model_class, 1, own_loss=model_class is OwnLossModel)
    with pytest.raises(ValueError, match="got \\(x, y, sample_weight\\)"):
        fit(model, 1, weighted=True)


def test_a_missing_loss_scale_is_caught():
    """The check can fail: gradients of the unscaled loss under mixed_float16."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        weight_gap, _ = compare("mixed_float16", UnscaledLossModel, 1, False, False)
    finally:
        keras.config.set_dtype_policy(before)
    assert weight_gap > 0.01  # the step hardly moved: 1/32768 of the update


def main():
    """Print the equivalence matrix: the largest differences over all our steps."""
    print("policy          outputs  weighted  max weight diff  max logged diff")
    for policy in POLICIES:
        keras.config.set_dtype_policy(policy)
        for outputs in (1, 2):
            for weighted in (False, True):
                gaps = [
                    compare(policy, cls, outputs, weighted, validate)
                    for _, cls, served, weightings, validate in STEPS
                    if outputs in served and weighted in weightings
                ]
                print(f"{policy:<15} {outputs:>7}  {str(weighted):>8}"
                      f"  {max(g[0] for g in gaps):>15.3g}"
                      f"  {max(g[1] for g in gaps):>15.3g}")
    keras.config.set_dtype_policy("float32")


if __name__ == "__main__":
    main()
