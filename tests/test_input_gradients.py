"""Tests for fitbook.input_gradients (chapter "The tape beyond weights")."""

import keras
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fitbook.input_gradients import (  # noqa: E402
    activation_gradient,
    activation_mlp,
    conv_input_gradient,
    dead_units,
    finite_difference_gradient,
    input_gradient,
    maximize_class,
    maximize_filter,
    plot_saliency,
    saliency_map,
    transposed_twin,
)
from fitbook.models import classifier  # noqa: E402
from fitbook.reproducibility import set_seed  # noqa: E402


def tiny_model():
    """A float64 conv net, so finite differences are accurate."""
    set_seed(0)
    return keras.Sequential([
        keras.Input((6, 6, 1), dtype="float64"),
        keras.layers.Conv2D(2, 3, activation="tanh", dtype="float64"),
        keras.layers.Flatten(dtype="float64"),
        keras.layers.Dense(3, dtype="float64"),
    ])


def test_finite_differences_recover_a_known_derivative():
    x = np.array([0.5, -1.0, 2.0])
    estimate = finite_difference_gradient(lambda v: np.sum(v**3), x, [(0,), (1,), (2,)])
    np.testing.assert_allclose(estimate, 3 * x**2, rtol=1e-5)


def test_input_gradient_matches_central_finite_differences():
    model = tiny_model()
    x = np.random.default_rng(0).random((1, 6, 6, 1))
    grad = np.asarray(input_gradient(model, x, class_index=1))
    pixels = [(0, 0, 0, 0), (0, 2, 3, 0), (0, 5, 1, 0), (0, 4, 4, 0)]
    estimate = finite_difference_gradient(
        lambda v: np.asarray(model(v))[0, 1], x, pixels, eps=1e-5
    )
    np.testing.assert_allclose([grad[p] for p in pixels], estimate, rtol=1e-6)


def test_input_gradient_keeps_images_apart_and_saliency_is_its_size():
    model = tiny_model()
    x = np.random.default_rng(1).random((3, 6, 6, 1))
    both = np.asarray(input_gradient(model, x, 2))
    alone = np.asarray(input_gradient(model, x[1:2], 2))
    np.testing.assert_allclose(both[1:2], alone, rtol=1e-12)
    saliency = np.asarray(saliency_map(model, x, 2))
    np.testing.assert_allclose(saliency, np.abs(both[..., 0]))


def test_gradient_ascent_raises_the_target_logit_within_pixel_range():
    model = tiny_model()
    image, logits = maximize_class(model, class_index=0, steps=20, step_size=0.02)
    assert logits[-1] > logits[0]
    assert image.shape == (1, 6, 6, 1)
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_class_index_out_of_range_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 3\)"):
        input_gradient(model, np.zeros((1, 6, 6, 1)), 3)
    with pytest.raises(ValueError, match="class_index"):
        maximize_class(model, -1)


def test_classifier_outputs_logits_and_saliency_plot_checks_lengths():
    model = classifier(conv=(16, 32), hidden=None)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation is keras.activations.linear
    x = np.random.default_rng(2).random((2, 28, 28, 1)).astype(np.float32)
    maps = np.asarray(saliency_map(model, x, 0))
    # Valid convolutions and 2x2 pooling leave the last two rows and columns unused.
    assert not maps[:, 26:, :].any() and not maps[:, :, 26:].any()
    fig = plot_saliency(x, maps, [0, 1])
    assert fig._suptitle.get_text()
    with pytest.raises(ValueError, match="as many maps and labels"):
        plot_saliency(x, maps, [0])


def test_maximize_filter_raises_the_filter_activation():
    set_seed(0)
    model = classifier(conv=(4,), hidden=None)
    conv = model.layers[0]
    image, values = maximize_filter(model, conv, 1, steps=8, step_size=0.1)
    assert image.shape == (1, 28, 28, 1)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert len(values) == 8 and values[-1] > values[0]
    same, _ = maximize_filter(model, conv.name, 1, steps=8, step_size=0.1)
    np.testing.assert_allclose(same, image)  # a name works like the layer
    with pytest.raises(ValueError, match=r"filter_index must be in \[0, 4\)"):
        maximize_filter(model, conv, 4)
    with pytest.raises(ValueError, match="not a layer of model"):
        maximize_filter(model, keras.layers.Conv2D(2, 3), 0)


def test_activation_gradient_relu_is_flat_below_zero_leaky_is_not():
    z = np.array([-2.0, -0.5, 0.5, 2.0])
    np.testing.assert_array_equal(
        np.asarray(activation_gradient(keras.activations.relu, z)), [0, 0, 1, 1]
    )
    leaky = keras.layers.LeakyReLU(negative_slope=0.1)
    np.testing.assert_allclose(
        np.asarray(activation_gradient(leaky, z)), [0.1, 0.1, 1, 1], rtol=1e-6
    )


def test_activation_mlp_exposes_pre_activations():
    net = activation_mlp(keras.layers.ReLU(), hidden=5, seed=0)
    assert net.get_layer("pre").units == 5
    assert tuple(net(np.zeros((2, 28, 28, 1))).shape) == (2, 10)
    again = activation_mlp(keras.layers.ReLU(), hidden=5, seed=0)
    np.testing.assert_array_equal(
        net.get_layer("pre").kernel.numpy(), again.get_layer("pre").kernel.numpy()
    )


def test_dead_units_are_never_positive():
    z = np.array([[-1.0, 0.0, 2.0], [-3.0, 0.0, -1.0]])
    np.testing.assert_array_equal(dead_units(z), [True, True, False])
    with pytest.raises(ValueError, match=r"\(examples, units\)"):
        dead_units(np.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        dead_units(np.zeros((0, 3)))


@pytest.mark.parametrize(
    "strides, padding, size", [(1, "valid", 7), (2, "same", 8), (2, "valid", 9)]
)
def test_transposed_twin_computes_the_convolution_input_gradient(
    strides, padding, size
):
    rng = np.random.default_rng(0)
    # bias and activation are not part of the linear map: they are left out
    conv = keras.layers.Conv2D(4, 3, strides=strides, padding=padding,
                               activation="relu", bias_initializer="ones")
    x = rng.random((2, size, size, 3), dtype=np.float32)
    g = rng.normal(size=conv.compute_output_shape(x.shape)).astype("float32")
    conv.build(x.shape)
    by_tape = np.asarray(conv_input_gradient(conv, x, g))
    by_transpose = np.asarray(transposed_twin(conv)(g))
    assert by_transpose.shape == x.shape
    np.testing.assert_allclose(by_transpose, by_tape, atol=1e-5)


def test_transposed_twin_needs_a_built_conv2d():
    with pytest.raises(ValueError, match="built keras.layers.Conv2D"):
        transposed_twin(keras.layers.Conv2D(2, 3))
    with pytest.raises(ValueError, match="built keras.layers.Conv2D"):
        transposed_twin(keras.layers.Dense(2))
