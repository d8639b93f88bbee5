"""Tests for fitbook.input_gradients (chapter "The tape beyond weights")."""

import keras
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fitbook.input_gradients import (  # noqa: E402
    finite_difference_gradient,
    input_gradient,
    maximize_class,
    plot_saliency,
    saliency_map,
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
