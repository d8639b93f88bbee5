"""A GAN trained with ``fit()``: models, shared steps, callbacks, command line.

Used by the chapter "A GAN, two ways". The discriminator step and the generator
step are plain functions, so the ``train_step`` GAN here and the from-scratch
loop of :mod:`fitbook.gan_loop` run the same algorithm by construction.

Run ``python -m fitbook.gan train --out DIR`` to train from the command line.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

LATENT_DIM = 128  # length of the generator's noise vector
IMAGE_SHAPE = (28, 28, 1)  # Fashion-MNIST: 28x28 pixels, one channel, in [0, 1]


@dataclasses.dataclass(frozen=True)
class GanRecipe:
    """Optimizer and label settings of GAN training (chapter "A GAN, two ways")."""

    learning_rate: float = 3e-4  # Adam step size, the same for both networks
    beta_1: float = 0.9  # Adam's momentum; Keras' default
    label_noise: float = 0.05  # discriminator targets move up to this far
    real_label: float = 1.0  # discriminator target for real images
    batch_size: int = 64


SEED_RECIPE = GanRecipe()  # the recipe the chapter starts from (it collapses)
FIXED_RECIPE = dataclasses.replace(SEED_RECIPE, beta_1=0.5)  # the one that works


def build_generator(latent_dim=LATENT_DIM):
    """Noise of shape (batch, latent_dim) to 28x28x1 images (chapter "A GAN")."""
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(7 * 7 * 128),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, 128)),
            layers.Conv2DTranspose(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2DTranspose(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(1, 7, padding="same", activation="sigmoid"),
        ],
        name="generator",
    )


def discriminator_trunk():
    """28x28x1 images to 7x7x128 features: the layers the discriminator and the
    WGAN-GP critic share (chapters "A GAN" and "WGAN-GP")."""
    return [
        keras.Input(shape=IMAGE_SHAPE),
        layers.Conv2D(64, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(128, 3, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
    ]


def build_discriminator():
    """28x28x1 images to one logit, "real" when positive (chapter "A GAN")."""
    return keras.Sequential(
        [*discriminator_trunk(), layers.GlobalMaxPooling2D(), layers.Dense(1)],
        name="discriminator",
    )


def make_optimizers(recipe):
    """Two Adam optimizers, discriminator's first, from a ``GanRecipe``."""
    return tuple(
        keras.optimizers.Adam(recipe.learning_rate, beta_1=recipe.beta_1, name=name)
        for name in ("d_optimizer", "g_optimizer")
    )


def check_images(x):
    """Return ``x`` as float32 after checking it is a batch of 28x28x1 images."""
    if tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(
            f"The GAN expects images of shape (batch, 28, 28, 1), got "
            f"{tuple(x.shape)}. Add the channel axis with x[..., None] or "
            "reshape to (-1, 28, 28, 1)."
        )
    return ops.cast(x, "float32")


def draw_step_noise(seed_generator, batch_size, latent_dim=LATENT_DIM):
    """All random draws of one GAN step: two noise batches and label noise."""
    z_d = keras.random.normal((batch_size, latent_dim), seed=seed_generator)
    u = keras.random.uniform((2 * batch_size, 1), seed=seed_generator)
    z_g = keras.random.normal((batch_size, latent_dim), seed=seed_generator)
    return z_d, u, z_g


def discriminator_targets(batch_size, u, recipe):
    """Targets for [real; fake]: real_label then 0, moved inward by label noise."""
    y = ops.concatenate(
        [
            ops.full((batch_size, 1), recipe.real_label),
            ops.zeros((batch_size, 1)),
        ]
    )
    noise = recipe.label_noise * u  # each target moves up to label_noise inward
    return y * (1.0 - noise) + (1.0 - y) * noise


def discriminator_loss(generator, discriminator, loss_fn, x, z, u, recipe):
    """Loss of the discriminator on real images ``x`` and fakes from ``z``."""
    batch_size = ops.shape(x)[0]
    x_fake = generator(z, training=False)
    y_pred = discriminator(ops.concatenate([x, x_fake]), training=True)
    return loss_fn(discriminator_targets(batch_size, u, recipe), y_pred)


def generator_loss(generator, discriminator, loss_fn, z):
    """Loss of the generator: how far the discriminator is from calling G(z) real."""
    y_pred = discriminator(generator(z, training=True), training=False)
    return loss_fn(ops.ones_like(y_pred), y_pred)


def discriminator_step(generator, discriminator, optimizer, loss_fn, x, z, u, recipe):
    """One update of the discriminator's weights only; returns its loss."""
    with tf.GradientTape() as tape:
        loss = discriminator_loss(generator, discriminator, loss_fn, x, z, u, recipe)
    grads = tape.gradient(loss, discriminator.trainable_weights)
    optimizer.apply(grads, discriminator.trainable_weights)
    return loss


def generator_step(generator, discriminator, optimizer, loss_fn, z):
    """One update of the generator's weights only, through a frozen discriminator."""
    with tf.GradientTape() as tape:
        loss = generator_loss(generator, discriminator, loss_fn, z)
    grads = tape.gradient(loss, generator.trainable_weights)  # D gets none
    optimizer.apply(grads, generator.trainable_weights)
    return loss


def gan_step(parts, x):
    """One discriminator step, then one generator step; returns both losses.

    ``parts`` is a ``GAN`` or a ``gan_loop.GanTrainer``: anything holding the two
    networks, their optimizers, the loss, the recipe and a seed generator.
    """
    x = check_images(x)
    z_d, u, z_g = draw_step_noise(parts.seed_generator, ops.shape(x)[0])
    g, d, loss_fn = parts.generator, parts.discriminator, parts.loss_fn
    d_loss = discriminator_step(
        g, d, parts.d_optimizer, loss_fn, x, z_d, u, parts.recipe
    )
    g_loss = generator_step(g, d, parts.g_optimizer, loss_fn, z_g)
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
        self, d_optimizer, g_optimizer, loss_fn, recipe=SEED_RECIPE, jit_compile=True
    ):
        """Two optimizers, one loss; ``recipe`` supplies the label settings."""
        super().compile(jit_compile=jit_compile)  # XLA: about twice as fast on a CPU
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
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
        """One discriminator step, then one generator step, on a batch."""
        # Unpack: labels and sample weights, if the data has them, are ignored.
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        # Forward, gradients and apply: the shared step, for both networks.
        d_loss, g_loss = gan_step(self, x)
        # Update metrics and return their values.
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Both losses on a batch, with no weight updates (for ``evaluate()``)."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = check_images(x)
        z_d, u, z_g = draw_step_noise(self.seed_generator, ops.shape(x)[0])
        g, d, loss_fn = self.generator, self.discriminator, self.loss_fn
        self.d_loss_tracker.update_state(
            discriminator_loss(g, d, loss_fn, x, z_d, u, self.recipe)
        )
        self.g_loss_tracker.update_state(generator_loss(g, d, loss_fn, z_g))
        return {m.name: m.result() for m in self.metrics}


def build_gan(recipe=SEED_RECIPE, seed=0, jit_compile=True):
    """A compiled ``GAN`` with fresh networks and optimizers from ``recipe``.

    ``jit_compile=False`` skips the XLA compilation (seconds per new model): the
    tests use it on tiny runs, where compiling costs more than it saves.
    """
    gan = GAN(build_generator(), build_discriminator(), seed=seed)
    d_optimizer, g_optimizer = make_optimizers(recipe)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    gan.compile(
        d_optimizer, g_optimizer, loss_fn, recipe=recipe, jit_compile=jit_compile
    )
    return gan


def image_dataset(x, batch_size, seed=0, repeat=False):
    """Shuffled batches of images (no labels), dropping the last partial batch."""
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=seed)
    ds = ds.repeat() if repeat else ds
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


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
            import matplotlib.pyplot as plt

            from fitbook.plots import plot_image_grid

            unit = "step" if self.steps_per_epoch else "epoch"
            fig = plot_image_grid(images, title=f"Generated after {unit} {when}")
            self.directory.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.directory / f"grid_{unit}_{when:06d}.png")
            plt.close(fig)


def smooth(values, window):
    """Means of ``window`` consecutive values: a moving average (chapters "A GAN"
    and "WGAN-GP")."""
    values = np.asarray(values, dtype="float64")
    if not 1 <= window <= len(values):
        raise ValueError(f"window must be in 1..{len(values)}, got {window}.")
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_losses(steps, d_loss, g_loss, window=50, title="GAN losses"):
    """Figure of both losses against steps, averaged over ``window`` steps."""
    import matplotlib.pyplot as plt

    if len(steps) < window:
        raise ValueError(f"Need at least window={window} steps, got {len(steps)}.")
    x = np.asarray(steps)[window - 1 :]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in (("discriminator", d_loss), ("generator", g_loss)):
        ax.plot(x, smooth(values, window), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"loss (mean of {window} steps)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig



RECIPES = {"seed": SEED_RECIPE, "fixed": FIXED_RECIPE}
SCORE_COLUMNS = (
    "step", "d_loss", "g_loss", "confidence", "coverage", "frechet", "seconds"
)
LOSS_COLUMNS = ("step", "d_loss", "g_loss")


def read_run(directory):
    """A run's ``scores.csv`` and ``losses.csv`` as dicts of NumPy columns."""
    directory = Path(directory)
    run = {}
    for name in ("scores", "losses"):
        path = directory / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: is {directory} the --out directory of "
                "`python -m fitbook.gan train`?"
            )
        table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
        run[name] = {column: table[column] for column in table.dtype.names}
    return run


def write_csv(path, columns, rows, mode="a"):
    """Append ``rows`` to a CSV file, writing the header if the file is new."""
    new = mode == "w" or not Path(path).is_file()
    with open(path, mode) as f:
        if new:
            f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join(f"{float(v):.6g}" for v in row) + "\n")


def truncate_run(directory, step):
    """Drop rows after ``step`` from a run's CSVs (before resuming from ``step``)."""
    run = read_run(directory)
    for name, columns in (("scores", SCORE_COLUMNS), ("losses", LOSS_COLUMNS)):
        table = run[name]
        keep = table["step"] <= step
        rows = zip(*(table[c][keep] for c in columns))
        write_csv(Path(directory) / f"{name}.csv", columns, rows, mode="w")


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
        write_csv(self.directory / "scores.csv", SCORE_COLUMNS, [row])
        if self.checkpoint is not None:
            self.checkpoint.save(step)


def generate(generator, z, batch_size=250):
    """Images from noise ``z`` as a NumPy array, a batch at a time (chapter "A GAN")."""
    starts = range(0, len(z), batch_size)
    return np.concatenate(
        [ops.convert_to_numpy(generator(z[i : i + batch_size])) for i in starts]
    )


def make_scorer(n=1000, seed=0):
    """Return generator -> quality scores of ``n`` images from fixed noise."""
    from fitbook import quality
    from fitbook.data import load_fashion_mnist

    classifier = quality.load_classifier()
    _, (x_test, _) = load_fashion_mnist()
    reference = quality.reference_stats(classifier, x_test)
    z = keras.random.normal((n, LATENT_DIM), seed=seed)

    def score(generator):
        return quality.quality_scores(classifier, generate(generator, z), reference)

    return score


def build_optimizer_state(gan):
    """Create both optimizers' variables now, so a checkpoint can restore them."""
    gan.d_optimizer.build(gan.discriminator.trainable_weights)
    gan.g_optimizer.build(gan.generator.trainable_weights)


def make_checkpoint(gan, directory):
    """A ``TrainingCheckpoint`` of everything a resumed GAN run needs."""
    from fitbook.checkpoints import TrainingCheckpoint

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


def train(args):
    """The ``train`` command: fit with logs, scores, grids and checkpoints."""
    from fitbook.data import FASHION_MNIST_FILES, load_fashion_mnist
    from fitbook.reproducibility import set_seed

    set_seed(args.seed)
    fields = [f.name for f in dataclasses.fields(GanRecipe)]
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    recipe = dataclasses.replace(RECIPES[args.recipe], **overrides)
    (x_train, _), _ = load_fashion_mnist()
    total = args.steps or args.epochs * (len(x_train) // recipe.batch_size)
    epochs = -(-total // args.log_every)  # fit() epochs of log_every steps
    out = Path(args.out)
    if (out / "scores.csv").is_file() and not args.resume:
        raise SystemExit(f"{out} already holds a run: pass --resume or a new --out.")
    out.mkdir(parents=True, exist_ok=True)
    gan = build_gan(recipe, seed=args.seed, jit_compile=args.jit)
    checkpoint = None if args.no_checkpoint else make_checkpoint(gan, out / "ckpt")
    start = (checkpoint.restore_latest() or 0) if args.resume and checkpoint else 0
    if start:
        truncate_run(out, start)
        print(f"resumed from step {start}")
    history, score = LossHistory(), make_scorer(args.score_images, seed=args.seed)
    z_grid = keras.random.normal((32, LATENT_DIM), seed=args.seed)
    callbacks = [
        history,
        RunLogger(out, args.log_every, history, score, checkpoint),
        ImageGridCallback(z_grid, args.grid_every, out / "grids", args.log_every),
    ]
    gan.fit(
        image_dataset(x_train, recipe.batch_size, seed=args.seed + start, repeat=True),
        epochs=epochs,
        initial_epoch=start // args.log_every,
        steps_per_epoch=args.log_every,
        callbacks=callbacks,
        shuffle=False,
        verbose=args.verbose,
    )
    gan.generator.save(out / "generator.keras")
    gan.discriminator.save(out / "discriminator.keras")
    np.save(out / "samples.npy", np.asarray(gan.generator(z_grid)))
    scores = read_run(out)["scores"]
    provenance = {
        "command": "python -m fitbook.gan " + " ".join(args.argv),
        "recipe": dataclasses.asdict(recipe),
        "steps": epochs * args.log_every,
        "epochs": round(epochs * args.log_every * recipe.batch_size / len(x_train), 3),
        "seed": args.seed,
        "jit_compile": args.jit,
        "train_images_sha256": FASHION_MNIST_FILES[0].sha256,
        "final_scores": {c: float(scores[c][-1]) for c in SCORE_COLUMNS[3:6]},
        "training_seconds": round(float(scores["seconds"][-1]), 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))


def parse_args(argv):
    """Parse ``python -m fitbook.gan train ...`` arguments (chapter "A GAN")."""
    parser = argparse.ArgumentParser(prog="python -m fitbook.gan")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train the GAN with fit()")
    t.add_argument("--out", required=True, help="directory for logs and models")
    t.add_argument("--epochs", type=int, default=1, help="passes over the data")
    t.add_argument("--steps", type=int, help="total steps (overrides --epochs)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="go on from a checkpoint")
    t.add_argument("--recipe", choices=sorted(RECIPES), default="fixed")
    for field in dataclasses.fields(GanRecipe):  # e.g. --beta-1 0.5
        flag = "--" + field.name.replace("_", "-")
        t.add_argument(flag, type=field.type, help=f"override recipe.{field.name}")
    t.add_argument("--log-every", type=int, default=100, help="steps between logs")
    t.add_argument("--grid-every", type=int, default=10, help="logs between grids")
    t.add_argument("--no-checkpoint", action="store_true", help="do not checkpoint")
    t.add_argument("--verbose", type=int, default=1, help="fit() verbosity")
    t.add_argument("--score-images", type=int, default=1000, help="images per score")
    t.add_argument(
        "--jit", action=argparse.BooleanOptionalAction, default=True, help="use XLA"
    )
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv=None):
    """Entry point of ``python -m fitbook.gan`` (chapter "A GAN")."""
    import fitbook  # noqa: F401  (quiet TensorFlow import)

    train(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
