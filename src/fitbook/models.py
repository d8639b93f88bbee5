"""Building block: the book's small networks, each built in one place.

``classifier()`` builds every Fashion-MNIST classifier of the book from one recipe
with options (chapters "What fit() does" to "Performance"); the GAN's generator and
discriminator serve the chapters "A GAN, two ways", "WGAN-GP" and "Performance".
A network that *is* one chapter's lesson (the VAE's encoder, the WGAN-GP critic)
stays in that chapter's module. The layers that compute some of the GAN's
convolutions another way (``ShiftAddConv2D``, ``MatmulBiasConv2DTranspose``,
``PhaseGradConv2D``, ``PhaseGradConv2DTranspose``; chapter "Performance") are
here because the GAN's builders take them (``conv=``).
"""

import itertools

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
class SplitConv2DTranspose(layers.Conv2DTranspose):
    """Keras' ``Conv2DTranspose``, its ``call`` split into two steps that a
    subclass can replace, as ``Conv2D.convolution_op`` is: the transposed
    convolution and the bias (chapter "Performance")."""

    def call(self, inputs):
        """``transposed_convolution``, then ``add_bias``, then the activation."""
        outputs = self.transposed_convolution(inputs, self.kernel)
        if self.use_bias:
            outputs = self.add_bias(outputs, keras.ops.cast(self.bias, outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def transposed_convolution(self, inputs, kernel):
        """Keras' own transposed convolution, without bias or activation."""
        return keras.ops.conv_transpose(
            inputs, kernel, strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)

    def add_bias(self, outputs, bias):
        """Keras' own bias: a broadcast add."""
        channels_last = self.data_format == "channels_last"
        shape = (1, 1, 1, self.filters) if channels_last else (1, self.filters, 1, 1)
        return keras.ops.add(outputs, keras.ops.reshape(bias, shape))


@keras.saving.register_keras_serializable(package="fitbook")
class MatmulBiasConv2DTranspose(SplitConv2DTranspose):
    """Conv2DTranspose whose bias gradient is a matrix product (``add_bias``);
    same arguments, weights, outputs and gradients (chapter "Performance")."""

    def add_bias(self, outputs, bias):
        """The module's ``add_bias`` (channels last; else Keras' own)."""
        if self.data_format != "channels_last":
            return super().add_bias(outputs, bias)
        return add_bias(outputs, bias)


def phase_taps(size, stride, before):
    """(phase, shift) of each of a kernel's ``size`` taps along one axis of a
    convolution with ``stride`` and ``before`` zeros of padding in front.

    Tap k of output o reads input position ``stride * o + k - before``: the
    position ``phase`` of the input's blocks of ``stride``, in block
    ``o + shift`` (chapter "Performance").
    """
    return [((k - before) % stride, (k - before) // stride) for k in range(size)]


def front_padding(size, stride, padding, length, out_length):
    """The zeros a ``Conv2D`` pads in front along one axis: none for
    ``"valid"``; for ``"same"``, half of what the windows need, rounded down."""
    if padding.lower() == "valid":
        return 0
    return max((out_length - 1) * stride + size - length, 0) // 2


def phase_kernel_gradient(inputs, upstream, size, stride, padding):
    """The kernel gradient of a ``Conv2D`` of ``inputs`` (stride ``stride`` in
    both axes, ``padding``), given the ``upstream`` gradient of its output, as
    one matmul per phase (chapter "Performance").

    ``space_to_depth`` turns the input's phases (positions within a block of
    stride x stride pixels) into channels; every tap reads one phase, at a
    block shifted by its offset (``phase_taps``). For each phase, the shifted
    blocks its taps read, side by side, times the upstream gradient give all
    of those taps' kernels in one product. Returns (kh, kw, channels, filters).
    """
    (kh, kw), channels = size, inputs.shape[-1]
    out = upstream.shape[1:3]
    taps = [phase_taps(k, stride, front_padding(k, stride, padding, n, m))
            for k, n, m in zip(size, inputs.shape[1:3], out)]
    lows, pads, reach = [], [], []
    for axis, n, m in zip(taps, inputs.shape[1:3], out):
        low, high = min(s for _, s in axis), max(s for _, s in axis)
        front = -low * stride  # zeros for the taps that read before block 0
        length = (m + high - low) * stride  # the pixels the taps reach
        lows.append(low)
        pads.append([front, max(length - n - front, 0)])
        reach.append(length)
    padded = tf.pad(inputs, [[0, 0], *pads, [0, 0]])[:, :reach[0], :reach[1]]
    phases = tf.nn.space_to_depth(padded, stride)  # (batch, blocks, blocks, ...)
    grads = tf.reshape(upstream, (-1, upstream.shape[-1]))

    def blocks(a, b, at):
        """What tap (a, b) reads: channels ``at`` of its phase, shifted."""
        top, left = taps[0][a][1] - lows[0], taps[1][b][1] - lows[1]
        return phases[:, top:top + out[0], left:left + out[1], at:at + channels]

    kernel = {}
    for phase in itertools.product(range(stride), repeat=2):
        reads = [(a, b) for a in range(kh) for b in range(kw)
                 if (taps[0][a][0], taps[1][b][0]) == phase]
        if not reads:  # a kernel smaller than the stride skips this phase
            continue
        at = (phase[0] * stride + phase[1]) * channels
        columns = tf.concat([blocks(a, b, at) for a, b in reads], -1)
        product = tf.matmul(tf.reshape(columns, (-1, len(reads) * channels)), grads,
                            transpose_a=True)
        for i, tap in enumerate(reads):
            kernel[tap] = product[i * channels:(i + 1) * channels]
    return tf.stack([tf.stack([kernel[a, b] for b in range(kw)]) for a in range(kh)])


def phase_conv2d(inputs, kernel, stride, padding):
    """``tf.nn.conv2d`` whose kernel gradient is ``phase_kernel_gradient``; the
    input gradient is TensorFlow's own."""
    kernel = tf.convert_to_tensor(kernel)  # a value: the gradient is for it

    @tf.custom_gradient
    def convolve(x, kernel):
        def gradients(upstream):
            dx = tf.nn.conv2d_transpose(upstream, kernel, tf.shape(x), stride, padding)
            return dx, phase_kernel_gradient(x, upstream, kernel.shape[:2], stride,
                                             padding)

        return tf.nn.conv2d(x, kernel, stride, padding), gradients

    return convolve(inputs, kernel)


def phase_conv2d_transpose(inputs, kernel, stride, padding):
    """``tf.nn.conv2d_transpose`` (kernel (kh, kw, filters, channels), as
    Keras') whose kernel gradient is ``phase_kernel_gradient`` with the roles
    swapped: a transposed convolution is the input gradient of a ``Conv2D``
    from its output back to its input, and shares that ``Conv2D``'s kernel
    gradient. The input gradient is TensorFlow's own, that ``Conv2D``."""
    kernel = tf.convert_to_tensor(kernel)  # a value: the gradient is for it
    (kh, kw), filters = kernel.shape[:2], kernel.shape[2]
    valid = padding.lower() == "valid"
    size = [(n - 1) * stride + k if valid else n * stride
            for n, k in zip(inputs.shape[1:3], (kh, kw))]

    @tf.custom_gradient
    def convolve(x, kernel):
        shape = tf.stack([tf.shape(x)[0], *size, filters])

        def gradients(upstream):
            dx = tf.nn.conv2d(upstream, kernel, stride, padding)
            return dx, phase_kernel_gradient(upstream, x, (kh, kw), stride, padding)

        return tf.nn.conv2d_transpose(x, kernel, shape, stride, padding), gradients

    return convolve(inputs, kernel)


def phased(layer, inputs):
    """Whether ``layer``'s convolution of ``inputs`` can take phase kernel
    gradients: one stride of 2 or more in both axes, no dilation, groups or
    output padding, channels last, known height and width."""
    strides = set(layer.strides)
    return (len(strides) == 1 and min(strides) >= 2
            and layer.dilation_rate == (1, 1) and getattr(layer, "groups", 1) == 1
            and getattr(layer, "output_padding", None) is None
            and layer.data_format == "channels_last"
            and None not in inputs.shape[1:3])


@keras.saving.register_keras_serializable(package="fitbook")
class PhaseGradConv2D(layers.Conv2D):
    """Conv2D whose kernel gradient is one matmul per phase (``phase_conv2d``);
    same arguments, weights, outputs and gradients (chapter "Performance").
    Strides of 1, dilation, groups or channels_first: Conv2D's own."""

    def convolution_op(self, inputs, kernel):
        """The convolution, without bias or activation."""
        if not phased(self, inputs):
            return super().convolution_op(inputs, kernel)
        return phase_conv2d(inputs, kernel, self.strides[0], self.padding.upper())


@keras.saving.register_keras_serializable(package="fitbook")
class PhaseGradConv2DTranspose(SplitConv2DTranspose):
    """Conv2DTranspose whose kernel gradient is one matmul per phase
    (``phase_conv2d_transpose``); same arguments, weights, outputs and
    gradients (chapter "Performance")."""

    def transposed_convolution(self, inputs, kernel):
        """The transposed convolution, without bias or activation."""
        if not phased(self, inputs):
            return super().transposed_convolution(inputs, kernel)
        return phase_conv2d_transpose(inputs, kernel, self.strides[0],
                                      self.padding.upper())


@keras.saving.register_keras_serializable(package="fitbook")
class PhaseGradMatmulBiasConv2DTranspose(PhaseGradConv2DTranspose,
                                         MatmulBiasConv2DTranspose):
    """Both: kernel gradient by phases, bias gradient as a matmul."""


LAST_CONVS = {"keras": layers.Conv2D, "shift_add": ShiftAddConv2D}  # generator's last
MATMUL_BIAS = "+matmul_bias"  # suffix: transposed convolutions' bias gradient
PHASE_GRADS = "+phase_grads"  # suffix: the 7x7 layers' kernel gradients by phases
# How the GAN's convolutions compute: the generator's last layer; the transposed
# convolutions' bias gradient (Keras' own kernel, or with MATMUL_BIAS a matmul);
# with PHASE_GRADS, the kernel gradients of the two layers on the 7x7 grid (the
# generator's first transposed convolution, the discriminator's second
# convolution) one matmul per phase.
CONVS = tuple(last + bias + phase for phase in ("", PHASE_GRADS)
              for bias in ("", MATMUL_BIAS) for last in LAST_CONVS)


def conv_parts(conv):
    """``(last, matmul_bias, phase_grads)`` of a ``conv`` setting in ``CONVS``."""
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")
    bias = conv.removesuffix(PHASE_GRADS)
    return (bias.removesuffix(MATMUL_BIAS), bias.endswith(MATMUL_BIAS),
            conv.endswith(PHASE_GRADS))


def transposed_conv_class(matmul_bias, phase_grads):
    """The generator's transposed convolution layer for these options."""
    return {(False, False): layers.Conv2DTranspose,
            (True, False): MatmulBiasConv2DTranspose,
            (False, True): PhaseGradConv2DTranspose,
            (True, True): PhaseGradMatmulBiasConv2DTranspose}[matmul_bias, phase_grads]


def build_generator(latent_dim=LATENT_DIM, conv="keras"):
    """Noise of shape (batch, latent_dim) to 28x28x1 images (chapter "A GAN").

    ``conv`` (one of ``CONVS``) computes the last layer: ``"keras"``, or
    ``"shift_add"`` for the same convolution as ``ShiftAddConv2D``; a
    ``"+matmul_bias"`` suffix makes the transposed convolutions'
    bias gradients matmuls, ``"+phase_grads"`` the first one's kernel gradient
    one matmul per phase (``transposed_conv_class``, "Performance").
    """
    last, matmul_bias, phase_grads = conv_parts(conv)
    transposed = transposed_conv_class(matmul_bias, False)
    first = transposed_conv_class(matmul_bias, phase_grads)
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(7 * 7 * 128),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, 128)),
            first(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            transposed(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            LAST_CONVS[last](1, 7, padding="same", activation="sigmoid"),
        ],
        name="generator",
    )


def discriminator_trunk(conv="keras"):
    """28x28x1 images to 7x7x128 features: the layers the discriminator and the
    WGAN-GP critic share (chapters "A GAN" and "WGAN-GP"). With a ``conv``
    setting ending in ``"+phase_grads"``, the second convolution's kernel
    gradient is one matmul per phase (``PhaseGradConv2D``, "Performance")."""
    second = PhaseGradConv2D if conv_parts(conv)[2] else layers.Conv2D
    return [
        keras.Input(shape=IMAGE_SHAPE),
        layers.Conv2D(64, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        second(128, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
    ]


def build_discriminator(conv="keras"):
    """28x28x1 images to one logit, "real" when positive (chapter "A GAN");
    ``conv`` as for ``discriminator_trunk``."""
    return keras.Sequential(
        [*discriminator_trunk(conv), layers.GlobalMaxPooling2D(), layers.Dense(1)],
        name="discriminator",
    )
