"""A Wasserstein GAN with gradient penalty as a ``train_step`` (chapter "WGAN-GP").

The critic scores images with an unbounded number; the difference of its mean
scores on real and generated images estimates the Wasserstein-1 distance when
the critic is 1-Lipschitz. Gulrajani et al. (2017) enforce that softly with a
gradient penalty, computed with a ``GradientTape`` nested inside the tape of the
critic's update: the inner tape's gradient is part of the loss that the outer
tape differentiates.

The generator, the data pipeline and the quality scores come from
:mod:`fitbook.gan`, so the two chapters can be compared side by side.

Whether XLA compiles the step is measured on this machine, not assumed
(:func:`tune_wgan_gp`, cached per machine as :func:`fitbook.gan.tune_gan` is);
the precision stays float32 unless asked for (see :func:`build_wgan_gp`).
"""

import contextlib
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import layers, ops

from fitbook.batches import check_images, unpack_images
from fitbook.checks import non_negative_number, positive_int
from fitbook.data import image_dataset, load_fashion_mnist
from fitbook.gan import ready_optimizer, with_loss_scaling
from fitbook.models import build_generator, discriminator_trunk
from fitbook.plots import smooth
from fitbook.tuning import (
    AUTO,
    PRECISIONS,
    dtype_policy,
    grid,
    quiet_autotune,
    restrict,
)

METRIC_NAMES = ("critic_loss", "generator_loss", "gradient_penalty", "wasserstein")


def build_critic():
    """28x28x1 images to one unbounded score, no normalization (chapter "WGAN-GP")."""
    return keras.Sequential(
        [
            *discriminator_trunk(),  # the GAN discriminator's convolutions
            layers.Flatten(),  # every position feeds the score, not only the maximum
            layers.Dense(1),  # linear: a score, not a probability
        ],
        name="critic",
    )


def paper_optimizers(learning_rate=1e-4, beta_1=0.0, beta_2=0.9):
    """Critic and generator Adam with Algorithm 1's defaults (chapter "WGAN-GP")."""
    return tuple(
        keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2, name=name)
        for name in ("critic_optimizer", "generator_optimizer")
    )


def interpolate(x_real, x_fake, eps):
    """``eps * x_real + (1 - eps) * x_fake``, one ``eps`` per sample ("WGAN-GP")."""
    if tuple(x_real.shape) != tuple(x_fake.shape):
        raise ValueError(
            f"x_real and x_fake must have the same shape, got {tuple(x_real.shape)} "
            f"and {tuple(x_fake.shape)}: draw as many fakes as real images."
        )
    if len(eps.shape) != 1:
        raise ValueError(
            f"eps must have shape (batch,), one number in [0, 1] per sample, got "
            f"{tuple(eps.shape)}."
        )
    eps = ops.cast(eps, x_real.dtype)
    x_fake = ops.cast(x_fake, x_real.dtype)  # float16 from a mixed-precision generator
    eps = ops.reshape(eps, (-1,) + (1,) * (len(x_real.shape) - 1))  # broadcastable
    return eps * x_real + (1.0 - eps) * x_fake


def gradient_penalty(critic, x_real, x_fake, eps):
    """Mean of (||grad critic(x_hat)|| - 1)^2 at interpolates (chapter "WGAN-GP")."""
    x_real, x_fake = ops.convert_to_tensor(x_real), ops.convert_to_tensor(x_fake)
    x_hat = interpolate(x_real, x_fake, eps)
    with tf.GradientTape() as inner:  # records inside the caller's tape, if any
        inner.watch(x_hat)  # a tensor, not a variable: watch it explicitly
        scores = critic(x_hat, training=True)
    grads = inner.gradient(scores, x_hat)  # per sample: no batch-mixing layers
    squares = ops.sum(ops.square(grads), axis=tuple(range(1, len(grads.shape))))
    norms = ops.sqrt(squares + 1e-12)  # the epsilon keeps sqrt's gradient finite
    return ops.mean(ops.square(norms - 1.0))


def critic_loss(real_scores, fake_scores):
    """Mean fake minus mean real score, minus the W-1 estimate (chapter "WGAN-GP")."""
    real = ops.mean(ops.cast(real_scores, "float32"))  # float32 under mixed precision
    fake = ops.mean(ops.cast(fake_scores, "float32"))
    return fake - real


def generator_loss(fake_scores):
    """Minus the mean critic score of generated images (chapter "WGAN-GP")."""
    return -ops.mean(ops.cast(fake_scores, "float32"))  # float32 under mixed precision


def split_batch(x, parts):
    """Split a batch into ``parts`` equal batches, one per critic update ("WGAN-GP")."""
    n = x.shape[0]
    if n is not None and n % parts:
        raise ValueError(
            f"A batch of {n} images cannot be split into critic_steps={parts} equal "
            "critic batches. Use a batch size that is a multiple of critic_steps "
            "and drop the last partial batch (fitbook.data.image_dataset does)."
        )
    return ops.split(x, parts, axis=0)


def check_critic_steps(critic_steps):
    """Return ``critic_steps`` after checking it is a positive int ("WGAN-GP")."""
    return positive_int(
        "critic_steps", critic_steps,
        hint=" It counts critic updates per generator update; the paper uses 5.",
    )


def check_gp_weight(gp_weight):
    """Return ``gp_weight`` as a float, checked finite and >= 0 ("WGAN-GP")."""
    return float(non_negative_number(
        "gp_weight", gp_weight, finite=True,
        hint=" The paper uses 10.0, and 0.0 turns the penalty off.",
    ))


def check_optimizers(critic_optimizer, generator_optimizer):
    """Raise ``ValueError`` unless given two distinct Keras optimizers ("WGAN-GP")."""
    for name, opt in (("critic", critic_optimizer), ("generator", generator_optimizer)):
        if not isinstance(opt, keras.optimizers.Optimizer):
            raise ValueError(
                f"{name}_optimizer must be a keras.optimizers.Optimizer, e.g. "
                f"keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9), got {opt!r}."
            )
    if critic_optimizer is generator_optimizer:
        raise ValueError(
            "critic_optimizer and generator_optimizer are the same object; each "
            "network needs its own optimizer state: pass two optimizers."
        )


class WGANGP(keras.Model):
    """A WGAN-GP whose ``train_step`` makes ``fit()`` train it (chapter "WGAN-GP")."""

    def __init__(self, generator, critic, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.critic = critic
        self.latent_dim = generator.input_shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}

    def compile(
        self,
        critic_optimizer,
        generator_optimizer,
        critic_steps=5,
        gp_weight=10.0,
        jit_compile=AUTO,
    ):
        """Two optimizers, critic updates per generator update, penalty weight.

        ``self.optimizer`` stays ``None``: the two optimizers are
        ``critic_optimizer`` and ``generator_optimizer``. ``jit_compile="auto"``
        uses XLA if it measured faster for this dtype policy
        (:func:`tune_wgan_gp`, with these ``critic_steps``).
        """
        check_optimizers(critic_optimizer, generator_optimizer)
        self.critic_steps = check_critic_steps(critic_steps)
        self.gp_weight = check_gp_weight(gp_weight)
        jit_compile = check_jit_compile(jit_compile)
        if jit_compile == AUTO:
            jit_compile = tuned_wgan_gp_settings(
                self.dtype_policy.name, AUTO, self.critic_steps)[1]
        super().compile(optimizer=None, jit_compile=jit_compile)
        # Under mixed_float16, wrapped in a LossScaleOptimizer as compile() does.
        policy = self.dtype_policy
        self.critic_optimizer = with_loss_scaling(critic_optimizer, policy)
        self.generator_optimizer = with_loss_scaling(generator_optimizer, policy)

    @property
    def metrics(self):
        """The trackers ``fit()`` resets at the start of every epoch."""
        return list(self.trackers.values())

    def call(self, z, training=False):
        """Generate images from noise ``z``."""
        return self.generator(z, training=training)

    def check_batch(self, x):
        """Return ``x`` as float32 after checking it fits the critic's input."""
        return check_images(x, self.critic.input_shape[1:], "The critic")

    def critic_step(self, x_real):
        """One critic update on real images; returns loss, penalty, estimate."""
        batch_size = ops.shape(x_real)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        eps = keras.random.uniform((batch_size,), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            x_fake = self.generator(z, training=False)
            real_scores = self.critic(x_real, training=True)
            fake_scores = self.critic(x_fake, training=True)
            wasserstein = -critic_loss(real_scores, fake_scores)
            penalty = gradient_penalty(self.critic, x_real, x_fake, eps)  # inner tape
            loss = -wasserstein + self.gp_weight * penalty
            scaled_loss = self.critic_optimizer.scale_loss(loss)  # mixed_float16
        # Double backprop: the loss holds the inner tape's gradient.
        grads = tape.gradient(scaled_loss, self.critic.trainable_weights)
        self.critic_optimizer.apply(grads, self.critic.trainable_weights)
        return loss, penalty, wasserstein

    def generator_step(self, batch_size):
        """One generator update through the critic, whose weights stay put."""
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake_scores = self.critic(self.generator(z, training=True), training=False)
            loss = generator_loss(fake_scores)
            scaled_loss = self.generator_optimizer.scale_loss(loss)  # mixed_float16
        grads = tape.gradient(scaled_loss, self.generator.trainable_weights)
        self.generator_optimizer.apply(grads, self.generator.trainable_weights)
        return loss

    def train_step(self, data):
        """``critic_steps`` critic updates, then one generator update, on a batch."""
        # Unpack: labels, if the data has them, are ignored.
        x = unpack_images(data, self)  # sample weights: a clear error
        x_parts = split_batch(self.check_batch(x), self.critic_steps)
        n = ops.shape(x_parts[0])[0]  # images per update: the weight of its values
        # Optimizers built before scale_loss, and loss-scaled if float16.
        ready_optimizer(self.critic_optimizer, self.critic)
        ready_optimizer(self.generator_optimizer, self.generator, self.critic)
        # Critic: forward under the tape, gradients, apply; critic_steps times.
        for i in range(self.critic_steps):  # a Python int: the loop is unrolled
            c_loss, penalty, wasserstein = self.critic_step(x_parts[i])
            self.trackers["critic_loss"].update_state(c_loss, sample_weight=n)
            self.trackers["gradient_penalty"].update_state(penalty, sample_weight=n)
            self.trackers["wasserstein"].update_state(wasserstein, sample_weight=n)
        # Generator: one update, on as many samples as a critic batch holds.
        g_loss = self.generator_step(n)
        # Update metrics and return their values.
        self.trackers["generator_loss"].update_state(g_loss, sample_weight=n)
        return {m.name: m.result() for m in self.metrics}


def check_jit_compile(jit_compile):
    """Return ``jit_compile`` after checking it is True, False or ``"auto"``."""
    if jit_compile is True or jit_compile is False or jit_compile == AUTO:
        return jit_compile
    raise ValueError(
        f"jit_compile must be True, False or {AUTO!r} (measure which is faster "
        f"here), got {jit_compile!r}."
    )


def check_precision(precision):
    """Return ``precision`` after checking it is a dtype policy name or None."""
    if precision is None or precision in PRECISIONS:
        return precision
    if precision == AUTO:
        raise ValueError(
            f"precision={AUTO!r} is not offered for the WGAN-GP: its penalty "
            "differentiates a gradient, and a lower precision has not been shown "
            "sound for that here. Use 'float32' (the default), or name a policy "
            f"from {PRECISIONS} to try one yourself."
        )
    raise ValueError(
        f"precision must be one of {PRECISIONS} or None (the global policy as "
        f"it is), got {precision!r}."
    )


def build_wgan_gp(critic_steps=5, gp_weight=10.0, seed=0, jit_compile=AUTO,
                  precision="float32"):
    """A compiled ``WGANGP``: the GAN's generator, a new critic (chapter "WGAN-GP").

    ``jit_compile="auto"`` (the default) compiles the step with XLA if that
    measured faster on this machine (:func:`tune_wgan_gp`, cached); True or
    False skip the measurement, as the tests do. ``precision`` is the Keras
    dtype policy the networks are built under (``None``: the global one). It
    stays float32 unless asked for, and is not tuned: ``mixed_bfloat16`` was
    shown sound for the GAN, over long runs and several seeds, but the
    gradient penalty differentiates a gradient, and a tuner's few steps agreeing
    with float32 would not show that the penalty stays accurate over a run.
    """
    check_critic_steps(critic_steps)
    precision = check_precision(precision)
    jit_compile = check_jit_compile(jit_compile)
    if jit_compile == AUTO:
        asked = keras.config.dtype_policy().name if precision is None else precision
        jit_compile = tuned_wgan_gp_settings(asked, AUTO, critic_steps)[1]
    building = contextlib.nullcontext() if precision is None else dtype_policy(
        precision)
    with building:  # layers take the global policy when they are created
        model = WGANGP(build_generator(), build_critic(), seed=seed)
    model.compile(
        *paper_optimizers(),
        critic_steps=critic_steps,
        gp_weight=gp_weight,
        jit_compile=jit_compile,
    )
    return model


TUNING_STEPS = 1  # WGAN-GP generator steps per timed round: each is about 1 s
CRITIC_BATCH = 64  # images per critic update when tuning, as in the chapter


def tune_wgan_gp(precision="float32", jit_compile=AUTO, critic_steps=5,
                 steps=TUNING_STEPS, rounds=2, path=AUTO):
    """Measure the WGAN-GP step (batches of 64 per critic update) with and
    without XLA, in the given ``precision``; a ``tuning.Tuning``.

    The float32 step without XLA is always measured, as the reference for
    soundness and speed. Every candidate starts from the same weights, and the
    random state of the caller is kept. Cached per machine
    (``tuning.quiet_autotune``). A few steps only: each makes ``critic_steps``
    critic updates and a generator update.
    """
    precision = check_precision(precision)
    jit_compile = check_jit_compile(jit_compile)
    critic_steps = check_critic_steps(critic_steps)
    positive_int("steps", steps)
    asked = keras.config.dtype_policy().name if precision is None else precision
    candidates, eligible = restrict(grid(("float32",)), asked, jit_compile)
    batch = critic_steps * CRITIC_BATCH
    images = load_fashion_mnist()[0][0][: batch * steps]
    start = []  # the first model's weights: every candidate starts from them

    def make_run(config):
        model = build_wgan_gp(critic_steps, seed=0, jit_compile=config.jit_compile,
                              precision=config.precision)
        networks = (model.generator, model.critic)
        if not start:
            start.extend(net.get_weights() for net in networks)
        for net, weights in zip(networks, start):
            net.set_weights(weights)
        dataset = image_dataset(images, batch, repeat=True)

        def run():
            history = model.fit(dataset, epochs=1, steps_per_epoch=steps,
                                shuffle=False, verbose=0)
            return {k: history.history[k][-1] for k in ("critic_loss",
                                                        "generator_loss")}

        return run

    return quiet_autotune(
        f"wgan_gp, critic_steps {critic_steps}, batch {CRITIC_BATCH}",
        make_run, candidates, steps, path=path, rounds=rounds,
        batch_size=batch, eligible=eligible)


def tuned_wgan_gp_settings(precision, jit_compile, critic_steps=5):
    """``(precision, jit_compile)`` with ``jit_compile="auto"`` replaced by
    :func:`tune_wgan_gp`'s choice for that precision and ``critic_steps``."""
    if jit_compile != AUTO:
        return precision, jit_compile
    return precision, tune_wgan_gp(precision, AUTO, critic_steps).chosen.jit_compile


def timed_fit(model, dataset, steps, steps_per_epoch, callbacks=()):
    """``fit()`` for ``steps`` steps in epochs of ``steps_per_epoch``; returns
    each epoch's wall time in seconds, measured by a callback (chapter "WGAN-GP").
    """
    positive_int("steps_per_epoch", steps_per_epoch)
    if positive_int("steps", steps) % steps_per_epoch:
        raise ValueError(
            f"steps={steps} is not a whole number of epochs of "
            f"steps_per_epoch={steps_per_epoch}: make it a multiple."
        )
    ends = [time.perf_counter()]
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    model.fit(dataset, epochs=steps // steps_per_epoch,
              steps_per_epoch=steps_per_epoch, callbacks=[*callbacks, clock],
              shuffle=False, verbose=2)
    return np.diff(ends)


def logged_scores_at(scores, step):
    """``(logged step, {"coverage", "frechet"})`` of a run's ``scores`` table (a
    :func:`fitbook.runs.read_run` record) at its last logged step ``<= step``,
    or ``None`` if it has none (chapter "WGAN-GP").

    A run that saved the moving average of its generator's weights logs its
    scores as ``ema_coverage`` and ``ema_frechet``: those are read when present,
    the scores of the generator the run saved.
    """
    shown = "ema_" if "ema_frechet" in scores else ""
    for name in ("step", shown + "coverage", shown + "frechet"):
        if name not in scores:
            raise ValueError(
                f"the scores table has no {name!r} column (it has "
                f"{sorted(scores)}): pass read_run(directory)['scores']."
            )
    logged = np.flatnonzero(np.atleast_1d(scores["step"]) <= step)
    if not len(logged):
        return None
    row = logged[-1]
    return int(np.atleast_1d(scores["step"])[row]), {
        name: float(np.atleast_1d(scores[shown + name])[row])
        for name in ("coverage", "frechet")
    }


def plot_wgan_losses(history, gp_weight, window=10, title="WGAN-GP training"):
    """Figure of the losses and the Wasserstein estimate (chapter "WGAN-GP")."""
    x = np.asarray(history.steps)[window - 1 :]
    v = history.values
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    curves = (
        ("critic loss (with penalty)", v["critic_loss"]),
        ("generator loss", v["generator_loss"]),
        (f"{gp_weight:g} x penalty", gp_weight * np.asarray(v["gradient_penalty"])),
    )
    for label, values in curves:
        left.plot(x, smooth(values, window), label=label)
    left.set(xlabel="generator step", ylabel=f"mean of {window} steps", title="Losses")
    left.legend(fontsize=8)
    right.plot(x, smooth(v["wasserstein"], window), color="C3")
    right.set(
        xlabel="generator step",
        ylabel="mean real score - mean fake score",
        title="Wasserstein-1 estimate",
    )
    fig.suptitle(title)
    fig.tight_layout()
    return fig
