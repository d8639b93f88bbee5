"""Gradients with respect to the input image (chapter "The tape beyond weights").

``GradientTape`` differentiates with respect to any tensor it watches, not only
weights: here the input pixels, for saliency maps and for gradient ascent that
draws what a class unit responds to.
"""

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from fitbook.data import CLASS_NAMES


def _check_class_index(model, class_index):
    num_classes = model.output_shape[-1]
    if not 0 <= int(class_index) < num_classes:
        raise ValueError(
            f"class_index must be in [0, {num_classes}) for this model's "
            f"{num_classes} outputs; got {class_index}."
        )


def input_gradient(model, x, class_index):
    """``d model(x)[:, class_index] / d x`` (chapter "The tape beyond weights")."""
    _check_class_index(model, class_index)
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)  # x is a constant, not a variable: the tape must be told
        score = model(x, training=False)[:, class_index]
        # The sum's gradient is each image's own gradient: images do not interact.
        total = tf.reduce_sum(score)
    return tape.gradient(total, x)


def saliency_map(model, x, class_index):
    """``|d score / d x|``, max over channels (chapter "The tape beyond weights")."""
    return tf.reduce_max(tf.abs(input_gradient(model, x, class_index)), axis=-1)


def finite_difference_gradient(f, x, pixels, eps=1e-3):
    """Central differences ``(f(x + eps) - f(x - eps)) / 2 eps`` at chosen pixels.

    ``f`` maps an array shaped like ``x`` to a scalar; ``pixels`` is a list of
    index tuples into ``x``. Used to check ``input_gradient`` (chapter "The tape
    beyond weights").
    """
    x = np.asarray(x, dtype="float64")
    estimates = []
    for index in pixels:
        step = np.zeros_like(x)
        step[index] = eps
        estimates.append((float(f(x + step)) - float(f(x - step))) / (2 * eps))
    return np.array(estimates)


def maximize_class(model, class_index, x=None, steps=100, step_size=0.05):
    """Gradient ascent on an image (chapter "The tape beyond weights").

    Starts from ``x`` (a grey image by default), normalises each gradient so the
    step size means the same at every step, and keeps pixels in [0, 1]. Returns
    the final image and the target logit measured at the start of every step.
    """
    _check_class_index(model, class_index)
    if x is None:
        x = np.full((1, *model.input_shape[1:]), 0.5, dtype="float32")
    image = tf.Variable(x, dtype="float32")  # a variable: the tape watches it itself
    logits = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            score = model(image, training=False)[0, class_index]
        grad = tape.gradient(score, image)
        grad = grad / (tf.math.reduce_std(grad) + 1e-8)  # unit-sized steps
        image.assign(tf.clip_by_value(image + step_size * grad, 0.0, 1.0))
        logits.append(float(score))
    return image.numpy(), logits


def plot_saliency(x, maps, labels, class_names=CLASS_NAMES):
    """Images above their saliency maps (chapter "The tape beyond weights")."""
    x, maps = np.asarray(x), np.asarray(maps)
    if len(x) != len(maps) or len(x) != len(labels):
        raise ValueError(
            f"need as many maps and labels as images; got {len(x)} images, "
            f"{len(maps)} maps and {len(labels)} labels."
        )
    fig, axes = plt.subplots(2, len(x), figsize=(1.6 * len(x), 3.6), squeeze=False)
    for i in range(len(x)):
        axes[0, i].imshow(x[i, :, :, 0], cmap="gray_r", vmin=0.0, vmax=1.0)
        axes[0, i].set_title(class_names[int(labels[i])], fontsize=8)
        axes[1, i].imshow(maps[i] / maps[i].max(), cmap="hot", vmin=0.0, vmax=1.0)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("|d logit / d pixel|\n(scaled to max 1)")
    fig.suptitle("Saliency of the true class's logit")
    fig.tight_layout()
    return fig


def _as_layer(model, layer):
    if isinstance(layer, str):
        return model.get_layer(layer)
    if layer not in model.layers:
        raise ValueError(
            f"layer {getattr(layer, 'name', layer)!r} is not a layer of model "
            f"{model.name!r}; pass one of model.layers or its name."
        )
    return layer


def maximize_filter(model, layer, filter_index, x=None, steps=40, step_size=0.05):
    """Gradient ascent on an image for one conv filter (feature visualisation).

    ``layer`` is a layer of ``model`` or its name. The objective is the filter's
    mean activation over all positions of ``layer``'s output; the weights stay
    fixed. Returns the final image and the objective at the start of every step
    (chapter "The tape beyond weights").
    """
    layer = _as_layer(model, layer)
    filters = layer.output.shape[-1]
    if not 0 <= int(filter_index) < filters:
        raise ValueError(
            f"filter_index must be in [0, {filters}) for layer {layer.name!r}; "
            f"got {filter_index}."
        )
    # The same layers and weights, another output (model.inputs works for a
    # Sequential model that has never been called, model.input does not).
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras.Model(inputs, layer.output)
    if x is None:
        x = np.full((1, *model.input_shape[1:]), 0.5, dtype="float32")
    image = tf.Variable(x, dtype="float32")
    values = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            maps = extractor(image, training=False)
            objective = tf.reduce_mean(maps[..., filter_index])
        grad = tape.gradient(objective, image)
        grad = grad / (tf.math.reduce_std(grad) + 1e-8)  # unit-sized steps
        image.assign(tf.clip_by_value(image + step_size * grad, 0.0, 1.0))
        values.append(float(objective))
    return image.numpy(), values


def activation_gradient(activation, z):
    """``d activation(z) / d z`` elementwise, by the tape (chapter "The tape beyond
    weights")."""
    z = tf.convert_to_tensor(z, dtype="float32")
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(activation(z))  # each output depends on its own z only
    return tape.gradient(total, z)


def activation_mlp(activation, hidden=128, seed=0, num_classes=10):
    """Flatten -> Dense(hidden) "pre" -> ``activation`` layer -> Dense logits.

    The hidden layer's pre-activations are a separate output of ``pre``, so dead
    units can be counted (chapter "The tape beyond weights").
    """
    glorot = keras.initializers.GlorotUniform
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, kernel_initializer=glorot(seed), name="pre"),
        activation,
        keras.layers.Dense(num_classes, kernel_initializer=glorot(seed + 1),
                           name="logits"),
    ])


def dead_units(pre_activations):
    """Which units never have a positive pre-activation on these examples.

    ``pre_activations`` is ``(examples, units)``. A ReLU unit that is dead on the
    whole data set outputs 0 and passes back a zero gradient for every example,
    so nothing can revive it (chapter "The tape beyond weights").
    """
    z = np.asarray(pre_activations)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(
            f"pre_activations must have shape (examples, units) with at least one "
            f"example; got {z.shape}."
        )
    return (z <= 0).all(axis=0)


def conv_input_gradient(conv, x, upstream):
    """``d sum(K x * upstream) / d x`` by the tape, where ``K x`` is ``conv``'s
    convolution alone (no bias, no activation): the backward pass of that linear
    map for an upstream gradient (chapter "The tape beyond weights")."""
    x = tf.convert_to_tensor(x, dtype="float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = keras.ops.conv(x, conv.kernel, strides=conv.strides, padding=conv.padding,
                           dilation_rate=conv.dilation_rate)
        total = tf.reduce_sum(y * upstream)
    return tape.gradient(total, x)


def transposed_twin(conv):
    """A ``Conv2DTranspose`` with ``conv``'s kernel, strides and padding, no bias.

    Applied to an upstream gradient of ``conv``'s output shape it computes the
    gradient with respect to ``conv``'s input (chapter "The tape beyond weights").
    """
    if not isinstance(conv, keras.layers.Conv2D) or not conv.built:
        raise ValueError(
            "transposed_twin needs a built keras.layers.Conv2D (call it on an input "
            f"first); got {type(conv).__name__}."
        )
    kernel = conv.kernel.numpy()  # (height, width, in_channels, filters)
    twin = keras.layers.Conv2DTranspose(
        kernel.shape[2], kernel.shape[:2], strides=conv.strides,
        padding=conv.padding, use_bias=False, dtype=conv.dtype_policy,
    )
    twin.build((None, None, None, kernel.shape[3]))
    twin.kernel.assign(kernel)  # the same array: Conv2DTranspose reads it transposed
    return twin
