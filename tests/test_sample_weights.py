"""Tests for fitbook.sample_weights: weighted train_step, class weights, helpers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.trainers.data_adapters.data_adapter_utils import (
    class_weight_to_sample_weights as keras_class_weight_to_sample_weights,
)

from conftest import (
    WEIGHTED_BATCH_SIZE,
    WEIGHTED_N,
    assert_same_weights,
    weighted_classifier,
)
from fitbook import batches
from fitbook import sample_weights as sw
from fitbook.reproducibility import set_seed

N, BATCH_SIZE = WEIGHTED_N, WEIGHTED_BATCH_SIZE
compiled = weighted_classifier


@pytest.fixture(scope="module")
def data(weighted_data):
    return weighted_data


def fit_both(data, **fit_kwargs):
    """Fit Keras' own model and ours from the same start; return both and histories."""
    x, y, _ = data
    builtin = compiled(keras.Model)
    ours = compiled(sw.WeightedTrainStepModel, builtin.get_weights())
    options = dict(batch_size=BATCH_SIZE, epochs=2, shuffle=False, verbose=0)
    histories = [m.fit(x, y, **options, **fit_kwargs).history for m in (builtin, ours)]
    return builtin, ours, histories


def assert_same_history(h1, h2):
    assert h1.keys() == h2.keys() == {"loss", "accuracy", "weighted_accuracy"}
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-5, err_msg=key)


def test_sample_weight_fit_matches_builtin_fit(data):
    builtin, ours, (h_builtin, h_ours) = fit_both(data, sample_weight=data[2])
    assert_same_history(h_builtin, h_ours)
    assert_same_weights(builtin, ours, atol=1e-5)
    # The weights matter: weighted and unweighted accuracy differ here.
    assert h_ours["accuracy"] != h_ours["weighted_accuracy"]


def test_class_weight_fit_matches_builtin_fit(data):
    builtin, ours, (h_builtin, h_ours) = fit_both(data, class_weight={0: 0.5, 2: 4.0})
    assert_same_history(h_builtin, h_ours)
    assert_same_weights(builtin, ours, atol=1e-5)


def test_class_weight_equals_its_per_sample_weights(data):
    x, y, _ = data
    class_weight = {0: 1.0, 1: 3.0, 2: 0.2}
    by_class = compiled(sw.WeightedTrainStepModel)
    by_sample = compiled(sw.WeightedTrainStepModel, by_class.get_weights())
    options = dict(batch_size=BATCH_SIZE, epochs=2, shuffle=False, verbose=0)
    by_class.fit(x, y, class_weight=class_weight, **options)
    sample_weight = sw.class_weight_to_sample_weight(y, class_weight)
    by_sample.fit(x, y, sample_weight=sample_weight, **options)
    assert_same_weights(by_class, by_sample, atol=1e-5)


def test_zero_weights_remove_samples_from_gradient(data):
    x, y, _ = data
    model = compiled(sw.WeightedTrainStepModel)
    weights = np.array([1, 1, 0, 0], dtype="float32")
    loss_w, grads_w = sw.loss_and_gradients(model, x[:4], y[:4], weights)
    loss_2, grads_2 = sw.loss_and_gradients(model, x[:2], y[:2])
    # sum_over_batch_size divides by the batch size, 4, not by the weights' sum, 2.
    assert loss_w * 4 / 2 == pytest.approx(loss_2, rel=1e-6)
    for g_w, g_2 in zip(grads_w, grads_2, strict=True):
        np.testing.assert_allclose(g_w * 4 / 2, g_2, rtol=1e-5, atol=1e-7)
    _, grads_all = sw.loss_and_gradients(model, x[:4], y[:4])
    assert not np.allclose(grads_all[0], grads_w[0])  # the zeros did change it


def test_heavier_weights_give_a_larger_loss(data):
    # sum_over_batch_size: sum(w * l) / N, so doubling every weight doubles it.
    x, y, _ = data
    model = compiled(sw.WeightedTrainStepModel)
    loss_1, grads_1 = sw.loss_and_gradients(model, x[:4], y[:4], np.ones(4, "float32"))
    loss_2, grads_2 = sw.loss_and_gradients(
        model, x[:4], y[:4], np.full(4, 2.0, "float32")
    )
    assert loss_2 == pytest.approx(2 * loss_1, rel=1e-6)
    np.testing.assert_allclose(grads_2[0], 2 * grads_1[0], rtol=1e-5, atol=1e-7)


def test_keras_refuses_sample_weight_with_class_weight(data):
    x, y, sample_weight = data
    model = compiled(sw.WeightedTrainStepModel)
    with pytest.raises(ValueError, match="class_weight` and `sample_weight` at the"):
        model.fit(x, y, sample_weight=sample_weight, class_weight={0: 2.0}, verbose=0)


def two_output_model(model_class=sw.WeightedTrainStepModel, weights=None):
    set_seed(0)
    inputs = keras.Input(shape=(3,))
    outputs = [
        keras.layers.Dense(2, activation="softmax", name=name)(inputs)
        for name in ("a", "b")
    ]
    model = model_class(inputs, outputs)
    if weights is not None:
        model.set_weights(weights)
    model.compile("sgd", loss=["sparse_categorical_crossentropy"] * 2)
    return model


def test_keras_refuses_class_weight_with_several_outputs():
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int64")
    with pytest.raises(ValueError, match="only supported for Models with a single out"):
        two_output_model().fit(x, [y, y], class_weight={0: 2.0}, verbose=0)


def test_weighted_step_takes_one_weight_array_per_output():
    # One array for all outputs is in tests/test_equivalence.py; here one each.
    rng = np.random.default_rng(1)
    x, y = rng.random((6, 3), dtype="float32"), rng.integers(0, 2, 6)
    weights = [rng.random(6).astype("float32") for _ in range(2)]
    builtin = two_output_model(keras.Model)
    ours = two_output_model(sw.WeightedTrainStepModel, builtin.get_weights())
    histories = [
        m.fit(x, [y, y], sample_weight=weights, batch_size=4, shuffle=False,
              verbose=0).history
        for m in (builtin, ours)
    ]
    assert histories[0] == histories[1]
    assert_same_weights(builtin, ours, atol=1e-5)


def test_batch_without_targets_is_a_clear_error(data):
    with pytest.raises(ValueError, match="needs targets.*got x alone"):
        compiled(sw.WeightedTrainStepModel).fit(data[0], verbose=0)


def test_batch_of_four_elements_is_a_clear_error(data):
    x, y, sample_weight = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y, sample_weight, y)).batch(8)
    with pytest.raises(ValueError, match=r"got 4 elements with shapes \(None, 28"):
        compiled(sw.WeightedTrainStepModel).fit(dataset, shuffle=False, verbose=0)


def test_sample_weight_of_wrong_rank_is_a_clear_error(data):
    x, y, _ = data
    weights = np.ones((N, 2), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    with pytest.raises(ValueError, match=r"shape \(None, 2\); expected shape \(batch"):
        compiled(sw.WeightedTrainStepModel).fit(dataset, shuffle=False, verbose=0)


def test_sample_weight_of_wrong_length_fails_at_run_time(data):
    x, y, sample_weight = data
    xy = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    weights = tf.data.Dataset.from_tensor_slices(sample_weight).batch(5)
    dataset = tf.data.Dataset.zip(xy, weights).map(lambda xy, w: (*xy, w))
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not match the"):
        compiled(sw.WeightedTrainStepModel).fit(dataset, shuffle=False, verbose=0)


def test_check_sample_weight_with_known_shapes():
    y = tf.zeros(4)
    assert batches.check_sample_weight(np.ones(4), y).shape == (4,)
    with pytest.raises(ValueError, match="3 weights for a batch of 4 targets"):
        batches.check_sample_weight(np.ones(3), y)
    with pytest.raises(ValueError, match=r"shape \(4, 1\); expected shape"):
        batches.check_sample_weight(np.ones((4, 1)), y)


def test_check_sample_weight_of_unknown_rank_fails_at_run_time():
    # After several traces, tf.function may relax shapes to an unknown rank.
    check = tf.function(
        batches.check_sample_weight,
        input_signature=[tf.TensorSpec(None), tf.TensorSpec(None)],
    )
    np.testing.assert_array_equal(check(tf.ones(3), tf.zeros(3)), np.ones(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not match the"):
        check(tf.ones((3, 1)), tf.zeros(3))


@pytest.mark.parametrize(
    "y",
    [
        np.array([0, 2, 1, 2, 3]),
        np.array([[0], [2], [1], [2], [3]]),
        np.eye(4)[[0, 2, 1, 2, 3]],
    ],
    ids=["indices", "column", "one-hot"],
)
def test_class_weight_to_sample_weight_agrees_with_keras(y):
    class_weight = {0: 0.5, 2: 3.0, 5: 9.0}  # class 1 and 3 missing: weight 1
    ours = sw.class_weight_to_sample_weight(y, class_weight)
    np.testing.assert_array_equal(ours, [0.5, 3.0, 1.0, 3.0, 1.0])
    keras_weights = keras_class_weight_to_sample_weights(y, class_weight)
    np.testing.assert_array_equal(ours, keras_weights)


def test_class_weight_to_sample_weight_rejects_bad_input():
    with pytest.raises(ValueError, match="dict from class index"):
        sw.class_weight_to_sample_weight([0, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="dict from class index"):
        sw.class_weight_to_sample_weight([0, 1], {"shirt": 2.0})
    with pytest.raises(ValueError, match=r"shape \(2, 1, 1\); expected class indices"):
        sw.class_weight_to_sample_weight(np.zeros((2, 1, 1)), {0: 1.0})
    with pytest.raises(ValueError, match="class index -1"):
        sw.class_weight_to_sample_weight([0, -1], {0: 1.0})


def test_balanced_class_weight_equalises_total_weight_per_class():
    y = np.array([0] * 6 + [1] * 3 + [2])
    class_weight = sw.balanced_class_weight(y)
    assert class_weight == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    totals = np.bincount(y, weights=sw.class_weight_to_sample_weight(y, class_weight))
    np.testing.assert_allclose(totals, len(y) / 3, rtol=1e-6)
    assert all(type(w) is float for w in class_weight.values())  # glue-able
    with pytest.raises(ValueError, match=r"counts per class are \[2, 0, 1\]"):
        sw.balanced_class_weight([0, 0, 2])


def test_make_imbalanced_thins_one_class_and_relabels():
    y = np.repeat(np.arange(4), 100)
    x = np.arange(len(y))  # each x records its original position
    x_new, y_new = sw.make_imbalanced(x, y, (3, 1), rare_class=1, keep_fraction=0.1)
    np.testing.assert_array_equal(np.bincount(y_new), [100, 10])
    np.testing.assert_array_equal(y[x_new], np.array([3, 1])[y_new])  # same samples
    again = sw.make_imbalanced(x, y, classes=(3, 1), rare_class=1, keep_fraction=0.1)
    np.testing.assert_array_equal(again[0], x_new)  # seeded
    with pytest.raises(ValueError, match="rare_class 2 is not one of"):
        sw.make_imbalanced(x, y, classes=(3, 1), rare_class=2, keep_fraction=0.1)
    with pytest.raises(ValueError, match=r"keep_fraction must be in \(0, 1\]"):
        sw.make_imbalanced(x, y, classes=(3, 1), rare_class=1, keep_fraction=0)


def test_per_class_recall():
    recall = sw.per_class_recall([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 0], num_classes=4)
    np.testing.assert_allclose(recall, [0.5, 2 / 3, 0.0, 0.0])
    with pytest.raises(ValueError, match="one predicted class index per target"):
        sw.per_class_recall([0, 1], [[0, 1]], num_classes=2)


def test_class_weight_raises_recall_of_a_rare_class():
    # Two overlapping blobs, the second ten times rarer: unweighted training
    # sacrifices it; balanced class weights move the boundary towards it.
    rng = np.random.default_rng(1)
    y = np.array([0] * 400 + [1] * 40)
    x = (rng.normal(size=(len(y), 2)) + 1.2 * y[:, None]).astype("float32")
    recalls = []
    for class_weight in (None, sw.balanced_class_weight(y)):
        set_seed(0)
        inputs = keras.Input(shape=(2,))
        outputs = keras.layers.Dense(2, activation="softmax")(inputs)
        model = sw.WeightedTrainStepModel(inputs, outputs)
        model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, class_weight=class_weight, epochs=5, batch_size=64, verbose=0)
        y_pred_labels = model.predict(x, verbose=0).argmax(axis=1)
        recalls.append(sw.per_class_recall(y, y_pred_labels, num_classes=2))
    (plain_0, plain_1), (weighted_0, weighted_1) = recalls
    assert weighted_1 > plain_1 + 0.3 and weighted_0 < plain_0


def test_plot_recall_bars_labels_everything():
    recalls = {"no weights": np.array([0.9, 0.2]), "class_weight": np.array([0.7, 0.6])}
    fig = sw.plot_recall_bars(recalls, ["Shirt", "Coat"], title="Recall")
    ax = fig.axes[0]
    assert ax.get_title() == "Recall" and ax.get_ylabel() == "recall"
    assert ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Shirt", "Coat"]
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(recalls)


def test_largest_difference():
    a = [np.zeros((2, 2)), np.array([1.0, 2.0])]
    b = [np.zeros((2, 2)), np.array([1.5, 1.0])]
    assert sw.largest_difference(a, b) == 1.0
    assert sw.largest_difference(a, a) == 0.0
    with pytest.raises(ValueError, match="lists of 2 and 1 arrays; expected one"):
        sw.largest_difference(a, b[:1])
