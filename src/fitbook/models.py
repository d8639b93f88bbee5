"""Building block: the book's small networks, each built in one place.

``classifier()`` builds every Fashion-MNIST classifier of the book from one recipe
with options (chapters "What fit() does" to "Performance"); the GAN's generator and
discriminator serve the chapters "A GAN, two ways", "WGAN-GP" and "Performance".
A network that *is* one chapter's lesson (the VAE's encoder, the WGAN-GP critic)
stays in that chapter's module.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from fitbook.checks import non_negative_number
from fitbook.data import IMAGE_SHAPE

LATENT_DIM = 128  # length of the GAN generator's noise vector


def classifier(model_class=None, *, conv=(), hidden=64, dropout=None, penalty=0.0,
               num_classes=10, probabilities=False, features=None, seed=None):
    """The book's small Fashion-MNIST classifiers, one recipe with options.

    [Conv2D(f, 3, relu) + MaxPooling2D for f in ``conv``] -> Flatten ->
    [Dense(``hidden``, relu)] -> [ActivityPenalty(``penalty``)] ->
    [Dropout(``dropout``)] -> Dense(``num_classes``): softmax probabilities, or
    logits. ``seed=None`` takes initial weights from the global seed (set_seed); an
    int seeds the hidden Dense with ``seed``, the output with ``seed + 1``, conv
    layer i with ``seed + 2 + i`` and Dropout with ``seed``, so two models built
    alike start alike. ``model_class=None`` gives a Sequential named "classifier";
    a Model subclass gives that functional model. ``features`` names the hidden
    Dense layer.
    """

    def init(offset):
        if seed is None:
            return "glorot_uniform"  # Keras' default: drawn from the global seed
        return keras.initializers.GlorotUniform(seed + offset)

    stack = []
    for i, filters in enumerate(conv):
        stack += [
            layers.Conv2D(
                filters, 3, activation="relu", kernel_initializer=init(2 + i)
            ),
            layers.MaxPooling2D(),
        ]
    stack.append(layers.Flatten())
    if hidden:
        stack.append(layers.Dense(hidden, activation="relu",
                                  kernel_initializer=init(0), name=features))
    if penalty:
        stack.append(ActivityPenalty(penalty))
    if dropout is not None:  # 0.0 keeps a Dropout(0.0) layer
        stack.append(layers.Dropout(dropout, seed=seed))
    activation = "softmax" if probabilities else None
    stack.append(layers.Dense(num_classes, activation=activation,
                              kernel_initializer=init(1)))
    if model_class is None:
        return keras.Sequential([keras.Input(IMAGE_SHAPE), *stack], name="classifier")
    inputs = keras.Input(shape=IMAGE_SHAPE)
    outputs = inputs
    for layer in stack:
        outputs = layer(outputs)
    return model_class(inputs, outputs)


def compile_classifier(model, *, logits=False, weighted=False, **options):
    """Compile with Adam(1e-3), sparse cross-entropy and accuracy; return ``model``.

    ``logits=True`` for a model without softmax; ``weighted=True`` also reports
    accuracy weighted by the sample weights; ``options`` go to ``compile()``.
    """
    if logits:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss = "sparse_categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss,
        metrics=["accuracy"],
        weighted_metrics=["accuracy"] if weighted else None,
        **options,
    )
    return model


@keras.saving.register_keras_serializable(package="fitbook")
class ActivityPenalty(keras.layers.Layer):
    """Identity layer adding ``rate * mean(|x|)`` to model.losses ("Training loops")."""

    def __init__(self, rate=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(non_negative_number("rate", rate))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def call(self, x):
        x32 = keras.ops.cast(x, "float32")  # a float32 loss, even under mixed_*16
        self.add_loss(self.rate * keras.ops.mean(keras.ops.abs(x32)))
        return x


@keras.saving.register_keras_serializable(package="fitbook")
class ShiftAddConv2D(layers.Conv2D):
    """Conv2D computed as one matmul and shifted adds (chapter "Performance").

    Same arguments and weights as ``Conv2D``. Each pixel's channels are
    multiplied by the kernel once, giving ``kh*kw*filters`` values per pixel
    (one per kernel tap); output pixel (i, j) adds, for each tap (a, b), the
    value that tap made at pixel (i + a, j + b), read from a zero-padded copy.
    A depthwise convolution with one-hot kernels does the reading (each tap's
    values moved by its offset, with ``Conv2D``'s own padding); a sum over the
    taps the adding. Strides, dilation, groups or channels_first: Conv2D's own.
    """

    def convolution_op(self, inputs, kernel):
        """The convolution of ``inputs`` with ``kernel``, without bias or
        activation (``Conv2D.call`` adds those)."""
        if (self.strides != (1, 1) or self.dilation_rate != (1, 1) or self.groups
                != 1 or self.data_format != "channels_last" or None in inputs.shape[1:3]
                or self.padding not in ("same", "valid")):
            return super().convolution_op(inputs, kernel)
        kh, kw, cin, filters = kernel.shape
        taps = keras.ops.reshape(keras.ops.transpose(kernel, (2, 0, 1, 3)),
                                 (cin, kh * kw * filters))
        return shift_add(inputs, taps, (kh, kw), self.padding)


def shift_add(inputs, taps, size, padding):
    """``ShiftAddConv2D``'s convolution: ``inputs`` times ``taps`` (channels by
    tap and filter), each tap's values moved by its offset, summed over taps.

    Its gradient is written out: the moves' gradient moves the output gradient
    back to every tap at once, one ``Conv2D`` with one-hot kernels
    (``gather_kernel``), instead of autodiff's copy per tap followed by the
    depthwise convolution's own gradient; the matmul's two gradients are
    autodiff's.
    """
    (kh, kw), filters = size, taps.shape[1] // (size[0] * size[1])
    shift = tf.constant(shift_kernel(kh, kw, filters), inputs.dtype)
    gather = tf.constant(gather_kernel(kh, kw, filters), inputs.dtype)
    back = [[0, 0], *(gradient_padding(k, padding) for k in size), [0, 0]]

    @tf.custom_gradient
    def convolve(x, taps):
        pixels = tf.reshape(x, (-1, x.shape[-1]))
        z = tf.reshape(tf.matmul(pixels, taps), (-1, *x.shape[1:3], taps.shape[1]))
        moved = tf.nn.depthwise_conv2d(z, shift, [1, 1, 1, 1], padding.upper())
        per_tap = tf.reshape(moved, (-1, *moved.shape[1:3], kh * kw, filters))

        def gradients(upstream):
            dz = tf.nn.conv2d(tf.pad(upstream, back), gather, 1, "VALID")
            dz_pixels = tf.reshape(dz, (-1, taps.shape[1]))
            dx = tf.matmul(dz_pixels, taps, transpose_b=True)
            dtaps = tf.matmul(pixels, dz_pixels, transpose_a=True)
            return tf.reshape(dx, tf.shape(x)), dtaps

        return tf.reduce_sum(per_tap, axis=3), gradients

    return convolve(inputs, taps)


def gradient_padding(size, padding):
    """[before, after]: the zeros around the output gradient along one axis in
    ``shift_add``'s gradient, ``size - 1`` less ``Conv2D``'s own zeros on that
    side (``"same"``: ``(size - 1) // 2`` before, the rest after), so that
    moving back reaches every tap."""
    before = (size - 1) // 2 if padding == "same" else 0
    after = size - 1 - before if padding == "same" else 0
    return [size - 1 - before, size - 1 - after]


def shift_kernel(kh, kw, filters):
    """The depthwise kernel (kh, kw, kh*kw*filters, 1) of ``ShiftAddConv2D``:
    channel (tap (a, b), filter f) is 1 at (a, b), 0 elsewhere, so a depthwise
    convolution moves each tap's values by its offset."""
    kernel = np.zeros((kh, kw, kh * kw * filters, 1), "float32")
    for a in range(kh):
        for b in range(kw):
            first = (a * kw + b) * filters
            kernel[a, b, first:first + filters, 0] = 1.0
    return kernel


def gather_kernel(kh, kw, filters):
    """The ``Conv2D`` kernel (kh, kw, filters, kh*kw*filters) of the moves'
    gradient in ``shift_add``: output channel (tap (a, b), filter f) reads
    input channel f at the opposite offset (``shift_kernel`` flipped)."""
    flipped = shift_kernel(kh, kw, filters)[::-1, ::-1, :, 0]  # (kh, kw, channels)
    same_filter = np.arange(kh * kw * filters) % filters == np.arange(filters)[:, None]
    return flipped[:, :, None, :] * same_filter


@tf.custom_gradient
def add_bias(x, bias):
    """``tf.nn.bias_add(x, bias)`` whose bias gradient is a matrix product: a
    row of ones times the output gradient as a (pixels, channels) matrix, the
    same column sums as TensorFlow's ``BiasAddGrad`` kernel (chapter
    "Performance")."""

    def gradients(upstream):
        columns = tf.reshape(upstream, (-1, upstream.shape[-1]))
        ones = tf.ones((1, tf.shape(columns)[0]), upstream.dtype)
        return upstream, tf.reshape(tf.matmul(ones, columns), tf.shape(bias))

    return tf.nn.bias_add(x, bias), gradients


@keras.saving.register_keras_serializable(package="fitbook")
class MatmulBiasConv2DTranspose(layers.Conv2DTranspose):
    """Conv2DTranspose whose bias gradient is a matrix product (``add_bias``);
    same arguments, weights, outputs and gradients (chapter "Performance")."""

    def call(self, inputs):
        """Keras' own transposed convolution, then ``add_bias``."""
        if not self.use_bias or self.data_format != "channels_last":
            return super().call(inputs)
        outputs = keras.ops.conv_transpose(
            inputs, self.kernel, strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)
        outputs = add_bias(outputs, keras.ops.cast(self.bias, outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)


LAST_CONVS = {"keras": layers.Conv2D, "shift_add": ShiftAddConv2D}  # generator's last
MATMUL_BIAS = "+matmul_bias"  # suffix: transposed convolutions' bias gradient
# How the generator's convolutions compute: the last layer, and the transposed
# convolutions' bias gradient (Keras' own kernel, or with MATMUL_BIAS a matmul).
CONVS = (*LAST_CONVS, *(name + MATMUL_BIAS for name in LAST_CONVS))


def build_generator(latent_dim=LATENT_DIM, conv="keras"):
    """Noise of shape (batch, latent_dim) to 28x28x1 images (chapter "A GAN").

    ``conv`` computes the last layer: ``"keras"``, or ``"shift_add"`` for the
    same convolution as ``ShiftAddConv2D``; a ``"+matmul_bias"`` suffix makes
    the transposed convolutions ``MatmulBiasConv2DTranspose`` ("Performance").
    """
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")
    last = LAST_CONVS[conv.removesuffix(MATMUL_BIAS)]
    transposed = (MatmulBiasConv2DTranspose if conv.endswith(MATMUL_BIAS)
                  else layers.Conv2DTranspose)
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(7 * 7 * 128),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, 128)),
            transposed(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            transposed(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            last(1, 7, padding="same", activation="sigmoid"),
        ],
        name="generator",
    )


def discriminator_trunk():
    """28x28x1 images to 7x7x128 features: the layers the discriminator and the
    WGAN-GP critic share (chapters "A GAN" and "WGAN-GP")."""
    return [
        keras.Input(shape=IMAGE_SHAPE),
        layers.Conv2D(64, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
    ]


def build_discriminator():
    """28x28x1 images to one logit, "real" when positive (chapter "A GAN")."""
    return keras.Sequential(
        [*discriminator_trunk(), layers.GlobalMaxPooling2D(), layers.Dense(1)],
        name="discriminator",
    )
