"""A GAN trained with ``fit()``: recipe, the step, the Model, the long run.

Used by the chapters "A GAN on train_step" and "Judging and fixing a GAN". The
whole training step is one plain function, ``gan_train_step``, so the
``train_step`` GAN here and the from-scratch loop of :mod:`fitbook.gan_loop` run
the same algorithm by construction. The
networks are in :mod:`fitbook.models`, the callbacks in :mod:`fitbook.callbacks`,
the run's CSV record in :mod:`fitbook.runs`.

``train`` is the long run; ``python -m fitbook.tools.train_gan train --out DIR``
(or, as recorded in the committed runs, ``python -m fitbook.gan train ...``)
starts it from the command line.
"""

import contextlib
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from fitbook.batches import check_images, unpack_images
from fitbook.callbacks import ImageGridCallback, LossHistory, RunLogger
from fitbook.checkpoints import TrainingCheckpoint, atomic_write
from fitbook.data import FASHION_MNIST_FILES, image_dataset, load_fashion_mnist
from fitbook.loops import with_loss_scaling
from fitbook.models import (
    CONVS,
    LATENT_DIM,
    MATMUL_BIAS,
    PHASE_GRADS,
    MatmulBiasConv2DTranspose,
    PhaseGradConv2DTranspose,
    ShiftAddConv2D,
    build_discriminator,
    build_generator,
    conv_parts,
)
from fitbook.quality import make_scorer
from fitbook.reproducibility import set_seed
from fitbook.runs import final_scores, read_run, truncate_run
from fitbook.tuning import (
    AUTO,
    dtype_policy,
    grid,
    quiet_autotune,
    restrict,
)


@dataclasses.dataclass(frozen=True)
class GanRecipe:
    """Optimizer and label settings of GAN training (chapter "Judging and
    fixing a GAN")."""

    learning_rate: float = 3e-4  # Adam step size, the same for both networks
    beta_1: float = 0.9  # Adam's momentum; Keras' default
    label_noise: float = 0.05  # discriminator targets move up to this far
    real_label: float = 1.0  # discriminator target for real images
    batch_size: int = 64
    ema_momentum: float = 0.0  # > 0: also keep a moving average of G's weights
    fake_noise_sign: float = 1.0  # -1: fake targets move below 0 (Keras example)


SEED_RECIPE = GanRecipe()  # the recipe the chapter starts from (it collapses)
FIXED_RECIPE = dataclasses.replace(SEED_RECIPE, beta_1=0.5)  # the one that works


def ready_optimizer(optimizer, network, *upstream):
    """Build ``optimizer`` for ``network``'s weights, after checking it scales the
    loss if the gradients pass through float16 layers (chapters "A GAN", "WGAN-GP").

    ``upstream`` are the other networks the gradients flow through. Building
    first matters: until it is built, a ``LossScaleOptimizer`` scales by its
    initial scale, a constant that a traced step would keep.
    """
    for net in (network, *upstream):
        float16 = net.dtype_policy.compute_dtype == "float16"
        if float16 and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                f"{net.name} computes in float16 (dtype policy "
                f"{net.dtype_policy.name!r}) but optimizer {optimizer.name!r} does "
                "not scale the loss, so small gradients underflow to zero. Wrap it "
                "in keras.optimizers.LossScaleOptimizer, or make it with "
                "fitbook.gan.make_optimizers under this policy."
            )
    if not optimizer.built:
        optimizer.build(network.trainable_weights)


def make_optimizers(recipe, dtype_policy=None):
    """Two Adam optimizers, discriminator's first, from a ``GanRecipe``; loss
    scaled under ``mixed_float16`` (see ``with_loss_scaling``).

    With ``recipe.ema_momentum > 0`` the generator's optimizer also keeps an
    exponential moving average of the generator's weights (Keras' ``use_ema``);
    training is unchanged, ``averaged_weights`` reads the average.
    """
    average = recipe.ema_momentum > 0
    optimizers = (
        keras.optimizers.Adam(recipe.learning_rate, beta_1=recipe.beta_1,
                              name="d_optimizer"),
        keras.optimizers.Adam(recipe.learning_rate, beta_1=recipe.beta_1,
                              name="g_optimizer", use_ema=average,
                              ema_momentum=recipe.ema_momentum if average else 0.99),
    )
    return tuple(with_loss_scaling(opt, dtype_policy) for opt in optimizers)


@contextlib.contextmanager
def averaged_weights(optimizer, network):
    """Inside the block, ``network`` holds ``optimizer``'s moving average of its
    weights (an optimizer made with ``use_ema=True``); after it, its own again."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if not inner.use_ema or not inner.built:
        raise ValueError(
            f"optimizer {optimizer.name!r} keeps no moving average of "
            f"{network.name}'s weights: make it with use_ema=True (a GanRecipe "
            "with ema_momentum > 0) and train at least one step."
        )
    saved = [ops.copy(v) for v in network.trainable_variables]
    optimizer.finalize_variable_values(network.trainable_variables)
    try:
        yield network
    finally:
        for variable, value in zip(network.trainable_variables, saved):
            variable.assign(value)


def latent_dim(generator):
    """The length of the noise vectors ``generator`` takes (chapter "A GAN")."""
    return generator.input_shape[-1]


def draw_step_noise(seed_generator, batch_size, latent_dim=LATENT_DIM):
    """All random draws of one GAN step: two noise batches and label noise."""
    z_d = keras.random.normal((batch_size, latent_dim), seed=seed_generator)
    u = keras.random.uniform((2 * batch_size, 1), seed=seed_generator)
    z_g = keras.random.normal((batch_size, latent_dim), seed=seed_generator)
    return z_d, u, z_g


def discriminator_targets(batch_size, u, recipe):
    """Targets for [real; fake]: real_label then 0, moved inward by label noise
    (fake targets outward, below 0, if ``recipe.fake_noise_sign`` is -1)."""
    y = ops.concatenate(
        [
            ops.full((batch_size, 1), recipe.real_label),
            ops.zeros((batch_size, 1)),
        ]
    )
    noise = recipe.label_noise * u  # each target moves up to label_noise inward
    inward = y * (1.0 - noise) + (1.0 - y) * noise
    is_fake = ops.concatenate([ops.zeros((batch_size, 1)), ops.ones((batch_size, 1))])
    return inward - (1.0 - recipe.fake_noise_sign) * is_fake * noise  # -1: outward


def discriminator_loss(generator, discriminator, loss_fn, x, z, u, recipe):
    """Forward pass of the discriminator's half: its loss on real images ``x``
    followed by fakes made from ``z``, against targets with label noise ``u``."""
    batch_size = ops.shape(x)[0]
    x_fake = generator(z, training=False)
    logits = discriminator(ops.concatenate([x, x_fake]), training=True)
    return loss_fn(discriminator_targets(batch_size, u, recipe), logits)


def generator_loss(generator, discriminator, loss_fn, z):
    """Forward pass of the generator's half: the discriminator's loss on calling
    ``generator(z)`` real (target 1), the non-saturating generator loss."""
    logits = discriminator(generator(z, training=True), training=False)
    return loss_fn(ops.ones_like(logits), logits)


def gan_train_step(parts, data, noise=None):
    """One GAN training step: a discriminator update, then a generator update.

    ``parts`` holds the two networks, their optimizers, the loss, the recipe, a
    seed generator and two loss trackers: a ``GAN`` (its ``train_step``) or a
    ``gan_loop.GanTrainer`` (the from-scratch loop). ``noise``: the step's
    ``(z_d, u, z_g)`` if drawn elsewhere. Returns this step's two losses.
    """
    # Unpack: the images; labels are ignored, sample weights refused.
    x = check_images(unpack_images(data, parts))
    g, d = parts.generator, parts.discriminator
    loss_fn, recipe = parts.loss_fn, parts.recipe
    batch_size = ops.shape(x)[0]
    # Draw noise: fakes for D, label noise, fakes for G (one seed generator).
    if noise is None:
        noise = draw_step_noise(parts.seed_generator, batch_size, latent_dim(g))
    z_d, u, z_g = noise
    ready_optimizer(parts.d_optimizer, d)  # built; loss-scaled if d is float16
    ready_optimizer(parts.g_optimizer, g, d)  # G's gradients pass through d too
    # Discriminator, forward under the tape: real then fake, noisy targets.
    with tf.GradientTape() as tape:
        d_loss = discriminator_loss(g, d, loss_fn, x, z_d, u, recipe)
        scaled_loss = parts.d_optimizer.scale_loss(d_loss)  # x the loss scale
    # Discriminator, gradients and apply: its own weights only.
    grads = tape.gradient(scaled_loss, d.trainable_weights)
    parts.d_optimizer.apply(grads, d.trainable_weights)  # unscales them first
    # Generator, forward under the tape: through d, with target "real".
    with tf.GradientTape() as tape:
        g_loss = generator_loss(g, d, loss_fn, z_g)
        scaled_loss = parts.g_optimizer.scale_loss(g_loss)
    # Generator, gradients and apply: g's weights only, so d stays as it is.
    grads = tape.gradient(scaled_loss, g.trainable_weights)
    parts.g_optimizer.apply(grads, g.trainable_weights)
    # Metrics: running means over the epoch, weighted by batch size.
    parts.d_loss_tracker.update_state(d_loss, sample_weight=batch_size)
    parts.g_loss_tracker.update_state(g_loss, sample_weight=batch_size)
    # Return this step's losses.
    return d_loss, g_loss


class GAN(keras.Model):
    """A GAN whose ``train_step`` makes ``fit()`` train it (chapter "A GAN")."""

    def __init__(self, generator, discriminator, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = generator.input_shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    def compile(
        self, d_optimizer, g_optimizer, loss_fn, recipe=SEED_RECIPE, jit_compile=AUTO
    ):
        """Two optimizers, one loss; ``recipe`` supplies the label settings.

        ``self.optimizer`` stays ``None``: a callback that changes a learning rate
        must change ``d_optimizer``'s or ``g_optimizer``'s. ``jit_compile="auto"``
        uses XLA if it measured faster for this dtype policy and generator
        (``tune_gan``).
        """
        if jit_compile == AUTO:
            conv = conv_of(self.generator)
            jit_compile = tuned_settings(self.dtype_policy.name, AUTO, conv)[1]
        super().compile(optimizer=None, jit_compile=jit_compile)
        # Under mixed_float16, wrapped in a LossScaleOptimizer as compile() does.
        self.d_optimizer = with_loss_scaling(d_optimizer, self.dtype_policy)
        self.g_optimizer = with_loss_scaling(g_optimizer, self.dtype_policy)
        self.loss_fn = loss_fn
        self.recipe = recipe

    @property
    def metrics(self):
        """The trackers ``fit()`` resets at the start of every epoch."""
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, z, training=False):
        """Generate images from noise ``z``."""
        return self.generator(z, training=training)

    def train_step(self, data):
        """One step of ``gan_train_step``; returns the trackers' running means."""
        gan_train_step(self, data)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Both losses on a batch, with no weight updates (for ``evaluate()``)."""
        x = check_images(unpack_images(data, self))
        batch_size = ops.shape(x)[0]
        z_d, u, z_g = draw_step_noise(self.seed_generator, batch_size, self.latent_dim)
        g, d, loss_fn = self.generator, self.discriminator, self.loss_fn
        d_loss = discriminator_loss(g, d, loss_fn, x, z_d, u, self.recipe)
        self.d_loss_tracker.update_state(d_loss, sample_weight=batch_size)
        g_loss = generator_loss(g, d, loss_fn, z_g)
        self.g_loss_tracker.update_state(g_loss, sample_weight=batch_size)
        return {m.name: m.result() for m in self.metrics}


def build_gan(recipe=SEED_RECIPE, seed=0, jit_compile=AUTO, precision=AUTO,
              conv=AUTO):
    """A compiled ``GAN`` with fresh networks and optimizers from ``recipe``.

    ``precision`` is the Keras dtype policy the networks are built under
    (``None``: the global one as it is), ``jit_compile`` whether XLA compiles
    the step, and ``conv`` how the networks' convolutions compute (one of
    ``models.CONVS``, see ``build_generator``). ``"auto"`` (the
    default) takes what measured fastest, among sound choices, on this machine
    (:func:`tune_gan`, cached); explicit values skip the measurement, as the
    tests do. ``conv="auto"`` alone measures nothing: with ``precision`` and
    ``jit_compile`` both explicit it is Keras' own layers, the reference.
    """
    precision, jit_compile, conv = tuned_settings(precision, jit_compile, conv)
    building = contextlib.nullcontext() if precision is None else dtype_policy(
        precision)
    with building:  # layers take the global policy when they are created
        gan = GAN(build_generator(conv=conv), build_discriminator(conv), seed=seed)
    d_optimizer, g_optimizer = make_optimizers(recipe)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    gan.compile(
        d_optimizer, g_optimizer, loss_fn, recipe=recipe, jit_compile=jit_compile
    )
    return gan


TUNING_STEPS = 4  # GAN steps per timed round when tuning


def tune_gan(precision=AUTO, jit_compile=AUTO, steps=TUNING_STEPS, rounds=2,
             path=AUTO, conv=AUTO):
    """Measure the GAN step (fixed recipe, batch 64) in every candidate
    configuration that agrees with the explicit settings; a ``tuning.Tuning``.

    Float32 or ``mixed_bfloat16``, XLA or not: the step is long, so running
    several per call (``steps_per_execution``) changes nothing worth its cost.
    With ``conv="auto"``, how the convolutions compute is chosen in a second
    stage: the fastest of those is timed against itself with the shift-add
    last convolution (``ShiftAddConv2D``), with matmul bias gradients
    (``MatmulBiasConv2DTranspose``), with the kernel gradients of the layers
    on the 7x7 grid by phases (``PhaseGradConv2DTranspose``,
    ``PhaseGradConv2D``) and with every combination of those, seven
    candidates more instead of eight times the grid. A ``mixed_bfloat16``
    candidate always has matmul bias gradients (:func:`exact_bias_sums`), so
    for a bfloat16 winner three are left to try. Every candidate
    starts from the same weights; the random state of the caller is kept.
    Cached per machine (``tuning.quiet_autotune``).
    """
    check_conv(conv, AUTO)
    fixed = {} if conv == AUTO else conv_fields(conv)
    candidates, eligible = restrict(
        grid(**{field: (value,) for field, value in fixed.items()}),
        precision, jit_compile)
    if conv == AUTO:  # bfloat16 candidates keep their bias gradients' sums
        candidates, eligible = ([*dict.fromkeys(map(exact_bias_sums, configs))]
                                for configs in (candidates, eligible))
    every = {"shift_add_conv": True, "matmul_bias_grad": True,
             "phase_kernel_grads": True}  # each alone, and every combination
    variants = every if conv == AUTO else None
    recipe = FIXED_RECIPE
    images = load_fashion_mnist()[0][0][: recipe.batch_size * steps]
    start = []  # the first model's weights: every candidate starts from them

    def make_run(config):
        gan = build_gan(recipe, 0, config.jit_compile, config.precision,
                        conv_name(config))
        networks = (gan.generator, gan.discriminator)
        if not start:
            start.extend(net.get_weights() for net in networks)
        for net, weights in zip(networks, start):
            net.set_weights(weights)
        dataset = image_dataset(images, recipe.batch_size, repeat=True)

        def run():
            history = gan.fit(dataset, epochs=1, steps_per_epoch=steps,
                              shuffle=False, verbose=0)
            return {k: v[-1] for k, v in history.history.items()}

        return run

    return quiet_autotune(
        f"gan, batch {recipe.batch_size}", make_run, candidates, steps,
        path=path, rounds=rounds, batch_size=recipe.batch_size,
        eligible=eligible, variants=variants)


def exact_bias_sums(config):
    """``config``, with matmul bias gradients if it computes in bfloat16.

    TensorFlow's ``BiasAddGrad``, the bias gradient of every Keras layer, may
    keep bfloat16 sums in bfloat16, so that a sum stops growing; the matmul
    keeps float32 sums (chapter "Performance" measures both on your machine).
    """
    if config.precision != "mixed_bfloat16":
        return config
    return dataclasses.replace(config, matmul_bias_grad=True)


def tuned_settings(precision, jit_compile, conv=AUTO):
    """``(precision, jit_compile, conv)`` with each ``"auto"`` replaced by
    :func:`tune_gan`'s choice (``precision=None``: the global policy's name);
    ``conv="auto"`` with the other two explicit is ``"keras"``, unmeasured."""
    check_conv(conv, AUTO)
    if AUTO not in (precision, jit_compile):
        return precision, jit_compile, "keras" if conv == AUTO else conv
    asked = keras.config.dtype_policy().name if precision is None else precision
    chosen = tune_gan(asked, jit_compile, conv=conv).chosen
    return (
        precision if precision is None else chosen.precision,
        chosen.jit_compile,
        conv_name(chosen),
    )


def check_conv(conv, *also):
    """``conv`` if it names a way of computing the GAN's convolutions."""
    if conv not in (*CONVS, *also):
        raise ValueError(f"conv must be one of {(*CONVS, *also)}, got {conv!r}.")
    return conv


def conv_name(config):
    """The ``conv`` setting of a ``tuning.Config``: ``"keras"`` or
    ``"shift_add"``, with ``"+matmul_bias"`` if its bias gradients are
    matmuls, then ``"+phase_grads"`` if its 7x7 layers' kernel gradients are
    computed by phases."""
    last = "shift_add" if config.shift_add_conv else "keras"
    return (last + (MATMUL_BIAS if config.matmul_bias_grad else "")
            + (PHASE_GRADS if config.phase_kernel_grads else ""))


def conv_fields(conv):
    """The ``tuning.Config`` fields that say what ``conv`` says."""
    last, matmul_bias, phase_grads = conv_parts(conv)
    return {"shift_add_conv": last == "shift_add", "matmul_bias_grad": matmul_bias,
            "phase_kernel_grads": phase_grads}


def conv_of(generator):
    """The ``conv`` setting ``generator`` was built with (``build_generator``)."""
    def has(kind):
        return any(isinstance(layer, kind) for layer in generator.layers)
    last = "shift_add" if has(ShiftAddConv2D) else "keras"
    return (last + (MATMUL_BIAS if has(MatmulBiasConv2DTranspose) else "")
            + (PHASE_GRADS if has(PhaseGradConv2DTranspose) else ""))


# The Keras example's labels (fake 1, real 0, noise added upward), with the
# logit's sign flipped: real targets move inward, fake targets outward.
KERAS_LABELS_RECIPE = dataclasses.replace(FIXED_RECIPE, fake_noise_sign=-1.0)

RECIPES = {
    "seed": SEED_RECIPE,
    "fixed": FIXED_RECIPE,
    "keras_labels": KERAS_LABELS_RECIPE,
}


def build_optimizer_state(gan):
    """Create both optimizers' variables now, so a checkpoint can restore them."""
    gan.d_optimizer.build(gan.discriminator.trainable_weights)
    gan.g_optimizer.build(gan.generator.trainable_weights)


def make_checkpoint(gan, directory):
    """A ``TrainingCheckpoint`` of everything a resumed GAN run needs."""
    build_optimizer_state(gan)
    return TrainingCheckpoint(
        directory,
        max_to_keep=3,
        generator=gan.generator,
        discriminator=gan.discriminator,
        d_optimizer=gan.d_optimizer,
        g_optimizer=gan.g_optimizer,
        seed_generator=gan.seed_generator,  # the random draws continue too
    )


class UsageError(ValueError):
    """A command-line argument that cannot work; ``main`` reports it as argparse
    does, with exit status 2 (chapter "A GAN")."""


def train(args):
    """The ``train`` command: fit with logs, scores, grids and checkpoints."""
    choose_settings(args)  # "auto": the resumed run's settings, else measured
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.precision)  # the networks are built under it
    try:
        run_training(args)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def choose_settings(args):
    """Replace ``--precision auto``, ``--jit auto`` and ``--conv auto`` by
    concrete values: a resumed run's own (``run.json``; a run recorded before
    ``conv`` existed used Keras' Conv2D), else :func:`tune_gan`'s choice, whose
    measurements go to ``args.tuning`` for ``provenance.json``."""
    args.asked = {"precision": args.precision, "jit_compile": args.jit,
                  "conv": args.conv}
    args.tuning = None
    saved = Path(args.out) / "run.json"
    if args.resume and saved.is_file():
        settings = {**RUN_DEFAULTS, **json.loads(saved.read_text())}
        if args.precision == AUTO:
            args.precision = settings.get("precision", "float32")
        if args.jit == AUTO:
            args.jit = settings.get("jit_compile", True)
        if args.conv == AUTO:
            args.conv = settings["conv"]
    if AUTO in (args.precision, args.jit):
        args.tuning = tune_gan(args.precision, args.jit, conv=args.conv)
        args.precision = args.tuning.chosen.precision
        args.jit = args.tuning.chosen.jit_compile
        args.conv = conv_name(args.tuning.chosen)
    elif args.conv == AUTO:  # as build_gan: alone, "auto" measures nothing
        args.conv = "keras"


RUN_DEFAULTS = {"conv": "keras"}  # run.json settings added later: their old value


def run_training(args):
    """``train``'s work, under the dtype policy ``--precision`` names."""
    set_seed(args.seed)
    recipe = recipe_from(args)
    (x_train, _), (x_test, _) = load_fashion_mnist()
    x_train = x_train[: check_count(args, "train_images", x_train, recipe.batch_size)]
    x_test = x_test[: check_count(args, "reference_images", x_test, 2)]
    total = total_steps(args, len(x_train) // recipe.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, args, recipe, len(x_train))
    gan = build_gan(recipe, seed=args.seed, jit_compile=args.jit, precision=None,
                    conv=args.conv)
    checkpoint = None if args.no_checkpoint else make_checkpoint(gan, out / "ckpt")
    start = resume_run(out, checkpoint, total, args.log_every) if args.resume else 0
    history = LossHistory()
    judge = make_scorer(args.score_images, args.seed, real_images=x_test)
    z_grid = keras.random.normal((32, LATENT_DIM), seed=args.seed)
    callbacks = [
        history,
        RunLogger(out, args.log_every, history, run_scorer(gan, judge), checkpoint),
        ImageGridCallback(z_grid, args.grid_every, out / "grids", args.log_every),
    ]
    gan.fit(  # from batch `start` on: the batches an uninterrupted run would see
        image_dataset(x_train, recipe.batch_size, args.seed, repeat=True, start=start),
        epochs=total // args.log_every,
        initial_epoch=start // args.log_every,
        steps_per_epoch=args.log_every,
        callbacks=callbacks,
        shuffle=False,
        verbose=args.verbose,
    )
    gan.discriminator.save(out / "discriminator.keras")
    with shown_generator(gan) as generator:  # the average, if the run keeps one
        generator.save(out / "generator.keras")
        np.save(out / "samples.npy", np.asarray(generator(z_grid)))
    scores = read_run(out)["scores"]
    provenance = {
        "command": "python -m fitbook.gan " + " ".join(args.argv),
        "recipe": dataclasses.asdict(recipe),
        "steps": total,
        "epochs": round(total * recipe.batch_size / len(x_train), 3),
        "seed": args.seed,
        "precision": args.precision,
        "jit_compile": args.jit,
        "conv": args.conv,
        "settings_asked": getattr(args, "asked", None),  # "auto": chosen by tuning
        "tuning": None if getattr(args, "tuning", None) is None else {
            **args.tuning.to_dict(), "cached": args.tuning.cached},
        "generator_saved": "moving average" if recipe.ema_momentum else "weights",
        "train_images_sha256": FASHION_MNIST_FILES[0].sha256,
        "train_images": len(x_train),
        "reference_images": len(x_test),
        "score_images": args.score_images,
        "final_scores": final_scores(read_run(out)),
        "training_seconds": round(float(scores["seconds"][-1]), 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))


def shown_generator(gan):
    """A context giving the generator a run shows and saves: under
    ``averaged_weights`` if the recipe keeps a moving average, else as it is."""
    if gan.recipe.ema_momentum:
        return averaged_weights(gan.g_optimizer, gan.generator)
    return contextlib.nullcontext(gan.generator)


def run_scorer(gan, judge):
    """generator -> its scores from ``judge``; with a moving average, also the
    average's scores, named ``ema_coverage``, ``ema_frechet``, ..."""

    def score(generator):
        scores = judge(generator)
        if gan.recipe.ema_momentum:
            with averaged_weights(gan.g_optimizer, generator):
                scores.update({f"ema_{k}": v for k, v in judge(generator).items()})
        return scores

    return score


def recipe_from(args):
    """The ``GanRecipe`` named by ``--recipe``, with the command line's overrides."""
    fields = [f.name for f in dataclasses.fields(GanRecipe)]
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    return dataclasses.replace(RECIPES[args.recipe], **overrides)


def check_count(args, name, images, minimum):
    """The value of ``--train-images`` or ``--reference-images``: how many of
    ``images`` to use, all by default; at least ``minimum``."""
    n = getattr(args, name) or len(images)
    if not minimum <= n <= len(images):
        flag = "--" + name.replace("_", "-")
        raise UsageError(
            f"{flag} {n} must be between {minimum} and the {len(images)} images "
            "there are."
        )
    return n


def total_steps(args, steps_per_pass):
    """``--steps``, or ``--epochs`` passes rounded up to whole logging periods."""
    if args.steps is not None:
        return args.steps  # a multiple of --log-every: check_args made sure
    periods = -(-args.epochs * steps_per_pass // args.log_every)  # rounded up
    return periods * args.log_every


def check_settings(out, args, recipe, train_images):
    """Record the settings that fix a run's result; a resume must use the same."""
    settings = {
        "seed": args.seed,
        "recipe": dataclasses.asdict(recipe),
        "train_images": train_images,
        "log_every": args.log_every,
        "precision": args.precision,
        "jit_compile": args.jit,
        "conv": args.conv,
    }
    path = out / "run.json"
    if args.resume and path.is_file():
        saved = {**RUN_DEFAULTS, **json.loads(path.read_text())}
        changed = [k for k in settings if saved.get(k) != settings[k]]
        if changed:
            raise UsageError(
                f"--resume with other settings than the run in {out} ("
                + ", ".join(f"{k}: {saved.get(k)} then, {settings[k]} now"
                            for k in changed)
                + "); an exact resumption needs the run's own."
            )
    atomic_write(path, (json.dumps(settings, indent=2) + "\n").encode())


def resume_run(out, checkpoint, total, log_every):
    """Restore the newest good checkpoint, drop the log rows after it; its step."""
    start = checkpoint.restore_latest() or 0
    if start > total:
        raise UsageError(
            f"the run in {out} is already at step {start}, past --steps {total}."
        )
    truncate_run(out, start)  # rows logged after the checkpoint come again
    print(f"resumed from step {start}" if start else "no checkpoint: from step 0")
    return start


# Keeps `python -m fitbook.gan train ...` (as provenance.json records it) working:
if __name__ == "__main__":
    from fitbook.tools.train_gan import main

    main()
