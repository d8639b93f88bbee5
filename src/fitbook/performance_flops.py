"""Floating-point operations counted from layer shapes (chapter "Performance").

A dense or convolutional layer is multiply-adds (MACs): each output value is a
sum of products of inputs and weights. One MAC is two floating-point operations
(FLOPs), so a forward pass costs ``2 * MACs``. The backward pass of such a layer
is two products of the same size: the gradient with respect to its weights and
the gradient with respect to its input, each one forward pass worth of MACs.

Only Dense, Conv2D and Conv2DTranspose are counted, and layers derived from them
as the layer they compute (``ShiftAddConv2D`` as Conv2D: its nominal MACs, so
FLOP/s stay comparable whichever way the convolution runs). Biases, activations,
reshapes, pooling, the loss and the optimizer's update are element-wise work,
one or a few FLOPs per value, and are left out: :func:`elementwise_share` says
how small they are next to the counted products.
"""

import dataclasses
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from fitbook.checks import positive_int, positive_ints

COUNTED_LAYERS = ("Dense", "Conv2D", "Conv2DTranspose")  # the layers with MACs
# TensorFlow op types that carry the counted layers' products in a forward graph.
SHAPE_HINT = (  # shapes come from a built model
    " Give it without the batch axis; build the model with keras.Input(shape) first."
)
PRODUCT_OPS = ("MatMul", "Conv2D", "Conv2DBackpropInput")


def dense_macs(input_shape, units):
    """MACs of a Dense layer for one sample: inputs x units per position.

    ``input_shape`` has no batch axis; Dense acts on its last axis, once for every
    position of the other axes (chapter "Performance").
    """
    input_shape = positive_ints("input_shape", input_shape, hint=SHAPE_HINT)
    positive_int("units", units)
    return math.prod(input_shape) * units


def conv2d_macs(output_shape, kernel_size, in_channels):
    """MACs of a Conv2D layer for one sample (chapter "Performance").

    Each output value (height x width x filters) sums a kernel window over all
    input channels; strides and padding are already in ``output_shape``. With
    ``padding="same"`` the border windows' products with padding zeros count
    too, as TensorFlow counts them.
    """
    output_shape = positive_ints("output_shape", output_shape, hint=SHAPE_HINT)
    kernel_size = positive_ints("kernel_size", kernel_size, hint=SHAPE_HINT)
    positive_int("in_channels", in_channels)
    return math.prod(output_shape) * math.prod(kernel_size) * in_channels


def conv2d_transpose_macs(input_shape, kernel_size, filters):
    """MACs of a Conv2DTranspose layer for one sample (chapter "Performance").

    Each input value is multiplied by a whole kernel and added into the output:
    input height x width x channels x kernel area x filters. With
    ``padding="same"`` this is TensorFlow's own count; with ``"valid"`` its
    profiler also counts the border products with zeros (see the tests).
    """
    input_shape = positive_ints("input_shape", input_shape, hint=SHAPE_HINT)
    kernel_size = positive_ints("kernel_size", kernel_size, hint=SHAPE_HINT)
    positive_int("filters", filters)
    return math.prod(input_shape) * math.prod(kernel_size) * filters


def counted_kind(layer):
    """The counted layer class ``layer`` is or derives from (its name), else
    ``None``: a ``ShiftAddConv2D`` is a ``"Conv2D"``."""
    for kind in COUNTED_LAYERS:
        if isinstance(layer, getattr(keras.layers, kind)):
            return kind
    return None


def layer_macs(layer):
    """Forward MACs of a built Keras layer for one sample; 0 for uncounted layers."""
    kind = counted_kind(layer)
    if kind is None:
        return 0
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(f"{layer.name}: grouped convolutions are not counted.")
    input_shape = tuple(layer.input.shape[1:])
    if kind == "Dense":
        return dense_macs(input_shape, layer.units)
    if kind == "Conv2D":
        output_shape = tuple(layer.output.shape[1:])
        return conv2d_macs(output_shape, layer.kernel_size, input_shape[-1])
    return conv2d_transpose_macs(input_shape, layer.kernel_size, layer.filters)


@dataclasses.dataclass(frozen=True)
class NetworkMacs:
    """Forward MACs per sample of a network, layer by layer ("Performance").

    ``first`` is the MACs of the first counted layer: its input is data (or
    noise), so no backward pass ever needs the gradient with respect to it.
    """

    name: str
    layers: tuple  # (layer name, layer class, MACs per sample), counted layers only

    @property
    def forward(self):
        """MACs of one forward pass of one sample."""
        return sum(macs for _, _, macs in self.layers)

    @property
    def first(self):
        """MACs of the first counted layer."""
        return self.layers[0][2]


def network_macs(model):
    """Count a built Sequential or functional model's forward MACs per sample."""
    if not model.built or not hasattr(model, "layers"):
        raise ValueError(
            "network_macs needs a built Keras model with layers; start it with "
            "keras.Input(shape)."
        )
    layers = tuple(
        (layer.name, counted_kind(layer), layer_macs(layer))
        for layer in model.layers
        if counted_kind(layer) is not None
    )
    if not layers:
        raise ValueError(f"{model.name} has no {', '.join(COUNTED_LAYERS)} layer.")
    return NetworkMacs(model.name, layers)


def gan_step_macs(generator, discriminator, batch_size):
    """MACs of one GAN step, by phase, from the networks' shapes ("Performance").

    The discriminator update runs G forward on ``batch_size`` noise vectors, D
    forward and backward on ``2 * batch_size`` images (real and fake): gradients
    for every D weight, input gradients for every D layer but the first. The
    generator update runs G and D forward, D backward to its input (no D weight
    gradients), and G backward: weight gradients, and input gradients for every
    G layer but the first.
    """
    positive_int("batch_size", batch_size)
    g, d, b = network_macs(generator), network_macs(discriminator), batch_size
    return {
        "D update: G forward": b * g.forward,
        "D update: D forward (real + fake)": 2 * b * d.forward,
        "D update: D weight gradients": 2 * b * d.forward,
        "D update: D input gradients": 2 * b * (d.forward - d.first),
        "G update: G forward": b * g.forward,
        "G update: D forward": b * d.forward,
        "G update: D input gradients": b * d.forward,
        "G update: G weight gradients": b * g.forward,
        "G update: G input gradients": b * (g.forward - g.first),
    }


def gan_step_flops(generator, discriminator, batch_size):
    """FLOPs of one GAN step: 2 per multiply-add of :func:`gan_step_macs`."""
    return 2 * sum(gan_step_macs(generator, discriminator, batch_size).values())


def elementwise_share(model, batch_size=1):
    """Element-wise FLOPs as a share of all FLOPs in a forward pass, per
    TensorFlow's profiler (chapter "Performance").

    Everything the profiler counts that is not a product op of ``PRODUCT_OPS``
    (bias additions, activations...) over everything it counts.
    """
    by_op = profiler_forward_flops(model, batch_size)
    total = sum(by_op.values())
    products = sum(by_op.get(op, 0) for op in PRODUCT_OPS)
    return (total - products) / total


def profiler_forward_flops(model, batch_size=1):
    """FLOPs of ``model``'s forward pass by op type, per TensorFlow's profiler.

    The reference for :func:`layer_macs` (chapter "Performance"): the model's
    inference graph for a fixed batch size, with variables frozen to constants,
    goes through ``tf.compat.v1.profiler`` with ``float_operation()`` options,
    which count each op with TensorFlow's own registered FLOP formulas.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    positive_int("batch_size", batch_size)
    spec = tf.TensorSpec((batch_size, *model.input_shape[1:]), tf.float32)
    forward = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(forward.get_concrete_function(spec))
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    logger = tf.get_logger()  # the profiler logs a deprecation notice of its own
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        root = tf.compat.v1.profiler.profile(graph.graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)
    by_op, stack = {}, list(root.children)
    while stack:  # the "op" view nests each op type under the previous one
        node = stack.pop()
        by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return by_op


def params_count(*models):
    """Trainable parameters of the models together (chapter "Performance")."""
    return int(
        sum(np.prod(w.shape) for m in models for w in m.trainable_weights)
    )

