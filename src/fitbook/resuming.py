"""Saving and resuming fit() (chapter "Saving and resuming fit()").

Part one kills a ``fit()`` in a subprocess and resumes it, with Keras'
``BackupAndRestore`` callback or with the book's ``TrainingCheckpoint``, for a
model with the built-in ``train_step`` and for one with a custom step; the
resumed weights are compared with those of an uninterrupted run. Part two saves
a whole GAN, both networks and both optimizers, as a ``.keras`` file
(``SavableGAN``) and as checkpoints, and checks that a reloaded GAN continues
exactly where the saved one would have.

Run ``python -m fitbook.resuming --help`` for the subprocess that gets killed.
"""

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fitbook.checkpoints import TrainingCheckpoint
from fitbook.data import image_dataset
from fitbook.gan import (
    GAN,
    SEED_RECIPE,
    GanRecipe,
    build_optimizer_state,
    make_optimizers,
)
from fitbook.models import build_discriminator, build_generator, classifier
from fitbook.train_step import CustomTrainStepModel

N, BATCH_SIZE, EPOCHS = 64, 8, 3  # 8 steps per epoch, 24 in all
STEPS_PER_EPOCH = N // BATCH_SIZE
MODEL_CLASSES = {"builtin": keras.Model, "custom": CustomTrainStepModel}


def toy_data(seed=0):
    """``N`` random 28x28 images and labels (chapter "Saving and resuming")."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, 28, 28, 1), dtype="float32")
    return x, rng.integers(0, 10, N)


def make_model(kind="builtin"):
    """A compiled classifier, Adam under a decaying learning rate, always the same
    initial weights (chapter "Saving and resuming fit()")."""
    model = classifier(MODEL_CLASSES[kind], hidden=16, seed=0, probabilities=True)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.9)
    model.compile(
        keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
        jit_compile=False,  # tiny runs: compiling would cost more than it saves
    )
    return model


def batches(x, y, start=0, stop=EPOCHS * STEPS_PER_EPOCH, seed=0):
    """Batches ``start`` to ``stop`` of a shuffled run, each a pure function of
    ``(seed, its index)`` (chapter "Saving and resuming fit()").

    Batch ``b`` belongs to epoch ``b // STEPS_PER_EPOCH``, whose order is a
    permutation drawn from ``(seed, epoch)`` alone, so a run resumed at any batch
    sees the batches an uninterrupted run would.
    """
    images, labels = tf.convert_to_tensor(x), tf.convert_to_tensor(y)

    def batch(b):
        epoch, first = b // STEPS_PER_EPOCH, (b % STEPS_PER_EPOCH) * BATCH_SIZE
        positions = first + tf.range(BATCH_SIZE, dtype="int64")
        key = tf.stack([tf.constant(seed, "int64"), epoch])
        order = tf.random.experimental.index_shuffle(positions, key, N - 1)
        return tf.gather(images, order), tf.gather(labels, order)

    return tf.data.Dataset.range(start, stop).map(batch)


class Interrupt(keras.callbacks.Callback):
    """Kills the process after global step ``at`` (chapter "Saving and resuming").

    List it after the callback that saves, so that the save of that step is on
    disk. ``how="sigkill"`` kills with SIGKILL, as a preempted machine would;
    ``how="raise"`` raises ``Interrupted``, for tests in one process.
    """

    def __init__(self, at, how="sigkill"):
        super().__init__()
        self.at, self.how = at, how

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.at:
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise Interrupted(f"interrupted after step {self.at}")


class Interrupted(RuntimeError):
    """Raised by ``Interrupt(how="raise")`` (chapter "Saving and resuming")."""


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a ``TrainingCheckpoint`` every ``every`` steps, under the optimizer's
    step count (chapter "Saving and resuming fit()")."""

    def __init__(self, checkpoint, every):
        super().__init__()
        self.checkpoint, self.every = checkpoint, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        if step % self.every == 0:
            self.checkpoint.save(step)


def fit_with_backup(model, x, y, directory, save_freq, after=()):
    """``fit()`` in order, with ``BackupAndRestore`` and then the callbacks
    ``after`` (chapter "Saving and resuming fit()"); returns the epochs that ran."""
    backup = keras.callbacks.BackupAndRestore(directory, save_freq=save_freq)
    history = model.fit(
        x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0,
        callbacks=[backup, *after],
    )
    return history.epoch


def fit_with_checkpoint(model, x, y, directory, every, interrupt=None):
    """A resumable ``fit()`` on shuffled data (chapter "Saving and resuming fit()").

    Restores the newest checkpoint, if any, then fits from its step on: one
    ``fit()`` epoch per checkpoint interval, on the batches an uninterrupted run
    would see. Returns the step it started from.
    """
    model.optimizer.build(model.trainable_variables)  # its slots exist to restore
    checkpoint = TrainingCheckpoint(
        directory, model=model, optimizer=model.optimizer
    )
    start = checkpoint.restore_latest() or 0
    callbacks = [StepCheckpoint(checkpoint, every)]
    model.fit(
        batches(x, y, start=start),
        epochs=EPOCHS * STEPS_PER_EPOCH // every, initial_epoch=start // every,
        steps_per_epoch=every, shuffle=False, verbose=0,
        callbacks=callbacks + ([interrupt] if interrupt else []),
    )
    return start


def run_killed(method, kind, directory, every, kill_at, timeout=120):
    """Start a fit() in a subprocess that is SIGKILLed after step ``kill_at``;
    return its exit status (chapter "Saving and resuming fit()")."""
    command = [
        sys.executable, "-m", "fitbook.resuming", method, "--kind", kind,
        "--dir", str(directory), "--every", str(every), "--kill-at", str(kill_at),
    ]
    done = subprocess.run(command, timeout=timeout, capture_output=True, text=True)
    if done.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"the run was not killed (exit status {done.returncode}):\n"
            f"{done.stderr[-2000:]}"
        )
    return done.returncode


def forget_optimizer_state(model):
    """Reset the optimizer's step count and slots, as if it were new: what a
    restore that misses them would leave (chapter "Saving and resuming fit()")."""
    for variable in model.optimizer.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))


class ForgetOptimizerState(keras.callbacks.Callback):
    """Calls ``forget_optimizer_state`` when training begins: listed after
    ``BackupAndRestore``, it undoes the optimizer's restore (chapter "Saving and
    resuming fit()")."""

    def on_train_begin(self, logs=None):
        forget_optimizer_state(self.model)


def weights_of(model):
    """The model's weights and its optimizer's variables, as arrays (chapter
    "Saving and resuming fit()")."""
    return {
        "weights": [v.numpy() for v in model.weights],
        "optimizer": [v.numpy() for v in model.optimizer.variables],
    }


def max_difference(a, b):
    """The largest absolute difference between two lists of arrays (chapter
    "Saving and resuming fit()")."""
    return max(
        float(np.max(np.abs(np.subtract(u, v, dtype="float64"))))
        for u, v in zip(a, b, strict=True)
    )


@keras.saving.register_keras_serializable("fitbook")
class SavableGAN(GAN):
    """A ``GAN`` that ``.keras`` files can hold, optimizers included (chapter
    "Saving and resuming fit()")."""

    def get_config(self):
        """The networks' configs: what ``from_config`` needs to rebuild them."""
        return {
            "name": self.name,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
        }

    @classmethod
    def from_config(cls, config):
        """Rebuild both networks, then the GAN around them."""
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        discriminator = keras.saving.deserialize_keras_object(
            config.pop("discriminator")
        )
        return cls(generator, discriminator, **config)

    def get_compile_config(self):
        """Both optimizers, the loss and the recipe that ``compile()`` received."""
        serialize = keras.saving.serialize_keras_object
        return {
            "d_optimizer": serialize(self.d_optimizer),
            "g_optimizer": serialize(self.g_optimizer),
            "loss_fn": serialize(self.loss_fn),
            "recipe": dataclasses.asdict(self.recipe),
            "jit_compile": self.jit_compile,
        }

    def compile_from_config(self, config):
        """Compile as the saved GAN was, and create the optimizers' variables, so
        that loading fills them with the saved values."""
        deserialize = keras.saving.deserialize_keras_object
        self.compile(
            deserialize(config["d_optimizer"]),
            deserialize(config["g_optimizer"]),
            deserialize(config["loss_fn"]),
            recipe=GanRecipe(**config["recipe"]),
            jit_compile=config["jit_compile"],
        )
        build_optimizer_state(self)

    def save_own_variables(self, store):
        """The GAN's own variables, and the state of its noise generator, which
        ``.keras`` files leave out otherwise."""
        super().save_own_variables(store)
        store["seed_generator_state"] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        """Restore what ``save_own_variables`` saved."""
        self.seed_generator.state.assign(store["seed_generator_state"])
        own = self._trainable_variables + self._non_trainable_variables
        for i, variable in enumerate(own):
            variable.assign(store[f"{i}"])


@keras.saving.register_keras_serializable("fitbook")
class NoNoiseStateGAN(SavableGAN):
    """Wrong: saves as Keras does by default, without the noise generator's state
    (chapter "Saving and resuming fit()")."""

    def save_own_variables(self, store):
        keras.Model.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.Model.load_own_variables(self, store)


def build_savable_gan(gan_class=SavableGAN, seed=0):
    """A compiled, built ``SavableGAN`` (or subclass) with fresh networks and
    optimizers, like ``build_gan(jit_compile=False)`` (chapter "Saving and
    resuming fit()")."""
    gan = gan_class(build_generator(), build_discriminator(), seed=seed)
    d_optimizer, g_optimizer = make_optimizers(SEED_RECIPE)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    gan.compile(d_optimizer, g_optimizer, loss_fn, jit_compile=False)
    gan(np.zeros((1, gan.latent_dim), "float32"))  # built: save() needs it
    build_optimizer_state(gan)  # the optimizers' variables exist to be saved
    return gan


def train_gan(gan, images, start, steps, batch_size=4):
    """``steps`` steps of ``fit()`` from batch ``start`` of a run's batch sequence
    (chapter "Saving and resuming fit()"). Eagerly: for a few steps, tracing the
    step would cost more than running it."""
    gan.run_eagerly = True
    dataset = image_dataset(images, batch_size, seed=0, repeat=True, start=start)
    gan.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return gan


def tf_checkpoint(gan):
    """A ``tf.train.Checkpoint`` of everything a GAN's training depends on
    (chapter "Saving and resuming fit()")."""
    build_optimizer_state(gan)  # the slots exist before a restore fills them
    return tf.train.Checkpoint(
        generator=gan.generator,
        discriminator=gan.discriminator,
        d_optimizer=gan.d_optimizer,
        g_optimizer=gan.g_optimizer,
        noise_state=gan.seed_generator.state,
    )


def gan_state(gan):
    """Every array a GAN's training depends on, by name (chapter "Saving and
    resuming fit()")."""
    parts = {
        "generator": gan.generator.weights,
        "discriminator": gan.discriminator.weights,
        "d_optimizer": gan.d_optimizer.variables,
        "g_optimizer": gan.g_optimizer.variables,
        "seed_generator": [gan.seed_generator.state],
    }
    return {name: [v.numpy() for v in variables] for name, variables in parts.items()}


def same_state(a, b):
    """``{part: True if bit for bit equal}`` for two ``gan_state`` results."""
    return {
        name: len(a[name]) == len(b[name])
        and all(np.array_equal(u, v) for u, v in zip(a[name], b[name]))
        for name in a
    }


def parse_args(argv):
    """Arguments of the subprocess that gets killed."""
    parser = argparse.ArgumentParser(
        prog="python -m fitbook.resuming",
        description="Fit the toy model of chapter 'Saving and resuming fit()' and "
        "SIGKILL the process after a step, leaving its backups behind.",
    )
    parser.add_argument("method", choices=["backup", "checkpoint"])
    parser.add_argument("--kind", choices=sorted(MODEL_CLASSES), default="builtin")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument(
        "--every", default="epoch",
        help="save every EVERY steps ('epoch': BackupAndRestore's default)",
    )
    parser.add_argument("--kill-at", type=int, required=True)
    return parser.parse_args(argv)


def main(argv=None):
    """Fit, SIGKILLed after step ``--kill-at``: the command line of the module."""
    args = parse_args(argv)
    every = args.every if args.every == "epoch" else int(args.every)
    model, (x, y) = make_model(args.kind), toy_data()
    interrupt = Interrupt(args.kill_at)
    if args.method == "backup":
        fit_with_backup(model, x, y, args.dir, every, [interrupt])
    else:
        fit_with_checkpoint(model, x, y, args.dir, every, interrupt)
    return 1  # not reached when the kill happens


if __name__ == "__main__":
    sys.exit(main())
