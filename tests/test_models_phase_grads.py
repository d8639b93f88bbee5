"""fitbook.models' kernel gradients by phases: ``phase_kernel_gradient`` equals
TensorFlow's own kernel gradient, and ``PhaseGradConv2D`` /
``PhaseGradConv2DTranspose`` give Keras' outputs and gradients, save and
reload, and build the same generator and discriminator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import outputs_and_gradients, twin_layers
from fitbook import models as M
from fitbook.models import (
    PhaseGradConv2D,
    PhaseGradConv2DTranspose,
    PhaseGradMatmulBiasConv2DTranspose,
)

pytestmark = pytest.mark.equivalence  # .ci/run: again with oneDNN's kernels off

# Largest |difference| from float32's Keras layer over its largest |value|:
# float32 only sums in another order; bfloat16 keeps 8 significant bits of
# every input, weight and product (compared with float32, not with a kernel's
# own bfloat16 rounding).
TOLERANCE = {"float32": 1e-5, "mixed_bfloat16": 5e-2}
KERAS_TWIN = {PhaseGradConv2D: keras.layers.Conv2D,
              PhaseGradConv2DTranspose: keras.layers.Conv2DTranspose,
              PhaseGradMatmulBiasConv2DTranspose: keras.layers.Conv2DTranspose}


def test_phase_taps_name_phase_and_block_shift():
    # the generator's 7 -> 14 transposed convolution: kernel 4, 1 zero in front
    assert M.phase_taps(4, 2, 1) == [(1, -1), (0, 0), (1, 0), (0, 1)]
    # the discriminator's 14 -> 7 convolution: kernel 3, no zero in front
    assert M.phase_taps(3, 2, 0) == [(0, 0), (1, 0), (0, 1)]
    for size, stride, before in [(5, 3, 2), (2, 2, 0), (7, 4, 3)]:
        for k, (phase, shift) in enumerate(M.phase_taps(size, stride, before)):
            assert 0 <= phase < stride and stride * shift + phase == k - before


def test_front_padding_is_conv2d_own():
    assert M.front_padding(3, 2, "same", 14, 7) == 0  # 1 zero, after
    assert M.front_padding(4, 2, "SAME", 14, 7) == 1  # 2 zeros, 1 in front
    assert M.front_padding(4, 2, "valid", 14, 6) == 0
    for size, stride, length in [(3, 2, 9), (5, 3, 10), (4, 2, 28)]:
        out = -(-length // stride)
        x = tf.ones((1, length, 1, 1))
        padded = M.front_padding(size, stride, "same", length, out)
        # Conv2D's "same" output equals "valid" on the input padded that way
        total = max((out - 1) * stride + size - length, 0)
        same = tf.nn.conv2d(x, tf.ones((size, 1, 1, 1)), stride, "SAME")
        valid = tf.nn.conv2d(tf.pad(x, [[0, 0], [padded, total - padded], [0, 0],
                                        [0, 0]]), tf.ones((size, 1, 1, 1)),
                             stride, "VALID")
        np.testing.assert_array_equal(np.asarray(same), np.asarray(valid))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("size, stride, shape", [
    ((3, 3), 2, (2, 14, 14, 5)),  # the discriminator's second convolution
    ((4, 4), 2, (2, 14, 14, 3)),  # the generator's first, roles swapped
    ((2, 3), 2, (3, 9, 8, 4)),
    ((5, 5), 3, (2, 10, 11, 2)),
    ((4, 1), 2, (1, 7, 6, 3)),
])
def test_kernel_gradient_equals_tensorflow_own(padding, size, stride, shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape), "float32")
    kernel_shape = (*size, shape[-1], 4)
    out = tf.nn.conv2d(x, tf.zeros(kernel_shape), stride, padding)
    upstream = tf.constant(rng.normal(size=out.shape), "float32")
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=kernel_shape, out_backprop=upstream,
        strides=[1, stride, stride, 1], padding=padding)
    got = M.phase_kernel_gradient(x, upstream, size, stride, padding)
    assert got.shape == kernel_shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected),
                               rtol=1e-4, atol=1e-4)


def twins(kind, policy, shape, kernel_size=3, **options):
    """Keras' layer built as float32 and ``kind`` built under ``policy``, with
    the same weights (``twin_layers``)."""
    return twin_layers(KERAS_TWIN[kind], kind, policy, shape, 4, kernel_size,
                       activation="sigmoid", **options)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", list(KERAS_TWIN))
@pytest.mark.parametrize("options", [dict(strides=2, padding="same"),
                                     dict(strides=2, padding="valid", kernel_size=4),
                                     dict(strides=3, padding="same", kernel_size=5)])
def test_outputs_and_gradients_equal_keras_layer(policy, kind, options):
    shape = (2, 7, 8, 3)
    keras_layer, layer = twins(kind, policy, shape, **dict(options))
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    expected = outputs_and_gradients(keras_layer, x)
    got = outputs_and_gradients(layer, x)
    names = ["output", "d input", "d kernel", "d bias"]
    if policy == "mixed_bfloat16" and kind is not PhaseGradMatmulBiasConv2DTranspose:
        names.pop()  # Keras' own bias gradient, whose bfloat16 sums stop growing
    for name, e, g in zip(names, expected, got):
        assert e.shape == g.shape, name
        error = np.abs(e - g).max() / np.abs(e).max()
        assert error <= TOLERANCE[policy], f"{name}: relative error {error:.2g}"


@pytest.mark.parametrize("kind", list(KERAS_TWIN))
@pytest.mark.parametrize("options", [dict(strides=1), dict(strides=(2, 1)),
                                     dict(dilation_rate=2)])
def test_falls_back_to_keras_where_the_trick_does_not_apply(kind, options):
    if "dilation_rate" in options and kind is not PhaseGradConv2D:
        # TensorFlow's own CPU kernels (TF_ENABLE_ONEDNN_OPTS=0) have no dilated
        # transposed convolution; output padding falls back all the same
        options = dict(strides=2, output_padding=1)
    keras_layer, layer = twins(kind, "float32", (2, 7, 8, 3), padding="same",
                               **options)
    x = np.random.default_rng(0).normal(size=(2, 7, 8, 3)).astype("float32")
    expected = outputs_and_gradients(keras_layer, x)
    got = outputs_and_gradients(layer, x)
    tolerance = 1e-6 if kind is PhaseGradMatmulBiasConv2DTranspose else 0
    for e, g in zip(expected, got):  # the very same ops, bar the bias matmul
        np.testing.assert_allclose(e, g, rtol=tolerance, atol=tolerance)


def test_gradients_under_xla():
    layer = PhaseGradConv2D(3, 3, strides=2, padding="same")
    layer.build((2, 8, 8, 2))
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 8, 8, 2)), "float32")

    def kernel_gradient(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, layer.kernel)

    np.testing.assert_allclose(
        np.asarray(tf.function(kernel_gradient, jit_compile=True)(x)),
        np.asarray(kernel_gradient(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", list(KERAS_TWIN))
def test_save_and_reload(tmp_path, kind):
    model = keras.Sequential([keras.Input((6, 6, 3)),
                              kind(2, 3, strides=2, padding="same")])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[0]) is kind
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


@pytest.mark.parametrize("conv", ["keras+phase_grads", "shift_add+matmul_bias"
                                  "+phase_grads"])
def test_networks_with_it_have_the_same_weights_and_outputs(conv):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, M.LATENT_DIM)).astype("float32")
    images = rng.random(size=(3, 28, 28, 1)).astype("float32")
    for build, x in ((M.build_generator, z), (M.build_discriminator, images)):
        standard, other = build(), build(conv=conv)
        phased = [type(layer) for layer in other.layers
                  if type(layer).__name__.startswith("PhaseGrad")]
        assert len(phased) == 1  # the one layer on the 7x7 grid
        assert other.count_params() == standard.count_params()
        other.set_weights(standard.get_weights())
        np.testing.assert_allclose(np.asarray(other(x)), np.asarray(standard(x)),
                                   atol=1e-6)


def test_conv_parts_and_classes():
    assert M.conv_parts("keras") == ("keras", False, False)
    assert M.conv_parts("shift_add+matmul_bias+phase_grads") == (
        "shift_add", True, True)
    assert len(set(M.CONVS)) == 8 and M.CONVS[:2] == ("keras", "shift_add")
    with pytest.raises(ValueError, match="conv must be one of"):
        M.conv_parts("keras+phase_grads+matmul_bias")  # the suffixes' order
    with pytest.raises(ValueError, match="conv must be one of"):
        M.build_discriminator(conv="fast")
    assert M.transposed_conv_class(True, True) is PhaseGradMatmulBiasConv2DTranspose
    assert M.transposed_conv_class(False, False) is keras.layers.Conv2DTranspose
