"""The GAN of :mod:`fitbook.gan` as a from-scratch loop (chapter "A GAN on train_step").

``GanTrainer.step`` calls ``gan_train_step``, the very function
``GAN.train_step`` calls, so both run the same algorithm by construction; only
the loop around it differs.
"""

import itertools

import keras
import tensorflow as tf

from fitbook.batches import unpack_x
from fitbook.checks import positive_int
from fitbook.gan import (
    SEED_RECIPE,
    conv_of,
    gan_train_step,
    make_checkpoint,
    tuned_settings,
)
from fitbook.tuning import AUTO


class GanTrainer:
    """Networks, optimizers, loss and randomness of a from-scratch GAN loop."""

    def __init__(
        self,
        generator,
        discriminator,
        d_optimizer,
        g_optimizer,
        loss_fn,
        recipe=SEED_RECIPE,
        seed=0,
        jit_compile=AUTO,
    ):
        self.generator, self.discriminator = generator, discriminator
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.loss_fn, self.recipe = loss_fn, recipe
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")  # as in GAN
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        # XLA if it measured faster for these networks, as GAN.compile decides.
        if jit_compile == AUTO:
            policy = generator.dtype_policy.name
            jit_compile = tuned_settings(policy, AUTO, conv_of(generator))[1]
        self.train_step = tf.function(self.step, jit_compile=jit_compile)

    def step(self, x):
        """One GAN step on images ``x``: the function ``GAN.train_step`` calls.
        Returns the step's two losses."""
        return gan_train_step(self, x)


def train_gan_loop(trainer, dataset, steps, checkpoint_dir, save_every=100, verbose=1):
    """Train ``trainer`` to ``steps`` steps, resuming from its latest checkpoint.

    ``dataset`` yields image batches (or ``(images, labels)``) in the same order
    every time it is iterated, e.g. ``data.image_dataset(x, 64, seed, repeat=True)``
    or an unshuffled ``tf.data`` pipeline. A resumed run skips the batches before
    its checkpoint, so it sees what an uninterrupted run would: with the weights,
    optimizers and random state of the checkpoint, it ends bit for bit the same.
    Returns the per-step losses of this call as lists in a dict.
    """
    steps = positive_int("steps", steps)
    checkpoint = make_checkpoint(trainer, checkpoint_dir)
    start = checkpoint.restore_latest() or 0
    if start > steps:
        raise ValueError(f"{checkpoint_dir} is at step {start}, past steps={steps}.")
    progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["d", "g"])
    progbar.update(start)
    history = {"step": [], "d_loss": [], "g_loss": []}
    batches = skip_batches(dataset, start)  # the data position of the checkpoint
    for step, data in zip(range(start + 1, steps + 1), batches):
        x = unpack_x(data)
        d_loss, g_loss = (float(loss) for loss in trainer.train_step(x))
        for name, value in zip(history, (step, d_loss, g_loss)):
            history[name].append(value)
        progbar.update(step, [("d", d_loss), ("g", g_loss)])
        if step % save_every == 0 or step == steps:
            checkpoint.save(step)  # atomic: an interruption leaves the last one
    if history["step"][-1:] != [steps] and start < steps:
        raise ValueError(
            f"dataset ended after step {start + len(history['step'])} of {steps}; "
            "pass a longer one, e.g. dataset.repeat()."
        )
    return history


def skip_batches(dataset, count):
    """``dataset`` without its first ``count`` batches (chapter "A GAN")."""
    if isinstance(dataset, tf.data.Dataset):
        return dataset.skip(count)
    return itertools.islice(dataset, count, None)
