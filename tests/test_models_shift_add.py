"""fitbook.models.ShiftAddConv2D: Conv2D computed as one matmul and shifted adds
gives Conv2D's outputs and gradients, saves and reloads, and builds the same
generator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import outputs_and_gradients
from fitbook import models as M
from fitbook.models import ShiftAddConv2D
from fitbook.tuning import dtype_policy

pytestmark = pytest.mark.equivalence  # .ci/run: again with oneDNN's kernels off

# Largest |difference| from float32's Conv2D over its largest |value|: float32
# only sums in another order; bfloat16 keeps 8 significant bits of every input,
# weight and product, and the bias gradient sums over all outputs. Compared with
# float32, not with Keras' own bfloat16 Conv2D, whose rounding depends on the
# kernels (oneDNN's or TensorFlow's other ones: TF_ENABLE_ONEDNN_OPTS=0).
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 5e-2}


def twins(policy, filters, kernel, padding, shape=(2, 9, 8, 5), **options):
    """A Conv2D and a ShiftAddConv2D with the same random weights, built. A
    sigmoid, as in the generator, keeps every output positive, so that the
    bias gradient (a sum over all outputs) has no cancellation that would
    magnify bfloat16's rounding."""
    with dtype_policy(policy):
        keras_conv, shifted = (
            kind(filters, kernel, padding=padding, activation="sigmoid", **options)
            for kind in (keras.layers.Conv2D, ShiftAddConv2D))
    for layer in (keras_conv, shifted):
        layer.build(shape)
    rng = np.random.default_rng(1)
    weights = [0.3 * rng.normal(size=w.shape) for w in keras_conv.get_weights()]
    for layer in (keras_conv, shifted):
        layer.set_weights(weights)
    return keras_conv, shifted


def assert_same(expected, got, tolerance):
    for name, e, g in zip(("output", "d input", "d kernel", "d bias"),
                          expected, got):
        assert e.shape == g.shape, name
        error = np.abs(e - g).max() / np.abs(e).max()
        assert error <= tolerance, f"{name}: relative error {error:.2g}"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("filters, kernel", [(1, 7), (3, 4), (2, (2, 3))])
def test_outputs_and_gradients_equal_conv2d(policy, padding, filters, kernel):
    keras_conv, _ = twins("float32", filters, kernel, padding)  # the exact sums
    _, shifted = twins(policy, filters, kernel, padding)
    x = np.random.default_rng(0).normal(size=(2, 9, 8, 5)).astype("float32")
    assert_same(outputs_and_gradients(keras_conv, x),
                outputs_and_gradients(shifted, x), TOLERANCE[policy])


@pytest.mark.parametrize("options", [dict(strides=2), dict(dilation_rate=2),
                                     dict(groups=5, filters=5)])
def test_falls_back_to_conv2d_where_the_trick_does_not_apply(options):
    filters = options.pop("filters", 2)
    keras_conv, shifted = twins("float32", filters, 3, "same", **options)
    x = np.random.default_rng(0).normal(size=(2, 9, 8, 5)).astype("float32")
    expected = outputs_and_gradients(keras_conv, x)
    got = outputs_and_gradients(shifted, x)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)  # the very same op


def test_save_and_reload(tmp_path):
    model = keras.Sequential([keras.Input((6, 6, 3)),
                              ShiftAddConv2D(1, 3, padding="same")])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[0], ShiftAddConv2D)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_generator_with_it_has_the_same_weights_and_outputs():
    standard, shifted = M.build_generator(), M.build_generator(conv="shift_add")
    assert isinstance(shifted.layers[-1], ShiftAddConv2D)
    assert type(standard.layers[-1]) is keras.layers.Conv2D
    assert shifted.count_params() == standard.count_params()
    shifted.set_weights(standard.get_weights())
    z = np.random.default_rng(0).normal(size=(3, M.LATENT_DIM)).astype("float32")
    np.testing.assert_allclose(np.asarray(shifted(z)), np.asarray(standard(z)),
                               atol=1e-6)
    with pytest.raises(ValueError, match="conv must be one of"):
        M.build_generator(conv="fast")


def test_shift_kernel_moves_each_channel_by_its_tap():
    """Channel (tap (a, b), filter f) of the one-hot kernel, applied depthwise
    with "valid" padding, reads pixel (i + a, j + b): one 1 per channel."""
    kh, kw, filters = 2, 3, 2
    kernel = M.shift_kernel(kh, kw, filters)
    assert kernel.shape == (kh, kw, kh * kw * filters, 1)
    assert (kernel.sum(axis=(0, 1, 3)) == 1).all()
    x = np.random.default_rng(0).normal(size=(1, 5, 6, kh * kw * filters))
    moved = np.asarray(keras.ops.depthwise_conv(x.astype("float32"), kernel))
    for a in range(kh):
        for b in range(kw):
            for f in range(filters):
                channel = (a * kw + b) * filters + f
                np.testing.assert_allclose(
                    moved[0, :, :, channel],
                    x[0, a:a + 5 - kh + 1, b:b + 6 - kw + 1, channel], rtol=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kh, kw, filters", [(3, 3, 1), (2, 3, 2), (4, 1, 3)])
def test_gather_kernel_moves_back(padding, kh, kw, filters):
    """The moves' gradient in ``shift_add`` (``gather_kernel`` after
    ``gradient_padding``'s zeros) is the adjoint of the moves: <moves(z), u>
    equals <z, gradient(u)> for random z and u."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 5, 6, kh * kw * filters)).astype("float32")
    moved = tf.nn.depthwise_conv2d(z, M.shift_kernel(kh, kw, filters),
                                   [1, 1, 1, 1], padding.upper())
    per_tap = tf.reshape(moved, (2, *moved.shape[1:3], kh * kw, filters))
    out = tf.reduce_sum(per_tap, axis=3)
    u = rng.normal(size=out.shape).astype("float32")
    back = [[0, 0], M.gradient_padding(kh, padding),
            M.gradient_padding(kw, padding), [0, 0]]
    gathered = tf.nn.conv2d(tf.pad(u, back), M.gather_kernel(kh, kw, filters), 1,
                            "VALID")
    assert gathered.shape == z.shape
    np.testing.assert_allclose(float(tf.reduce_sum(out * u)),
                               float(tf.reduce_sum(z * gathered)), rtol=1e-5)


def test_gradient_padding_completes_conv2d_padding():
    """Per side, Conv2D's zeros and the gradient's add up to size - 1."""
    assert M.gradient_padding(7, "same") == [3, 3]
    assert M.gradient_padding(4, "same") == [2, 1]  # Conv2D: 1 before, 2 after
    assert M.gradient_padding(4, "valid") == [3, 3]
