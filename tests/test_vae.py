"""Tests for fitbook.vae (chapter "A VAE")."""

import functools

import keras
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fitbook.reproducibility import set_seed  # noqa: E402
from fitbook.vae import (  # noqa: E402
    VAE,
    Sampling,
    build_decoder,
    build_encoder,
    kl_divergence,
    latent_grid,
    plot_latent_grid,
    plot_latent_means,
    reconstruction_loss,
)


def blobs(n=32, seed=0):
    """Small synthetic images: one bright rectangle each."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), dtype=np.float32)
    for image, (top, left) in zip(x, rng.integers(2, 14, size=(n, 2))):
        image[top : top + 12, left : left + 8] = 1.0
    return x


def test_kl_matches_the_closed_form_on_known_inputs():
    z_mean = np.array([[0.0, 0.0], [1.0, 2.0]], dtype=np.float32)
    z_log_var = np.array([[0.0, 0.0], [0.0, np.log(4.0)]], dtype=np.float32)
    # KL(N(m, s2) || N(0, 1)) = 0.5 (s2 + m2 - 1 - log s2), summed over dimensions.
    expected = [0.0, 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - np.log(4.0))]
    np.testing.assert_allclose(np.asarray(kl_divergence(z_mean, z_log_var)), expected,
                               rtol=1e-6, atol=1e-7)


def test_reconstruction_loss_is_binary_crossentropy_summed_over_pixels():
    rng = np.random.default_rng(1)
    x = rng.random((3, 28, 28, 1)).astype(np.float32)
    x_pred = rng.uniform(0.05, 0.95, (3, 28, 28, 1)).astype(np.float32)
    expected = -(x * np.log(x_pred) + (1 - x) * np.log(1 - x_pred)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(reconstruction_loss(x, x_pred)), expected,
                               rtol=1e-4)


def test_sampling_has_the_requested_mean_and_variance():
    n = 50_000
    z_mean = np.tile(np.array([[1.0, -2.0]], dtype=np.float32), (n, 1))
    z_log_var = np.tile(np.log(np.array([[0.25, 4.0]], dtype=np.float32)), (n, 1))
    layer = Sampling(seed=3)
    z = np.asarray(layer([z_mean, z_log_var]))
    # Standard errors: sqrt(var / n) < 0.01 for the mean; 5 standard errors allowed.
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.var(axis=0), [0.25, 4.0], rtol=0.05)
    assert not np.array_equal(z, np.asarray(layer([z_mean, z_log_var])))  # fresh draws
    again = np.asarray(Sampling(seed=3)([z_mean, z_log_var]))
    np.testing.assert_array_equal(z, again)  # the same seed repeats them


def test_vae_train_step_lowers_the_loss_and_reports_its_parts():
    set_seed(0)
    vae = VAE(build_encoder(seed=0), build_decoder())
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(blobs(), epochs=6, batch_size=8, verbose=0).history
    assert set(history) == {"loss", "reconstruction", "kl"}
    parts = zip(history["loss"], history["reconstruction"], history["kl"])
    for loss, reconstruction, kl in parts:
        assert loss == pytest.approx(reconstruction + kl, rel=1e-5)
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]


def test_vae_survives_a_keras_file_round_trip(tmp_path):
    vae = VAE(build_encoder(seed=0), build_decoder())
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(blobs(8), epochs=1, verbose=0)
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, VAE)
    x = blobs(4, seed=1)
    np.testing.assert_allclose(
        np.asarray(loaded.encoder(x)[0]), np.asarray(vae.encoder(x)[0]), rtol=1e-6
    )
    z = np.array([[0.5, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(loaded.decoder(z)), np.asarray(vae.decoder(z)), rtol=1e-6
    )
    assert loaded.optimizer.iterations.numpy() == vae.optimizer.iterations.numpy()


def test_latent_grid_tiles_decoded_points_in_plot_orientation():
    decoder = build_decoder()
    image, values = latent_grid(decoder, n=3, limit=1.0)
    assert image.shape == (84, 84)
    np.testing.assert_allclose(values, [-1.0, 0.0, 1.0])
    top_left = decoder(np.array([[-1.0, 1.0]], dtype=np.float32))[0, :, :, 0]
    np.testing.assert_allclose(image[:28, :28], np.asarray(top_left), rtol=1e-5)
    with pytest.raises(ValueError, match="latent_dim=2"):
        latent_grid(build_decoder(latent_dim=3))
    ax = plot_latent_grid(decoder, n=3).axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plot_latent_means_checks_shapes():
    fig = plot_latent_means(np.zeros((10, 2)), np.arange(10))
    assert len(fig.axes[0].collections) == 10
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot_latent_means(np.zeros((10, 3)), np.arange(10))


# --- Every dtype policy, weighted trackers, sample weights (issue 12) ---------


def one_step_update_norm(optimizer):
    """Norm of the weight change of one fit() step of a fresh, seeded VAE."""
    set_seed(0)  # the same weights and draws under every policy
    vae = VAE(build_encoder(seed=0), build_decoder())
    vae.compile(optimizer=optimizer, jit_compile=False)
    before = [np.array(w) for w in vae.get_weights()]
    vae.fit(blobs(8), batch_size=8, epochs=1, shuffle=False, verbose=0)
    return np.sqrt(sum(np.sum((w - b) ** 2) for w, b in zip(vae.get_weights(), before)))


@functools.cache
def float32_update_norm():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return one_step_update_norm(keras.optimizers.SGD(1e-3))
    finally:
        keras.config.set_dtype_policy(previous)


def test_one_step_trains_as_much_under_every_policy(policy):
    optimizer = keras.optimizers.SGD(1e-3)
    if policy == "mixed_float16":
        vae = VAE(build_encoder(), build_decoder())
        vae.compile(optimizer=optimizer)
        assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
        # compile() wraps it in a LossScaleOptimizer with a scale of 2**15, at
        # which this VAE's first steps overflow in float16 and are skipped (the
        # scale halves each time), as in fit()'s own step. At 2**6 it trains at
        # once; the step would be 1/64 as large if the loss were not scaled.
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(1e-3), initial_scale=2.0**6
        )
    norm = one_step_update_norm(optimizer)
    # bfloat16 keeps 8 significant bits: its step differs from float32's by ~16%.
    assert norm == pytest.approx(float32_update_norm(), rel=0.3)


def tiny_vae():
    """A compiled, seeded VAE with one dense layer per output (fast to trace)."""
    set_seed(0)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(x)
    z_mean, z_log_var = keras.layers.Dense(2)(h), keras.layers.Dense(2)(h)
    z = Sampling(seed=0)([z_mean, z_log_var])
    encoder = keras.Model(x, [z_mean, z_log_var, z])
    decoder = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(784, "sigmoid"),
         keras.layers.Reshape((28, 28, 1))]
    )
    vae = VAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    return vae


def test_epoch_means_weight_each_batch_by_its_size():
    x = blobs(12)
    whole, parts = tiny_vae(), tiny_vae()
    logs = whole.fit(x, batch_size=8, shuffle=False, verbose=0).history
    first = parts.fit(x[:8], shuffle=False, verbose=0).history  # the same steps,
    last = parts.fit(x[8:], shuffle=False, verbose=0).history  # one fit() each
    for name in ("loss", "reconstruction", "kl"):
        expected = (8 * first[name][0] + 4 * last[name][0]) / 12
        assert logs[name][0] == pytest.approx(expected, rel=1e-5)
        assert logs[name][0] != pytest.approx((first[name][0] + last[name][0]) / 2)


def test_sample_weights_are_refused_not_ignored():
    vae, x = tiny_vae(), blobs(8)
    with pytest.raises(ValueError, match="VAE got sample weights.*no sample_weight="):
        vae.fit(x, x, sample_weight=np.ones(8), batch_size=4, verbose=0)
