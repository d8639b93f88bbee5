"""Building block: the Keras callbacks the chapters share.

``LearningRateRecorder`` (chapter "Training loops from scratch"), ``LossHistory``,
``ImageGridCallback`` and ``RunLogger`` (chapters "A GAN on train_step",
"Judging and fixing a GAN" and "WGAN-GP").
"""

import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
from keras import ops

from fitbook.plots import plot_image_grid
from fitbook.runs import LOSS_COLUMNS, read_run, score_columns, write_csv


class LearningRateRecorder(keras.callbacks.Callback):
    """Record the learning rate each batch is trained with ("Training loops")."""

    def __init__(self, optimizer):
        super().__init__()
        self.optimizer = optimizer
        self.learning_rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.learning_rates.append(float(self.optimizer.learning_rate))


class LossHistory(keras.callbacks.Callback):
    """Record each step's value of every metric in ``names`` from fit's running
    means (chapters "A GAN" and "WGAN-GP")."""

    def __init__(self, names=("d_loss", "g_loss")):
        super().__init__()
        self.names = tuple(names)
        self.steps = []
        self.values = {name: [] for name in self.names}  # name -> one value a step
        self._previous = {}  # running mean after the previous batch, per name

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = dict.fromkeys(self.names, 0.0)  # fit resets the means

    def on_train_batch_end(self, batch, logs=None):
        # The mean after k steps is m_k, so step k's value is k*m_k - (k-1)*m_{k-1}.
        k = batch + 1
        for name in self.names:
            mean = float(logs[name])
            self.values[name].append(k * mean - (k - 1) * self._previous[name])
            self._previous[name] = mean
        self.steps.append(len(self.steps) + 1)


class ImageGridCallback(keras.callbacks.Callback):
    """Every ``every`` epochs, generate images from fixed noise and keep them."""

    def __init__(self, z, every=1, directory=None, steps_per_epoch=None):
        super().__init__()
        self.z, self.every = z, every
        self.directory = Path(directory) if directory else None
        self.steps_per_epoch = steps_per_epoch  # if given, label grids by step
        self.grids = []  # (epoch or step, images) pairs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        images = ops.convert_to_numpy(self.model.generator(self.z, training=False))
        when = (epoch + 1) * (self.steps_per_epoch or 1)
        self.grids.append((when, images))
        if self.directory:
            unit = "step" if self.steps_per_epoch else "epoch"
            fig = plot_image_grid(images, title=f"Generated after {unit} {when}")
            self.directory.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.directory / f"grid_{unit}_{when:06d}.png")
            plt.close(fig)


class RunLogger(keras.callbacks.Callback):
    """Each epoch: append losses and quality scores to CSVs, then checkpoint."""

    def __init__(self, directory, steps_per_epoch, history, score, checkpoint=None):
        super().__init__()
        self.directory = Path(directory)
        self.steps_per_epoch = steps_per_epoch
        self.history = history  # the LossHistory callback of the same fit()
        self.score = score  # generator -> dict of quality scores
        self.checkpoint = checkpoint
        self.seconds = 0.0  # wall time of the run so far, across resumptions
        self.clock = 0.0

    def on_train_begin(self, logs=None):
        scores = self.directory / "scores.csv"
        if scores.is_file():  # resumed: keep counting wall time
            self.seconds = float(read_run(self.directory)["scores"]["seconds"][-1])
        self.clock = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        n = self.steps_per_epoch
        steps = range(step - n + 1, step + 1)
        values = self.history.values
        rows = zip(steps, values["d_loss"][-n:], values["g_loss"][-n:])
        write_csv(self.directory / "losses.csv", LOSS_COLUMNS, rows)
        scores = self.score(self.model.generator)
        seconds = self.seconds + time.perf_counter() - self.clock
        row = (step, logs["d_loss"], logs["g_loss"], *scores.values(), seconds)
        write_csv(self.directory / "scores.csv", score_columns(scores), [row])
        if self.checkpoint is not None:
            self.checkpoint.save(step)
