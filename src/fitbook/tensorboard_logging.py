"""TensorBoard summaries from a custom ``train_step`` and from a from-scratch loop
(chapter "TensorBoard from custom steps and loops").

``tf.summary.scalar``, ``histogram`` and ``image`` are implemented by the
``tensorboard`` package; without it they raise ``TBNotInstalledError``. The three
functions here use them when it is installed, and otherwise write the same
records (same tensors, same plugin names) with TensorFlow's own
``tf.summary.write``, so TensorBoard shows either the same way.
:func:`read_events` reads event files back.
"""

import glob
import os
import types

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import ops

from fitbook.gan import GAN, gan_train_step
from fitbook.gan_loop import GanTrainer

try:  # tf.summary's own functions, when TensorBoard is installed
    import tensorboard  # noqa: F401

    HAVE_TENSORBOARD = True
except ImportError:
    HAVE_TENSORBOARD = False


def _metadata(plugin_name):
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    return metadata


def scalar(name, data, step=None):
    """``tf.summary.scalar``: one number, plugin "scalars"."""
    if HAVE_TENSORBOARD:
        return tf.summary.scalar(name, data, step=step)
    data = tf.cast(data, "float32")
    return tf.summary.write(name, data, step=step, metadata=_metadata("scalars"))


def histogram(name, data, step=None, buckets=30):
    """``tf.summary.histogram``: ``buckets`` equal bins as (left, right, count)
    rows, plugin "histograms"."""
    if HAVE_TENSORBOARD:
        return tf.summary.histogram(name, data, step=step, buckets=buckets)
    values = tf.reshape(tf.cast(data, "float64"), [-1])
    low, high = tf.reduce_min(values), tf.reduce_max(values)
    high = tf.maximum(high, low + 1e-12)  # all values equal: one narrow range
    counts = tf.histogram_fixed_width(values, [low, high], nbins=buckets)
    edges = tf.linspace(low, high, buckets + 1)
    table = tf.stack([edges[:-1], edges[1:], tf.cast(counts, "float64")], axis=1)
    return tf.summary.write(name, table, step=step, metadata=_metadata("histograms"))


def image(name, data, step=None, max_outputs=3):
    """``tf.summary.image``: images in [0, 1], as PNGs, plugin "images"."""
    if HAVE_TENSORBOARD:
        return tf.summary.image(name, data, step=step, max_outputs=max_outputs)
    pixels = tf.image.convert_image_dtype(data[:max_outputs], "uint8", saturate=True)
    pngs = tf.map_fn(tf.image.encode_png, pixels, fn_output_signature=tf.string)
    size = tf.strings.as_string(tf.shape(data)[2:0:-1])  # width, then height
    tensor = tf.concat([size, pngs], axis=0)
    return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def summary_module():
    """``tf.summary`` with these three functions, for ``keras.callbacks.TensorBoard``
    when TensorBoard itself is not installed."""
    names = {name: getattr(tf.summary, name) for name in dir(tf.summary)
             if not name.startswith("_")}
    names.update(scalar=scalar, histogram=histogram, image=image)
    return types.SimpleNamespace(**names)


def tile(images, columns):
    """A batch of images as one grid image of ``columns`` columns: shape
    (1, rows * height, columns * width, channels)."""
    n, height, width, channels = images.shape
    rows = n // columns
    shape = (rows, columns, height, width, channels)
    grid = ops.reshape(images[: rows * columns], shape)
    grid = ops.transpose(grid, (0, 2, 1, 3, 4))  # rows, height, columns, width
    return ops.reshape(grid, (1, rows * height, columns * width, channels))


def log_gan(parts, d_loss, g_loss, step=None, grid_every=5):
    """Write the GAN's summaries to the default writer: both losses, a histogram of
    the discriminator's last kernel and, every ``grid_every`` steps, a grid of
    images from fixed noise. ``step=None`` uses the default step."""
    scalar("loss/discriminator", d_loss, step=step)
    scalar("loss/generator", g_loss, step=step)
    kernel = parts.discriminator.layers[-1].kernel
    histogram("discriminator/last_kernel", kernel, step=step)
    now = tf.summary.experimental.get_step() if step is None else step
    with tf.summary.record_if(tf.equal(now % grid_every, 0)):
        images = parts.generator(parts.z_grid, training=False)
        image("generated", tile(images, columns=4), step=step)


class SummaryGAN(GAN):
    """The GAN of chapter "A GAN", writing TensorBoard summaries in its
    ``train_step`` (chapter "TensorBoard from custom steps and loops").

    With ``writer``, it numbers them by ``d_optimizer.iterations``; without, it
    writes to the caller's default writer at the caller's default step.
    """

    def __init__(
        self, generator, discriminator, z_grid, writer=None, grid_every=5, **kwargs
    ):
        super().__init__(generator, discriminator, **kwargs)
        self.z_grid = z_grid  # fixed noise: the grids show the same images grow
        self.writer, self.grid_every = writer, grid_every

    def train_step(self, data):
        """``GAN.train_step``, then summaries of the step."""
        # Unpack, forward, gradients, apply, metrics: the GAN chapter's step.
        d_loss, g_loss = gan_train_step(self, data)
        # Log: at the optimizer's step with our writer; else the caller's default.
        if self.writer is None:  # the caller's writer and default step: a pitfall
            log_gan(self, d_loss, g_loss, grid_every=self.grid_every)
        else:
            with self.writer.as_default():
                step = self.d_optimizer.iterations  # 1 after the first update
                log_gan(self, d_loss, g_loss, step, self.grid_every)
        # Return the running means.
        return {m.name: m.result() for m in self.metrics}


class SummaryGanTrainer(GanTrainer):
    """The from-scratch GAN loop's trainer, writing the same summaries as
    ``SummaryGAN`` (chapter "TensorBoard from custom steps and loops")."""

    def __init__(self, *args, z_grid, writer, grid_every=5, **kwargs):
        self.z_grid, self.writer, self.grid_every = z_grid, writer, grid_every
        super().__init__(*args, **kwargs)

    def step(self, x):
        """One GAN step, then its summaries, numbered by the optimizer's step."""
        d_loss, g_loss = gan_train_step(self, x)
        with self.writer.as_default():
            step = self.d_optimizer.iterations  # checkpointed: resumes continue it
            log_gan(self, d_loss, g_loss, step, self.grid_every)
        return d_loss, g_loss


def decode(event_value):
    """One summary value read back: a float, a (left, right, count) array or a
    list of images as uint8 arrays, by its plugin."""
    plugin = event_value.metadata.plugin_data.plugin_name
    array = tf.make_ndarray(event_value.tensor)
    if plugin == "images":
        return [tf.io.decode_png(png).numpy() for png in array[2:]]
    if plugin == "histograms":
        return np.asarray(array, dtype="float64")
    return float(array)


def read_events(logdir):
    """Every summary under ``logdir``, read back from its event files: a dict
    ``{tag: [(step, value), ...]}`` in the order written (chapter "TensorBoard
    from custom steps and loops")."""
    paths = sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                             recursive=True))
    if not paths:
        raise FileNotFoundError(f"no event files under {logdir}")
    events = {}
    for path in paths:
        for record in tf.data.TFRecordDataset(path):  # one Event protocol buffer
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                events.setdefault(value.tag, []).append((event.step, decode(value)))
    return events


def steps_of(events, tag):
    """The steps at which ``tag`` was written."""
    return [step for step, _ in events.get(tag, [])]


def plot_scalars(events, tags, title, ax=None):
    """Plot the scalar ``tags`` against their logged steps, as TensorBoard's
    Scalars tab would draw them; return the figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for tag in tags:
        steps, values = zip(*events[tag])
        ax.plot(steps, values, marker=".", label=tag)
    ax.set_xlabel("step (as logged)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return ax.figure


def tensorboard_callback(log_dir, **kwargs):
    """``keras.callbacks.TensorBoard``, writing through ``summary_module()`` when
    TensorBoard is not installed."""
    callback = keras.callbacks.TensorBoard(log_dir, **kwargs)
    if not HAVE_TENSORBOARD:
        callback._summary_module = summary_module()  # the lazily set tf.summary
    return callback
