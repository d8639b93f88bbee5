"""Gradients with respect to the input image (chapter "The tape beyond weights").

``GradientTape`` differentiates with respect to any tensor it watches, not only
weights: here the input pixels, for saliency maps and for gradient ascent that
draws what a class unit responds to.
"""

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
