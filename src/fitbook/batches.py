"""Building block: taking batches apart and checking them.

Every custom ``train_step``/``test_step`` in the book starts by unpacking its
batch; these helpers do it once, with errors that say what to pass instead
(chapters "What fit() does", "Overriding train_step", "Sample weights", "A GAN").
"""

import keras
import tensorflow as tf
from keras import ops

from fitbook.data import IMAGE_SHAPE


def unpack_x(data):
    """The ``x`` of a batch ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``."""
    return keras.utils.unpack_x_y_sample_weight(data)[0]


def describe_batch(data):
    """Describe a batch's structure, e.g. ``"(float32 (None, 4), int64 (None,))"``.

    Used by ``InstrumentedModel`` to show what ``train_step`` receives (chapter
    "What fit() does").
    """
    if isinstance(data, (tuple, list)):
        return "(" + ", ".join(describe_batch(item) for item in data) + ")"
    if data is None:
        return "None"
    return f"{data.dtype.name} {tuple(data.shape)}"


def unpack_x_y(data):
    """Return ``x, y`` from a batch ``(x, y)``, or raise a clear error (chapter
    "Overriding train_step")."""
    if not isinstance(data, (tuple, list)):
        data = (data,)  # fit(x) without y delivers x alone
    if len(data) == 3:
        raise ValueError(
            "This train_step takes batches (x, y); got (x, y, sample_weight). "
            "fit(sample_weight=...) and fit(class_weight=...) add that third "
            "element: drop them, or use a train_step that passes sample_weight on "
            "(chapter 'Sample weights and class weights')."
        )
    if len(data) != 2 or data[1] is None:
        raise ValueError(
            f"A training batch must be (x, y); got {len(data)} element(s): "
            f"{describe_batch(tuple(data))}. Pass targets to fit(x, y), or make "
            "the dataset yield (x, y) pairs."
        )
    return data[0], data[1]


def batch_size_of(x):
    """The number of samples in ``x``, a tensor or a structure of them, as the
    built-in step counts them (chapter "Overriding train_step")."""
    return tf.shape(tf.nest.flatten(x)[0])[0]


def unpack_batch(data):
    """Split a batch into checked ``x, y, sample_weight`` (chapter "Sample weights")."""
    if isinstance(data, (tuple, list)) and len(data) > 3:
        shapes = ", ".join(str(tuple(t.shape)) for t in tf.nest.flatten(data))
        raise ValueError(
            "A batch must be x, (x,), (x, y) or (x, y, sample_weight); got "
            f"{len(data)} elements with shapes {shapes}. Make the dataset yield "
            "at most three elements."
        )
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if y is None:
        raise ValueError(
            "A training or evaluation batch needs targets y; got x alone. Pass "
            "y to fit() or evaluate(), or make the dataset yield (x, y) or "
            "(x, y, sample_weight)."
        )
    if sample_weight is not None:  # one array, or one per output of the model
        first_y = tf.nest.flatten(y)[0]
        sample_weight = tf.nest.map_structure(
            lambda weights: check_sample_weight(weights, first_y), sample_weight
        )
    return x, y, sample_weight


def check_sample_weight(sample_weight, y):
    """Return ``sample_weight`` if it holds one weight per sample of ``y``, else raise.

    Used by ``unpack_batch`` (chapter "Sample weights"). Shapes known while
    tracing are checked at once; a batch size known only at run time is checked
    by an assertion inside the graph.
    """
    sample_weight, y = tf.convert_to_tensor(sample_weight), tf.convert_to_tensor(y)
    expected = f"shape (batch_size,) = ({y.shape[0]},), one weight per sample"
    if sample_weight.shape.rank not in (None, 1):
        raise ValueError(
            f"sample_weight has shape {sample_weight.shape}; expected {expected}. "
            "Reshape it with sample_weight.reshape(-1) or pass one number per "
            "sample."
        )
    n_weights, n_targets = sample_weight.shape.num_elements(), y.shape[0]
    if n_weights is not None and n_targets is not None and n_weights != n_targets:
        raise ValueError(
            f"sample_weight has {n_weights} weights for a batch of {n_targets} "
            f"targets; expected {expected}."
        )
    matches = tf.logical_and(
        tf.equal(tf.rank(sample_weight), 1),
        tf.equal(tf.size(sample_weight), tf.shape(y)[0]),
    )
    check = tf.debugging.Assert(
        matches, [f"sample_weight does not match the batch; expected {expected}"]
    )
    with tf.control_dependencies([check]):  # check before any use of the weights
        return tf.identity(sample_weight)


def check_images(x, shape=IMAGE_SHAPE, model="The GAN"):
    """Return ``x`` as float32 after checking it is a batch of images of ``shape``
    (28x28x1 by default); ``model`` names who expects them in the error."""
    if tuple(x.shape[1:]) != tuple(shape):
        dims = ", ".join(str(d) for d in shape)
        raise ValueError(
            f"{model} expects images of shape (batch, {dims}), got "
            f"{tuple(x.shape)}. Add the channel axis with x[..., None] or "
            f"reshape to (-1, {dims})."
        )
    return ops.cast(x, "float32")


def unpack_images(data, model):
    """The images of a batch ``x`` or ``(x, y)``; a clear error for sample weights,
    which these models cannot honour (chapters "A GAN", "A VAE", "WGAN-GP")."""
    x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:
        raise ValueError(
            f"{type(model).__name__} got sample weights, which its losses cannot "
            "honour. Pass images x, or (x, labels), with no sample_weight= or "
            "class_weight= to fit() or evaluate()."
        )
    return x
