"""A convolutional variational autoencoder on Fashion-MNIST (chapter "A VAE").

The encoder maps an image to ``(z_mean, z_log_var)``, ``Sampling`` draws
``z = z_mean + exp(z_log_var / 2) * eps``, the decoder maps ``z`` back to pixel
probabilities, and ``VAE.train_step`` adds the reconstruction and KL terms.
"""

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import ops

from fitbook.batches import unpack_images
from fitbook.data import CLASS_NAMES

LATENT_DIM = 2  # two dimensions, so the latent space can be drawn as a plane


@keras.saving.register_keras_serializable(package="fitbook")
class Sampling(keras.layers.Layer):
    """Draw ``z ~ N(z_mean, exp(z_log_var))``, seeded (chapter "A VAE")."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        # State is created once, here. A SeedGenerator made in call() would be a
        # new one per call: eagerly, with a fixed seed, the same draws every time;
        # in fit()'s traced step, an error (tf.function creates variables once).
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        eps = ops.cast(eps, z_mean.dtype)  # float16 under mixed precision
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def build_encoder(latent_dim=LATENT_DIM, seed=None):
    """Image -> ``(z_mean, z_log_var, z)`` (chapter "A VAE")."""
    x = keras.Input(shape=(28, 28, 1), name="image")
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(h)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(x, [z_mean, z_log_var, z], name="encoder")


def build_decoder(latent_dim=LATENT_DIM):
    """``z`` -> pixel probabilities of shape (28, 28, 1) (chapter "A VAE")."""
    z = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(7 * 7 * 64, activation="relu")(z)
    h = keras.layers.Reshape((7, 7, 64))(h)
    for filters in (64, 32):  # 7x7 -> 14x14 -> 28x28
        h = keras.layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", activation="relu"
        )(h)
    x = keras.layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid")(h)
    return keras.Model(z, x, name="decoder")


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, 1)) per example (chapter "A VAE")."""
    z_mean, z_log_var = ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")
    terms = 1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)
    return -0.5 * ops.sum(terms, axis=-1)


def reconstruction_loss(x, x_pred):
    """Binary cross-entropy summed over pixels, per example (chapter "A VAE")."""
    x, x_pred = ops.cast(x, "float32"), ops.cast(x_pred, "float32")  # 784-term sums
    bce = keras.losses.binary_crossentropy(x[..., None], x_pred[..., None])
    return ops.sum(bce, axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package="fitbook")
class VAE(keras.Model):
    """Encoder + decoder trained on reconstruction + KL (chapter "A VAE")."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # No weights of its own and built sub-models: mark it built, so saving
        # and loading restore the optimizer's state too.
        self.built = encoder.built and decoder.built

    @property
    def metrics(self):
        # Listed here so fit() resets them at the start of every epoch.
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, x):
        _, _, z = self.encoder(x)
        return self.decoder(z)

    def train_step(self, data):
        # Unpack: the images are the targets too, labels (if any) are ignored.
        x = unpack_images(data, self)  # sample weights: a clear error
        # Forward under the tape: the loss needs z_mean and z_log_var.
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(x, training=True)
            x_pred = self.decoder(z, training=True)
            reconstruction = ops.mean(reconstruction_loss(x, x_pred))
            kl = ops.mean(kl_divergence(z_mean, z_log_var))
            loss = reconstruction + kl
            scaled_loss = self.optimizer.scale_loss(loss)  # as fit()'s own step
        # Gradients.
        grads = tape.gradient(scaled_loss, self.trainable_weights)
        # Apply: a LossScaleOptimizer divides the gradients by the scale first.
        self.optimizer.apply(grads, self.trainable_weights)
        # Update metrics, weighted by batch size.
        batch_size = ops.shape(x)[0]
        self.loss_tracker.update_state(loss, sample_weight=batch_size)
        self.reconstruction_tracker.update_state(
            reconstruction, sample_weight=batch_size
        )
        self.kl_tracker.update_state(kl, sample_weight=batch_size)
        # Return.
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config):
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


def latent_grid(decoder, n=15, limit=2.5):
    """Decode an ``n`` x ``n`` grid of 2-D latent points (chapter "A VAE").

    Returns ``(image, values)``: a ``(28 n, 28 n)`` array, and the ``n`` latent
    values from ``-limit`` to ``limit`` used along each axis.
    """
    if decoder.input_shape[-1] != 2:
        raise ValueError(
            f"latent_grid draws a 2-D latent space; this decoder takes "
            f"{decoder.input_shape[-1]} dimensions. Build it with latent_dim=2."
        )
    values = np.linspace(-limit, limit, n)
    # Row i is z2 = values[n - 1 - i], so z2 grows upwards like a plot's y axis.
    z = np.array([[z1, z2] for z2 in values[::-1] for z1 in values], dtype="float32")
    digits = decoder.predict(z, batch_size=256, verbose=0)[..., 0]
    image = digits.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(28 * n, 28 * n)
    return image, values


def plot_latent_grid(decoder, n=15, limit=2.5):
    """Show ``latent_grid`` with latent coordinates on the axes (chapter "A VAE")."""
    image, values = latent_grid(decoder, n, limit)
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    half = (values[1] - values[0]) / 2
    extent = (-limit - half, limit + half, -limit - half, limit + half)
    ax.imshow(image, cmap="gray_r", extent=extent, vmin=0.0, vmax=1.0)
    ax.set_xlabel("latent dimension z[0]")
    ax.set_ylabel("latent dimension z[1]")
    ax.set_title("Decoder output over a grid of latent points")
    fig.tight_layout()
    return fig


def plot_latent_means(z_mean, y, class_names=CLASS_NAMES):
    """Scatter 2-D latent means coloured by class (chapter "A VAE")."""
    z_mean = np.asarray(z_mean)
    if z_mean.ndim != 2 or z_mean.shape[1] != 2 or len(z_mean) != len(y):
        raise ValueError(
            f"z_mean must have shape (n, 2) with one label each; got {z_mean.shape} "
            f"and {len(y)} labels."
        )
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap = plt.get_cmap("tab10")
    for index, name in enumerate(class_names):
        chosen = np.asarray(y) == index
        ax.scatter(*z_mean[chosen].T, s=4, color=cmap(index), label=name)
    ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel("z_mean[0]")
    ax.set_ylabel("z_mean[1]")
    ax.set_title("Latent means of test images, by class")
    fig.tight_layout()
    return fig
