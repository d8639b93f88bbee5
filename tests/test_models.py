"""fitbook.models: one classifier recipe reproduces every network the book built
with its own builder (the counts below were recorded from those builders)."""

import keras
import numpy as np
import pytest

from fitbook.models import (
    ActivityPenalty,
    classifier,
    compile_classifier,
)
from fitbook.reproducibility import set_seed
from fitbook.train_step import CustomTrainStepModel


def kinds(model):
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize(
    "options, params, layers",
    [
        # fit_internals, sample_weights, performance: softmax MLP, functional
        (dict(model_class=keras.Model, probabilities=True), 50_890,
         ["InputLayer", "Flatten", "Dense", "Dense"]),
        (dict(model_class=keras.Model, num_classes=3, probabilities=True), 50_435,
         ["InputLayer", "Flatten", "Dense", "Dense"]),
        # loops: logits MLP with Dropout (and the penalty layer)
        (dict(hidden=128, dropout=0.2), 101_770,
         ["Flatten", "Dense", "Dropout", "Dense"]),
        (dict(hidden=128, dropout=0.0, penalty=0.5), 101_770,
         ["Flatten", "Dense", "ActivityPenalty", "Dropout", "Dense"]),
        # input_gradients: two conv blocks, no hidden Dense
        (dict(conv=(16, 32), hidden=None), 12_810,
         ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]),
        # quality: two conv blocks and a named features layer
        (dict(conv=(32, 64), hidden=64, features="features"), 121_930,
         ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense",
          "Dense"]),
    ],
)
def test_each_former_builder_is_one_recipe(options, params, layers):
    model = classifier(**options)
    assert model.count_params() == params
    assert kinds(model) == layers
    assert model.output_shape == (None, options.get("num_classes", 10))


def test_probabilities_or_logits():
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    probabilities = classifier(keras.Model, probabilities=True, seed=0)(x)
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, rtol=1e-5)
    assert classifier(seed=0).layers[-1].get_config()["activation"] == "linear"


def test_same_seed_same_weights_across_model_classes_and_assemblies():
    a = classifier(keras.Model, seed=3, probabilities=True)
    b = classifier(CustomTrainStepModel, seed=3, probabilities=True)
    c = classifier(seed=3, probabilities=True)  # Sequential
    d = classifier(keras.Model, seed=4, probabilities=True)
    for other in (b, c):
        for u, v in zip(a.get_weights(), other.get_weights()):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.get_weights()[0], d.get_weights()[0])


def test_unseeded_weights_follow_the_global_seed():
    set_seed(0)
    first = classifier(conv=(16, 32), hidden=None).get_weights()
    set_seed(0)
    again = classifier(conv=(16, 32), hidden=None).get_weights()
    set_seed(1)
    other = classifier(conv=(16, 32), hidden=None).get_weights()
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


def test_features_layer_is_named_and_dropout_zero_is_kept():
    assert classifier(hidden=8, features="features").get_layer("features").units == 8
    assert "Dropout" in kinds(classifier(hidden=8, dropout=0.0))
    assert "Dropout" not in kinds(classifier(hidden=8))


def test_compile_classifier():
    model = compile_classifier(classifier(seed=0), logits=True, weighted=True)
    assert model.compiled and model.loss.get_config()["from_logits"]
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_activity_penalty_rejects_negative_rates():
    with pytest.raises(ValueError, match="rate must be a non-negative number"):
        ActivityPenalty(-1.0)
