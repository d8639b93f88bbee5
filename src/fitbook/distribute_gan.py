"""The GAN of chapter "A GAN, two ways" under a tf.distribute strategy (chapter
"Scaling out with tf.distribute", section "A GAN under MirroredStrategy").

``GAN.train_step`` and ``GanTrainer.step`` draw their noise inside the step. Under
``MirroredStrategy`` every replica reads the same mirrored seed state, so the
replicas draw the *same* noise for different images, and no run on one device
draws that. To compare weights with one device, the noise here is drawn once,
outside the step, and travels with the images: the strategy splits it among the
replicas exactly as it splits the images.
"""

import re

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from fitbook.gan import (
    FIXED_RECIPE,
    GAN,
    build_optimizer_state,
    draw_step_noise,
    gan_train_step,
    make_optimizers,
)
from fitbook.gan_loop import GanTrainer
from fitbook.models import LATENT_DIM, build_discriminator, build_generator


def step_noise(steps, batch_size, seed=0, latent_dim=LATENT_DIM):
    """The noise of ``steps`` GAN steps, drawn as one device's ``gan_train_step`` would:
    a dict of arrays with ``steps * batch_size`` rows, one per image (chapter
    "Scaling out with tf.distribute")."""
    seed_generator = keras.random.SeedGenerator(seed)
    draws = [draw_step_noise(seed_generator, batch_size, latent_dim)
             for _ in range(steps)]
    u = [ops.convert_to_numpy(d[1]).reshape(2, batch_size, 1) for d in draws]
    return {  # label noise u is (2b, 1), real then fake: one real, one fake per row
        "z_d": np.concatenate([ops.convert_to_numpy(d[0]) for d in draws]),
        "u_real": np.concatenate([pair[0] for pair in u]),
        "u_fake": np.concatenate([pair[1] for pair in u]),
        "z_g": np.concatenate([ops.convert_to_numpy(d[2]) for d in draws]),
    }


def noise_dataset(x, noise, batch_size):
    """Batches of ``(x, z_d, u_real, u_fake, z_g)``, in order ("Scaling out")."""
    columns = (x, noise["z_d"], noise["u_real"], noise["u_fake"], noise["z_g"])
    return tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)


def noise_step(parts, x, z_d, u_real, u_fake, z_g):
    """``gan_train_step`` with the noise given: one D step, then one G step
    (chapter "Scaling out with tf.distribute"). It updates ``parts``' trackers
    with the losses as Keras' loss returns them: divided by the replicas."""
    u = ops.concatenate([u_real, u_fake])  # targets for [real; fake]
    return gan_train_step(parts, x, noise=(z_d, u, z_g))


class ReplicaLossMean(keras.metrics.Mean):
    """A loss tracker for one replica's share of a loss, which Keras' losses
    divide by the number of replicas: it multiplies the division back (chapter
    "Scaling out with tf.distribute")."""

    def update_state(self, values, sample_weight=None):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return super().update_state(values * replicas, sample_weight=sample_weight)


class NoiseInputGAN(GAN):
    """A ``GAN`` whose batches carry their noise (chapter "Scaling out")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.d_loss_tracker = ReplicaLossMean(name="d_loss")  # undo the division
        self.g_loss_tracker = ReplicaLossMean(name="g_loss")

    def train_step(self, data):
        """One D step and one G step on ``(x, z_d, u_real, u_fake, z_g)``."""
        # Unpack: this replica's share of the images and of their noise.
        x, z_d, u_real, u_fake, z_g = data
        # Forward, gradients, apply and metrics: gan_train_step, noise given.
        noise_step(self, x, z_d, u_real, u_fake, z_g)
        # Return the running means.
        return {m.name: m.result() for m in self.metrics}


def build_gan_under(strategy, gan_class=NoiseInputGAN, seed=0, build=("model", "opt")):
    """A compiled GAN made in ``strategy.scope()``, with the same initial weights
    for every call; ``build`` says what is built there too: the model, the
    optimizers (chapter "Scaling out with tf.distribute")."""
    keras.utils.set_random_seed(seed)  # the same initial weights every time
    with strategy.scope():
        gan = gan_class(build_generator(), build_discriminator(), seed=seed)
        d_optimizer, g_optimizer = make_optimizers(FIXED_RECIPE)
        loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        gan.compile(d_optimizer, g_optimizer, loss_fn, FIXED_RECIPE, jit_compile=False)
        if "model" in build:
            gan(ops.zeros((1, LATENT_DIM)))  # built: fit() will not call it on x
        if "opt" in build:
            build_optimizer_state(gan)  # slots made here, not in the traced step
    return gan


def fit_gan_under(strategy, dataset, gan_class=NoiseInputGAN, build=("model", "opt")):
    """``fit()`` one epoch of a fresh GAN under ``strategy``; return it and its
    reported losses (chapter "Scaling out with tf.distribute")."""
    gan = build_gan_under(strategy, gan_class, build=build)
    history = gan.fit(dataset, epochs=1, shuffle=False, verbose=0)
    return gan, {name: values[-1] for name, values in history.history.items()}


def loop_gan_under(strategy, dataset, seed=0):
    """The from-scratch GAN loop under ``strategy``: a ``GanTrainer`` made in its
    scope, ``noise_step`` run per replica; return the trainer and its losses
    (chapter "Scaling out with tf.distribute")."""
    keras.utils.set_random_seed(seed)
    with strategy.scope():  # networks, optimizers and seed state get mirrored
        trainer = GanTrainer(
            build_generator(), build_discriminator(), *make_optimizers(FIXED_RECIPE),
            keras.losses.BinaryCrossentropy(from_logits=True), FIXED_RECIPE, seed,
            jit_compile=False,
        )
        build_optimizer_state(trainer)

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(noise_step, args=(trainer, *batch))
        # Each replica's loss is its share of the global mean: add them.
        return [strategy.reduce("SUM", loss, axis=None) for loss in per_replica]

    batches = strategy.experimental_distribute_dataset(dataset)  # split per replica
    losses = [train_step(batch) for batch in batches]
    return trainer, [[float(loss) for loss in pair] for pair in losses]


def gan_weights_difference(first, second):
    """Largest absolute difference between two GANs' generator and
    discriminator weights (``GAN`` or ``GanTrainer``; chapter "Scaling out")."""
    pairs = [(first.generator, second.generator),
             (first.discriminator, second.discriminator)]
    return max(
        float(np.max(np.abs(a - b)))
        for one, two in pairs
        for a, b in zip(one.get_weights(), two.get_weights())
    )


def replica_noise(strategy, seed=0, batch_size=2):
    """What each replica draws from one mirrored ``SeedGenerator``, in a step:
    a list of arrays, one per replica (chapter "Scaling out")."""
    with strategy.scope():
        seed_generator = keras.random.SeedGenerator(seed)

    @tf.function
    def draw():
        return strategy.run(lambda: draw_step_noise(seed_generator, batch_size)[0])

    per_replica = strategy.experimental_local_results(draw())
    return [ops.convert_to_numpy(z) for z in per_replica]


def first_line(error):
    """``Type: first line`` of an exception's message ("Scaling out"); for a
    TensorFlow runtime error, the first root error, without tensor names."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if isinstance(error, tf.errors.OpError):  # "Graph execution error:" first
        roots = [re.sub(r"^\s*\(0\) \w+:\s*", "", line) for line in lines
                 if re.match(r"^\s*\(0\) \w+:", line)]
        lines = [re.sub(r"'[^']*'", "(...)", line) for line in roots] or lines
    message = lines[0] if lines else ""
    return f"{type(error).__name__}: {message}"
