"""GAN steps per second: fitbook's train_step GAN vs a plain keras.io-style GAN.

Both train the same two networks on the same Fashion-MNIST batches with fit();
the reference is the classic "GAN overriding train_step" written inline, the way
most tutorials write it. Run: .venv/bin/python benchmarks/gan_steps.py
"""

import argparse

import keras
import tensorflow as tf

import fitbook  # noqa: F401  (quiet TensorFlow import)
from fitbook.data import image_dataset, load_fashion_mnist
from fitbook.gan import SEED_RECIPE, build_gan
from fitbook.models import build_discriminator, build_generator
from fitbook.reproducibility import set_seed
from fitbook.timing import dataset_run, time_runs


class ReferenceGAN(keras.Model):
    """The keras.io GAN, inline: same networks, labels 0 = real, 1 = fake."""

    def __init__(self, latent_dim=128):
        super().__init__()
        self.generator, self.discriminator = build_generator(), build_discriminator()
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = (
            d_optimizer,
            g_optimizer,
            loss_fn,
        )

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        generated_images = self.generator(z)
        combined_images = tf.concat([generated_images, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], 0)
        labels += 0.05 * tf.random.uniform(tf.shape(labels))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(combined_images)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(
            zip(grads, self.discriminator.trainable_weights)
        )
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading_labels = tf.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(z))
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}


def build_reference():
    """A compiled ``ReferenceGAN`` with the seed recipe's optimizers."""
    gan = ReferenceGAN()
    gan.compile(
        keras.optimizers.Adam(SEED_RECIPE.learning_rate),
        keras.optimizers.Adam(SEED_RECIPE.learning_rate),
        keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return gan


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    set_seed(0)
    (x_train, _), _ = load_fashion_mnist()
    # One pipeline for both, without tf.data's autotuning (see image_dataset).
    dataset = image_dataset(x_train[:6400], SEED_RECIPE.batch_size, repeat=True)
    ours, reference = build_gan(), build_reference()  # ours: the tuned choice
    runs = {  # time_runs warms each up, then alternates so load hits both alike
        "fitbook GAN": dataset_run(ours, dataset, args.steps),
        "reference GAN": dataset_run(reference, dataset, args.steps),
    }
    measured = time_runs(runs, args.steps, rounds=args.rounds)
    medians = {
        name: m.median_steps_per_second for name, m in measured.items()
    }
    for name, rate in medians.items():
        print(f"{name:<14} {rate:6.2f} steps/s  (median of {args.rounds} rounds)")
    print(f"jit_compile: fitbook {ours.jit_compile}, reference "
          f"{reference.jit_compile}; precision: fitbook "
          f"{ours.generator.dtype_policy.name}, reference float32")
    ratio = medians["fitbook GAN"] / medians["reference GAN"]
    print(f"ratio fitbook/reference: {ratio:.2f}")


if __name__ == "__main__":
    main()
