"""The GAN of :mod:`fitbook.gan` as a from-scratch loop (chapter "A GAN, two ways").

``GanTrainer.step`` calls ``gan_step``, the very function ``GAN.train_step``
calls, so both run the same algorithm by construction; only the loop around it
differs.
"""

import keras
import tensorflow as tf

from fitbook.gan import SEED_RECIPE, gan_step, make_checkpoint


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
    ):
        self.generator, self.discriminator = generator, discriminator
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self.loss_fn, self.recipe = loss_fn, recipe
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.train_step = tf.function(self.step, jit_compile=True)  # as in fit()

    def step(self, x):
        """One GAN step on images ``x``: the function ``GAN.train_step`` calls."""
        return gan_step(self, x)


def train_gan_loop(trainer, dataset, steps, checkpoint_dir, save_every=100, verbose=1):
    """Train ``trainer`` to ``steps`` steps, resuming from its latest checkpoint.

    ``dataset`` yields image batches (or ``(images, labels)``); it is iterated
    afresh, so a resumed run sees the data from the start of its iterator.
    Returns the per-step losses of this call as lists in a dict.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    checkpoint = make_checkpoint(trainer, checkpoint_dir)
    start = checkpoint.restore_latest() or 0
    progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["d", "g"])
    progbar.update(start)
    history = {"step": [], "d_loss": [], "g_loss": []}
    for step, data in zip(range(start + 1, steps + 1), dataset):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
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
