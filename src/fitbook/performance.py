"""Measure training throughput: the contenders (chapter "Performance").

Every row of the chapter's table and of ``benchmarks/performance_table.py`` is
timed by :func:`fitbook.timing.time_runs`. This module supplies what it times,
and what the chapter compares the results with:

- contenders: the same classifier trained by ``fit()`` (with and without
  ``steps_per_execution``), by a custom ``train_step``, by the from-scratch
  ``Trainer`` in each mode, and by ``fit()`` fed from ``tf.data`` pipelines;
  the classifier across precision x XLA
  (x ``steps_per_execution``), the grid :mod:`fitbook.tuning` chooses from;
- the float32 vs ``mixed_bfloat16`` study runs, compared within their
  seed-to-seed spread;
- the PNG pipelines the ``tf.data`` rows read;
- the GAN's layers one by one (:func:`gan_layer_profile`), with the
  generator's last convolution computed both ways, and a bias gradient both
  ways, timed (:func:`bias_gradient_times`) and checked against exact sums
  (:func:`bias_gradient_errors`); the strided convolutions' kernel gradients
  by TensorFlow's kernels and by phases (:func:`kernel_gradient_times`).

The machine and its peak are in :mod:`fitbook.performance_machine`; the tables
in :mod:`fitbook.timing`.
"""

import contextlib
import functools
import math
import statistics

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from fitbook.checks import positive_int
from fitbook.gan import FIXED_RECIPE
from fitbook.loops import Trainer, trainer_run
from fitbook.models import (
    LATENT_DIM,
    add_bias,
    build_discriminator,
    build_generator,
    classifier,
    compile_classifier,
    phase_conv2d,
    phase_conv2d_transpose,
)
from fitbook.timing import dataset_run, fit_run, time_runs
from fitbook.train_step import CustomTrainStepModel
from fitbook.tuning import PLAIN, dtype_policy, grid  # noqa: F401 (re-exported)

# ---------------------------------------------------------------- contenders


def _compiled(hidden, model_class=keras.Model, **compile_options):
    """The chapter's classifier (``models.classifier``, seed 0, softmax), compiled
    by ``models.compile_classifier`` with ``compile_options`` ("Performance")."""
    model = classifier(model_class, hidden=hidden, seed=0, probabilities=True)
    return compile_classifier(model, **compile_options)


def classifier_runs(x, y, batch_size, hidden=128):
    """Name -> run for every way of training the classifier, one epoch each.

    The same architecture, data, batch size, optimizer and loss in every row:
    only the machinery around the step changes (chapter "Performance").
    """
    runs = {
        "fit()": fit_run(_compiled(hidden, jit_compile=False),
                         x, y, batch_size),
    }
    for k in (8, 32):
        model = _compiled(hidden, jit_compile=False, steps_per_execution=k)
        runs[f"fit(), steps_per_execution={k}"] = fit_run(model, x, y, batch_size)
    model = _compiled(hidden, jit_compile=True)
    runs["fit(), jit_compile=True"] = fit_run(model, x, y, batch_size)
    model = _compiled(hidden, CustomTrainStepModel, jit_compile=False)
    runs["custom train_step, fit()"] = fit_run(model, x, y, batch_size)
    loss = keras.losses.SparseCategoricalCrossentropy()
    for mode, label in (("eager", "eager"), ("function", "tf.function"),
                        ("jit", "tf.function(jit_compile=True)")):
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        trainer = Trainer(
            classifier(keras.Model, hidden=hidden, seed=0, probabilities=True),
            keras.optimizers.Adam(1e-3), loss,
            [accuracy], mode=mode,
        )
        runs[f"from-scratch loop, {label}"] = trainer_run(trainer, x, y, batch_size)
    return runs


def dropout_runs(x, y, batch_size, rates=(0.0, 0.2), hidden=128):
    """Name -> run: the from-scratch loop under ``tf.function`` and under XLA, for
    each Dropout rate of ``rates`` (chapter "Performance").

    The model is chapter "Training loops"'s classifier; only the Dropout rate and
    the compilation change, so the rows isolate what random masks cost under XLA.
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    runs = {}
    for rate in rates:
        for mode in ("function", "jit"):
            trainer = Trainer(
                classifier(hidden=hidden, dropout=rate, seed=0),
                keras.optimizers.Adam(1e-3),
                loss,
                [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                mode=mode,
            )
            runs[f"Dropout({rate}), {mode}"] = trainer_run(trainer, x, y, batch_size)
    return runs


def to_uint8(images):
    """Float images in [0, 1] back to the uint8 pixels they were stored as."""
    images = np.asarray(images)
    if images.size == 0 or images.min() < 0 or images.max() > 1:
        raise ValueError("to_uint8 expects a non-empty array of values in [0, 1].")
    return np.round(images * 255).astype("uint8")


def encode_png(images):
    """Encode uint8 images (n, height, width, channels) as PNG byte strings.

    They stand for image files on disk: a pipeline must decode every one.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"encode_png expects uint8 images shaped (n, height, width, channels), "
            f"got {images.dtype} {images.shape}; see to_uint8()."
        )
    encoded = tf.data.Dataset.from_tensor_slices(images).map(tf.io.encode_png)
    return np.array(list(encoded.as_numpy_iterator()), dtype=object)


def decode(png, label):
    """PNG bytes to a float32 image in [0, 1] (the pipeline's costly map)."""
    image = tf.io.decode_png(png, channels=1)
    return tf.cast(image, tf.float32) / 255.0, label


def augment(index, batch, seed=0):
    """Mirror a random half of the batch's images, left to right.

    One vectorised op per batch rather than one per image. The randomness is a
    pure function of ``(seed, index)``, ``index`` counting batches across
    epochs: the same images, whatever the pipeline's caching and prefetching.
    """
    images, labels = batch
    op_seed = tf.stack([tf.cast(seed, tf.int64), index])
    return tf.image.stateless_random_flip_left_right(images, op_seed), labels


def image_pipeline(png, labels, batch_size, cache=False, prefetch=False, seed=0):
    """Batches of augmented images from PNG bytes, repeated forever.

    decode -> [cache] -> repeat -> batch -> augment -> [prefetch]: the cache
    keeps decoded images, never augmented ones, so every epoch is augmented
    anew (chapter "Performance").
    """
    if len(png) != len(labels) or len(png) == 0:
        raise ValueError(
            f"png and labels must hold the same, non-zero number of examples; "
            f"got {len(png)} and {len(labels)}."
        )
    positive_int("batch_size", batch_size)
    ds = tf.data.Dataset.from_tensor_slices((png, labels)).map(decode)
    if cache:
        ds = ds.cache()  # in memory, filled by the first full pass
    ds = ds.repeat().batch(batch_size, drop_remainder=True).enumerate()
    ds = ds.map(functools.partial(augment, seed=seed))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)  # prepare batches while training
    return ds


PIPELINES = {  # row name -> options of image_pipeline
    "tf.data: decode + augment": {},
    "tf.data: + cache()": {"cache": True},
    "tf.data: + prefetch()": {"prefetch": True},
    "tf.data: + cache() + prefetch()": {"cache": True, "prefetch": True},
}


def pipeline_runs(png, labels, batch_size, steps, hidden=128):
    """Name -> run: ``steps`` fit() steps fed by each pipeline of PIPELINES.

    A run must read more than one pass over the images, so that the first run
    completes the cache (a partly read cache is thrown away, with a warning).
    """
    if steps * batch_size <= len(png):
        raise ValueError(
            f"steps * batch_size ({steps * batch_size}) must exceed the number of "
            f"images ({len(png)}) so one run fills the cache; use fewer images."
        )
    runs = {}
    for name, options in PIPELINES.items():
        model = _compiled(hidden, jit_compile=False)
        dataset = image_pipeline(png, labels, batch_size, **options)
        runs[name] = dataset_run(model, dataset, steps)
    return runs


def classifier_grid_runs(x, y, batch_size, configs=None, hidden=128):
    """Name -> run: one ``fit()`` epoch of the classifier for each
    ``tuning.Config`` (default: precision x XLA x steps_per_execution 1, 8),
    named ``fit(), <config>`` (chapter "Performance")."""
    configs = grid(steps_per_execution=(1, 8)) if configs is None else configs
    runs = {}
    for config in configs:
        with dtype_policy(config.precision):
            model = _compiled(hidden, jit_compile=config.jit_compile,
                              steps_per_execution=config.steps_per_execution)
        runs[f"fit(), {config.name}"] = fit_run(model, x, y, batch_size)
    return runs


# ------------------------------------------------- is bfloat16 sound?


def study_scores(runs, recipe="fixed", score_names=("frechet", "coverage")):
    """precision -> seed -> final scores, from ``runs.read_runs`` of a
    ``gan_study`` directory (runs named ``<recipe>-<precision>-seed<k>``)."""
    table = {}
    for name, run in runs.items():
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != recipe or not parts[2].startswith("seed"):
            continue
        last = {k: float(run["scores"][k][-1]) for k in score_names}
        table.setdefault(parts[1], {})[int(parts[2].removeprefix("seed"))] = last
    return table


def compare_precisions(scores, score, reference="float32", other="mixed_bfloat16"):
    """Is ``other``'s mean ``score`` within the seed-to-seed spread?

    ``scores`` is :func:`study_scores`' table. The spread is the larger range
    (max - min over seeds) of the two precisions; the verdict is ``None`` when
    either has fewer than two seeds (no spread to compare with).
    """
    values = {p: [s[score] for s in scores.get(p, {}).values()]
              for p in (reference, other)}
    means = {p: statistics.fmean(v) if v else math.nan for p, v in values.items()}
    spreads = [max(v) - min(v) for v in values.values() if len(v) >= 2]
    enough = all(len(v) >= 2 for v in values.values())
    spread = max(spreads) if spreads else math.nan
    difference = means[other] - means[reference]
    within = abs(difference) <= spread if enough else None
    return {"means": means, "seeds": {p: len(v) for p, v in values.items()},
            "difference": difference, "spread": spread, "within": within}


def ratio_figure(panels):
    """Horizontal bar charts, one panel per ``title -> {name: ratio}``, with a
    dashed line at 1 (the plain configuration); returns the Figure."""
    if not panels or not all(panels.values()):
        raise ValueError("panels must map titles to non-empty {name: ratio} dicts.")
    heights = [0.45 * len(ratios) + 1.0 for ratios in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, ratios) in zip(axes[:, 0], panels.items()):
        names = list(ratios)[::-1]  # the first name on top
        ax.barh(names, [ratios[n] for n in names], color="tab:blue")
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("speed over the plain configuration (x)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- layer by layer


def layer_run(layer, x, steps):
    """A run of ``steps`` forward and backward passes of one layer on ``x``:
    the gradients of sum(output^2) for its input and its weights."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x, training=True), "float32")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, *layer.trainable_weights])

    def run():
        for _ in range(steps):
            grads = step(x)
        return grads

    return run


def gan_layer_runs(policy, steps, batch_size=FIXED_RECIPE.batch_size):
    """``{"G1 Dense": run, ...}``: a :func:`layer_run` for every layer of the
    generator (on ``batch_size`` noise vectors) and of the discriminator (on
    twice as many images, real and fake, as in its update), built under
    ``policy``; plus the generator's last layer as ``ShiftAddConv2D`` with
    the same weights, on the same input. Also each layer's output shape."""
    with dtype_policy(policy):
        g, shifted = build_generator(), build_generator(conv="shift_add")
        d = build_discriminator()
    shifted.set_weights(g.get_weights())
    rng = np.random.default_rng(0)
    inputs = {"G": rng.normal(size=(batch_size, LATENT_DIM)),
              "D": rng.uniform(size=(2 * batch_size, 28, 28, 1))}
    runs, shapes = {}, {}
    for key, network in (("G", g), ("D", d)):
        x = tf.constant(inputs[key], "float32")
        for name, layer in named_layers(key, network):
            x = tf.cast(x, layer.compute_dtype)
            runs[name] = layer_run(layer, x, steps)
            if layer is g.layers[-1]:
                last = shifted.layers[-1]
                runs[layer_name(key, len(g.layers), last)] = layer_run(last, x, steps)
            x = layer(x, training=True)
            shapes[name] = tuple(x.shape[1:])
    return runs, shapes


def named_layers(key, network):
    """``[(name, layer)]`` for ``network``'s layers, named by
    :func:`layer_name`."""
    return [(layer_name(key, i, layer), layer)
            for i, layer in enumerate(network.layers, start=1)]


def layer_name(key, number, layer):
    """``"G4 Conv2DTranspose"``: the network's letter, the layer's number
    from 1 and its class, as the chapter's layer profile names layers."""
    return f"{key}{number} {type(layer).__name__}"


def gan_layer_profile(policies=("float32", "mixed_bfloat16"), steps=3, rounds=3):
    """``{policy: {layer: seconds per forward+backward pass}}`` for
    :func:`gan_layer_runs`, every layer of every policy timed in alternating
    rounds by ``time_runs`` (the best round counts); and the output shapes."""
    runs, shapes = {}, {}
    for policy in policies:
        policy_runs, shapes = gan_layer_runs(policy, steps)
        runs.update({(policy, name): run for name, run in policy_runs.items()})
    with retracing_expected():  # one tf.function per layer
        measured = time_runs(runs, steps, rounds)
    profile = {policy: {} for policy in policies}
    for (policy, name), m in measured.items():
        profile[policy][name] = 1 / m.steps_per_second
    return profile, shapes


def bias_gradient_runs(shape, steps, dtypes=("float32", "bfloat16")):
    """``{(dtype, way): run}``: ``steps`` bias gradients of one output gradient
    of ``shape`` (a random one) in each dtype, by TensorFlow's ``BiasAddGrad``
    (the gradient of ``tf.nn.bias_add``) and by a matmul (``add_bias``)."""
    upstream = bias_upstream(shape)
    runs = {}
    for dtype in dtypes:
        grad = tf.cast(upstream, dtype)
        for way, add in (("BiasAddGrad", tf.nn.bias_add), ("matmul", add_bias)):
            bias = tf.zeros(shape[-1], dtype)
            runs[dtype, way] = _gradient_run(add, tf.zeros_like(grad), bias, grad,
                                             steps)
    return runs


def bias_upstream(shape):
    """The output gradient :func:`bias_gradient_runs` sums: a fixed random
    float32 tensor of ``shape``."""
    return tf.random.stateless_normal(shape, (0, 0))


def _gradient_run(forward, x, weight, upstream, steps):
    """A run: ``steps`` gradients of ``forward(x, weight)`` for ``weight``,
    given the ``upstream`` gradient of its output; returns the last one."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(weight)
            y = forward(x, weight)
        return tape.gradient(y, weight, output_gradients=upstream)

    def run():
        for _ in range(steps):
            grad = step()
        return grad

    return run


def bias_gradient_times(shape, steps=5, rounds=3):
    """``{dtype: {way: seconds per bias gradient}}`` for
    :func:`bias_gradient_runs`, all timed in alternating rounds."""
    return seconds_by_way(time_runs(bias_gradient_runs(shape, steps), steps, rounds))


def seconds_by_way(measured):
    """``{what: {way: seconds per step}}`` from ``time_runs``' results for
    runs named ``(what, way)``."""
    times = {}
    for (what, way), m in measured.items():
        times.setdefault(what, {})[way] = 1 / m.steps_per_second
    return times


def bias_gradient_errors(shape, dtype="bfloat16"):
    """``{way: relative error}`` of :func:`bias_gradient_runs`' two bias
    gradients in ``dtype``: each one's distance from the exact column sums of
    the same output gradient (its ``dtype`` values summed in float64), over the
    norm of those sums. Rounding the sums to bfloat16 alone costs up to 0.4 %."""
    runs = bias_gradient_runs(shape, steps=1, dtypes=(dtype,))
    upstream = tf.cast(bias_upstream(shape), dtype)  # the values both ways sum
    columns = np.asarray(tf.cast(upstream, "float64")).reshape(-1, shape[-1])
    exact = columns.sum(axis=0)
    errors = {}
    for (_, way), run in runs.items():
        got = np.asarray(tf.cast(run(), "float64"))
        errors[way] = float(np.linalg.norm(got - exact) / np.linalg.norm(exact))
    return errors


def strided_layers(batch_size=FIXED_RECIPE.batch_size):
    """``{"G4 Conv2DTranspose": (layer, input shape), ...}``: the GAN's
    convolutions with strides (:func:`named_layers`), each with the shape of
    its input in a training step (the discriminator's: real and fake images,
    twice ``batch_size``)."""
    layers = {}
    for key, network, batch in (("G", build_generator(), batch_size),
                                ("D", build_discriminator(), 2 * batch_size)):
        for name, layer in named_layers(key, network):
            if getattr(layer, "strides", (1, 1)) != (1, 1):
                layers[name] = (layer, (batch, *layer.input.shape[1:]))
    return layers


def kernel_gradient_runs(steps, dtype="bfloat16"):
    """``{(layer, way): run}``: ``steps`` kernel gradients of each of the GAN's
    strided convolutions (:func:`strided_layers`) in ``dtype``, of random
    inputs and output gradients: by TensorFlow's own gradient, and by phases
    (``phase_conv2d``, ``phase_conv2d_transpose``)."""
    runs = {}
    for name, (layer, shape) in strided_layers().items():
        out = tuple(layer.compute_output_shape(shape))
        x = tf.cast(tf.random.stateless_normal(shape, (0, 1)), dtype)
        kernel = tf.random.stateless_normal(layer.kernel.shape, (0, 2))
        kernel = tf.cast(0.1 * kernel, dtype)
        upstream = tf.cast(tf.random.stateless_normal(out, (0, 3)), dtype)
        for way, convolve in _convolutions(layer, out).items():
            runs[name, way] = _gradient_run(convolve, x, kernel, upstream, steps)
    return runs


def _convolutions(layer, out):
    """``layer``'s convolution, without bias, both ways: ``{way: f(x, kernel)}``."""
    stride, padding = layer.strides[0], layer.padding.upper()
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return {"TensorFlow": lambda x, k: tf.nn.conv2d_transpose(x, k, out, stride,
                                                                  padding),
                "phases": lambda x, k: phase_conv2d_transpose(x, k, stride, padding)}
    return {"TensorFlow": lambda x, k: tf.nn.conv2d(x, k, stride, padding),
            "phases": lambda x, k: phase_conv2d(x, k, stride, padding)}


def kernel_gradient_times(steps=5, rounds=3, dtype="bfloat16"):
    """``{layer: {way: seconds per kernel gradient}}`` for
    :func:`kernel_gradient_runs`, all timed in alternating rounds."""
    with retracing_expected():  # one tf.function per layer and way
        measured = time_runs(kernel_gradient_runs(steps, dtype), steps, rounds)
    return seconds_by_way(measured)


@contextlib.contextmanager
def retracing_expected():
    """Inside the block, TensorFlow's logger shows errors only: many small
    traced functions, each traced once, make it warn about retracing."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def layer_profile_figure(profile):
    """Horizontal bars of each layer's milliseconds per forward+backward pass,
    one panel per precision of ``profile`` (:func:`gan_layer_profile`)."""
    fig, axes = plt.subplots(1, len(profile), figsize=(10, 4.5), sharey=True,
                             squeeze=False)
    for ax, (policy, seconds) in zip(axes[0], profile.items()):
        names = list(seconds)[::-1]  # the generator's first layer on top
        colors = ["tab:orange" if "ShiftAdd" in n else "tab:blue" for n in names]
        ax.barh(names, [1000 * seconds[n] for n in names], color=colors)
        ax.set_title(policy)
        ax.set_xlabel("milliseconds per forward + backward pass")
    axes[0, 0].set_ylabel("layer (G: generator, batch 64; D: discriminator, 128)")
    fig.suptitle("The GAN's layers one by one; orange: the last convolution as "
                 "matmul + shifted adds")
    fig.tight_layout()
    return fig
