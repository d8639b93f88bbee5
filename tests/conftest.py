"""Shared fixtures. Importing fitbook first keeps TensorFlow's start-up quiet."""

import os
from pathlib import Path

import fitbook  # noqa: F401  (quiet TensorFlow import before anything else)

# isort: split
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from fitbook import data
from fitbook.reproducibility import set_seed
from fitbook.sample_weights import make_classifier
from fitbook.tuning import dtype_policy

REPO_ROOT = Path(__file__).resolve().parents[1]


def toc_files(node=None):
    """Every file listed in _toc.yml, as repo-relative paths without suffix."""
    if node is None:
        node = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    found = [node[key] for key in ("root", "file") if key in node]
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []):
            found += toc_files(child)
    return found


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """A directory with the real, verified Fashion-MNIST files."""
    try:
        return data.locate_fashion_mnist(download=False)
    except data.DataError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the data (make test installs it): {err}")
        pytest.skip(f"Fashion-MNIST is not on this machine: {err}")


def pytest_configure(config):
    """Markers that .ci/run selects for its second pass (oneDNN kernels off)."""
    config.addinivalue_line(
        "markers",
        "equivalence: our code vs Keras' or TensorFlow's own (a custom step vs "
        "the built-in one, a layer computed another way vs Keras' layer); "
        ".ci/run runs these again with TF_ENABLE_ONEDNN_OPTS=0",
    )
    config.addinivalue_line(
        "markers",
        "guard: the loop's non-finite-step guard; "
        ".ci/run runs these again with TF_ENABLE_ONEDNN_OPTS=0",
    )


# Weighted 3-class data shared by test_sample_weights and test_test_step.
WEIGHTED_N, WEIGHTED_BATCH_SIZE = 50, 16  # 16 + 16 + 16 + 2: the last batch is partial


@pytest.fixture(scope="module")
def weighted_data():
    """``(x, y, sample_weight)``: WEIGHTED_N random images, 3 classes, weights."""
    rng = np.random.default_rng(0)
    x = rng.random((WEIGHTED_N, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 3, WEIGHTED_N)
    sample_weight = rng.random(WEIGHTED_N).astype("float32")
    return x, y, sample_weight


def weighted_classifier(model_class, weights=None):
    """A compiled 3-class classifier, seeded, optionally starting from weights."""
    set_seed(0)
    return make_classifier(model_class, num_classes=3, weights=weights)


def assert_same_weights(first, second, rtol=0.0, atol=0.0):
    """Assert two models (or two lists of arrays) hold the same weights, pair by
    pair, within ``rtol``/``atol`` (``numpy.testing.assert_allclose``); exact by
    default."""
    def arrays(weights):
        if hasattr(weights, "weights"):  # a Keras model or layer
            weights = weights.weights
        return [np.asarray(w) for w in weights]

    first, second = arrays(first), arrays(second)
    assert len(first) == len(second), (len(first), len(second))
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def random_images(n, seed=0, shape=(28, 28, 1)):
    """``n`` random float32 images in [0, 1) of ``shape``."""
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


def labeled_images(n, seed=0, classes=10):
    """``(x, y)``: ``n`` random float32 images in [0, 1) and int64 labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype="float32")
    y = rng.integers(0, classes, size=n).astype("int64")
    return x, y


@pytest.fixture(params=["float32", "mixed_float16", "mixed_bfloat16"])
def policy(request):
    """Run the test under each global dtype policy, then restore the previous one.

    A test module may override it (test_loops selects policies per test)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy(previous)


def outputs_and_gradients(layer, x):
    """The layer's output, the gradient of sum(output^2) for its input, kernel
    and bias, all as float32 arrays."""
    x = tf.cast(x, layer.compute_dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
    values = [y, *tape.gradient(loss, [x, *layer.trainable_weights])]
    return [np.asarray(tf.cast(v, "float32")) for v in values]


def twin_layers(keras_class, other_class, policy, shape, *args, **options):
    """``keras_class`` built as float32 (the exact sums) and ``other_class``
    built under ``policy``, both from ``args`` and ``options``, built for
    ``shape`` and given the same random weights. With a sigmoid activation the
    outputs stay positive, so that a bias gradient does not cancel."""
    made = []
    for layer_class, building in ((keras_class, "float32"), (other_class, policy)):
        with dtype_policy(building):
            layer = layer_class(*args, **options)
        layer.build(shape)
        made.append(layer)
    rng = np.random.default_rng(1)
    weights = [0.3 * rng.normal(size=w.shape) for w in made[0].get_weights()]
    for layer in made:
        layer.set_weights(weights)
    return made
