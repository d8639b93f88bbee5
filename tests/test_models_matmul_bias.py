"""fitbook.models.MatmulBiasConv2DTranspose: a Conv2DTranspose whose bias
gradient is a matmul gives Conv2DTranspose's outputs and gradients, saves and
reloads, and builds the same generator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import outputs_and_gradients, twin_layers
from fitbook import models as M
from fitbook.models import MatmulBiasConv2DTranspose, add_bias

pytestmark = pytest.mark.equivalence  # .ci/run: again with oneDNN's kernels off

# Largest |difference| from float32's Conv2DTranspose over its largest |value|:
# float32 sums the bias gradient in another order; bfloat16 keeps 8 significant
# bits of every input, weight and product (compared with float32, not with a
# kernel's own bfloat16 rounding).
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 5e-2}


def twins(policy, shape=(2, 5, 4, 3), **options):
    """A Conv2DTranspose built as float32 and a MatmulBiasConv2DTranspose built
    under ``policy``, with the same weights (``twin_layers``)."""
    return twin_layers(keras.layers.Conv2DTranspose, MatmulBiasConv2DTranspose,
                       policy, shape, 4, 3, activation="sigmoid", **options)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("options", [dict(strides=2, padding="same"),
                                     dict(strides=1, padding="valid")])
def test_outputs_and_gradients_equal_conv2d_transpose(policy, options):
    keras_layer, layer = twins(policy, **options)
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype("float32")
    expected = outputs_and_gradients(keras_layer, x)
    got = outputs_and_gradients(layer, x)
    for name, e, g in zip(("output", "d input", "d kernel", "d bias"), expected, got):
        assert e.shape == g.shape, name
        error = np.abs(e - g).max() / np.abs(e).max()
        assert error <= TOLERANCE[policy], f"{name}: relative error {error:.2g}"


def test_add_bias_gradient_is_the_column_sums():
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4, 5)), "float32")
    bias = tf.constant(np.arange(5.0), "float32")
    upstream = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 4, 5)),
                           "float32")
    with tf.GradientTape() as tape:
        tape.watch([x, bias])
        y = add_bias(x, bias)
    d_x, d_bias = tape.gradient(y, [x, bias], output_gradients=upstream)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x) + np.arange(5.0),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(d_x), np.asarray(upstream))
    np.testing.assert_allclose(np.asarray(d_bias),
                               np.asarray(upstream).sum(axis=(0, 1, 2)), rtol=1e-5)


def test_without_bias_it_is_keras_own_layer():
    with_keras, layer = twins("float32", use_bias=False)
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype("float32")
    for e, g in zip(outputs_and_gradients(with_keras, x),
                    outputs_and_gradients(layer, x)):
        np.testing.assert_array_equal(e, g)


def test_save_and_reload(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 3)),
                              MatmulBiasConv2DTranspose(2, 3, strides=2,
                                                        padding="same")])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[0], MatmulBiasConv2DTranspose)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


@pytest.mark.parametrize("conv", ["keras+matmul_bias", "shift_add+matmul_bias"])
def test_generator_with_it_has_the_same_weights_and_outputs(conv):
    standard, other = M.build_generator(), M.build_generator(conv=conv)
    kinds = [type(layer) for layer in other.layers]
    assert kinds.count(MatmulBiasConv2DTranspose) == 2
    assert keras.layers.Conv2DTranspose not in kinds
    assert other.count_params() == standard.count_params()
    other.set_weights(standard.get_weights())
    z = np.random.default_rng(0).normal(size=(3, M.LATENT_DIM)).astype("float32")
    np.testing.assert_allclose(np.asarray(other(z)), np.asarray(standard(z)),
                               atol=1e-6)
