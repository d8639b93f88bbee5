"""Tests of fitbook.wgan_gp: the penalty, the losses, the train_step, the helpers."""

import functools

import keras
import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

from fitbook import models as M
from fitbook import wgan_gp as W
from fitbook.callbacks import LossHistory

matplotlib.use("Agg")


def linear_critic(w, b=0.0, shape=(2, 2, 1)):
    """f(x) = w . flatten(x) + b, whose gradient is ``w`` everywhere."""
    critic = keras.Sequential(
        [keras.Input(shape=shape), layers.Flatten(), layers.Dense(1)]
    )
    critic.layers[-1].set_weights([np.reshape(w, (-1, 1)), np.array([b])])
    return critic


def constant_generator(image, latent_dim=3):
    """A generator whose every output is ``image``: zero kernel, bias = image."""
    generator = keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(image.size),
            layers.Reshape(image.shape),
        ]
    )
    kernel = np.zeros((latent_dim, image.size))
    generator.layers[0].set_weights([kernel, image.ravel()])
    return generator


def tiny_model(critic_steps, seed=0, **compile_kwargs):
    """A compiled WGANGP on 4x4x1 images with small dense networks."""
    generator = keras.Sequential(
        [keras.Input((3,)), layers.Dense(16, "sigmoid"), layers.Reshape((4, 4, 1))]
    )
    critic = keras.Sequential(
        [keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(8, "tanh")]
        + [layers.Dense(1)]
    )
    model = W.WGANGP(generator, critic, seed=seed)
    model.compile(
        keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3),
        critic_steps=critic_steps, jit_compile=False, **compile_kwargs
    )
    return model


def rng_images(n, shape=(4, 4, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


def test_build_critic_is_unnormalized_and_unbounded():
    critic = W.build_critic()
    norms = (layers.BatchNormalization, layers.LayerNormalization)
    assert not any(isinstance(layer, norms) for layer in critic.layers)
    assert critic.layers[-1].activation is keras.activations.linear
    scores = critic(rng_images(3, (28, 28, 1)))
    assert tuple(scores.shape) == (3, 1)


def test_paper_optimizers_follow_algorithm_1():
    c_opt, g_opt = W.paper_optimizers()
    assert c_opt is not g_opt
    for opt in (c_opt, g_opt):
        assert float(opt.learning_rate) == pytest.approx(1e-4)
        assert (opt.beta_1, opt.beta_2) == (0.0, 0.9)


def test_interpolate_puts_one_eps_per_sample():
    x_real, x_fake = np.ones((2, 2, 2, 1), "float32"), np.zeros((2, 2, 2, 1), "float32")
    x_hat = ops.convert_to_numpy(W.interpolate(x_real, x_fake, np.array([0.25, 1.0])))
    np.testing.assert_allclose(x_hat[0], 0.25)
    np.testing.assert_allclose(x_hat[1], 1.0)


def test_interpolate_rejects_bad_shapes():
    x = np.zeros((2, 4), "float32")
    with pytest.raises(ValueError, match="same shape"):
        W.interpolate(x, np.zeros((3, 4), "float32"), np.zeros(2))
    with pytest.raises(ValueError, match="one number"):
        W.interpolate(x, x, np.zeros((2, 1)))


@pytest.mark.parametrize("w", [[0.3, -0.4, 0.0, 0.0], [1.0, 2.0, -2.0, 4.0]])
def test_penalty_of_linear_critic_is_norm_of_weights_minus_one_squared(w):
    critic = linear_critic(w, b=0.7)
    x_real, x_fake = rng_images(5, (2, 2, 1)), rng_images(5, (2, 2, 1), seed=1)
    eps = np.random.default_rng(2).random(5)
    penalty = float(W.gradient_penalty(critic, x_real, x_fake, eps))
    assert penalty == pytest.approx((np.linalg.norm(w) - 1.0) ** 2, rel=1e-5)


def test_penalty_of_quadratic_critic_matches_hand_computed_gradient():
    def critic(x, training=False):  # f(x) = sum(x^2): gradient 2 x
        return ops.sum(ops.square(x), axis=1, keepdims=True)

    x_real = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, -2.0]], "float32")
    x_fake = np.array([[0.0, 0.0], [0.5, -0.5], [1.0, 1.0]], "float32")
    eps = np.array([0.5, 0.2, 0.75], "float32")
    # By hand: x_hat = (0.5, 0), (0.5, -0.3), (0.25, -1.25); the gradient 2 x_hat
    # has norms 1, sqrt(1.36), sqrt(6.5), so (norm - 1)^2 = 0, 0.0276192, 2.4009805.
    x_hat = W.interpolate(x_real, x_fake, eps)
    np.testing.assert_allclose(x_hat, [[0.5, 0.0], [0.5, -0.3], [0.25, -1.25]],
                               rtol=1e-6)
    penalty = float(W.gradient_penalty(critic, x_real, x_fake, eps))
    assert penalty == pytest.approx(0.8095332, rel=1e-5)


def test_penalty_gradient_reaches_critic_weights_through_the_inner_tape():
    w = np.array([1.0, 2.0, -2.0, 4.0])  # norm 5
    critic = linear_critic(w)
    x = rng_images(4, (2, 2, 1))
    with tf.GradientTape() as tape:
        penalty = W.gradient_penalty(critic, x, x[::-1], np.full(4, 0.5))
    kernel, bias = critic.layers[-1].kernel, critic.layers[-1].bias
    d_kernel, d_bias = tape.gradient(penalty, [kernel, bias])
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|; the bias does not change the gradient.
    norm = np.linalg.norm(w)
    expected = 2 * (norm - 1) * w / norm
    np.testing.assert_allclose(np.ravel(d_kernel), expected, rtol=1e-5)
    assert d_bias is None or float(np.abs(d_bias).max()) == 0.0


def test_losses_are_wasserstein_estimates():
    real, fake = np.array([[3.0], [1.0]]), np.array([[0.5], [-0.5]])
    assert float(W.critic_loss(real, fake)) == pytest.approx(0.0 - 2.0)
    assert float(W.generator_loss(fake)) == pytest.approx(0.0)
    assert float(W.generator_loss(real)) == pytest.approx(-2.0)


def test_split_batch_into_equal_parts_in_order():
    x = np.arange(6, dtype="float32").reshape(6, 1)
    parts = W.split_batch(ops.convert_to_tensor(x), 3)
    assert [ops.convert_to_numpy(p).ravel().tolist() for p in parts] == [
        [0.0, 1.0], [2.0, 3.0], [4.0, 5.0]
    ]
    with pytest.raises(ValueError, match="multiple of critic_steps"):
        W.split_batch(ops.convert_to_tensor(x), 4)


def test_critic_step_is_one_sgd_step_on_loss_plus_weighted_penalty():
    w = np.array([1.0, 2.0, -2.0, 4.0])
    fake = np.array([0.1, 0.9, 0.4, 0.2], "float32").reshape(2, 2, 1)
    model = W.WGANGP(constant_generator(fake), linear_critic(w))
    lr, gp_weight = 0.01, 3.0
    model.compile(
        keras.optimizers.SGD(lr), keras.optimizers.SGD(lr),
        critic_steps=1, gp_weight=gp_weight, jit_compile=False,
    )
    x_real = rng_images(4, (2, 2, 1))
    loss, penalty, wasserstein = model.critic_step(ops.convert_to_tensor(x_real))
    real_mean = x_real.reshape(4, -1).mean(axis=0)
    norm = np.linalg.norm(w)
    expected = w @ real_mean - w @ fake.ravel()  # mean real minus mean fake score
    assert float(wasserstein) == pytest.approx(expected, rel=1e-5)
    assert float(penalty) == pytest.approx((norm - 1) ** 2, rel=1e-5)
    assert float(loss) == pytest.approx(
        -float(wasserstein) + gp_weight * (norm - 1) ** 2, rel=1e-5
    )
    grad = fake.ravel() - real_mean + gp_weight * 2 * (norm - 1) * w / norm
    kernel, bias = model.critic.layers[-1].get_weights()
    np.testing.assert_allclose(kernel.ravel(), w - lr * grad, rtol=1e-5)
    assert float(bias[0]) == 0.0
    # The generator is not touched by a critic step.
    assert int(model.generator_optimizer.iterations) == 0


def test_penalty_pulls_critic_gradient_norm_towards_one():
    w = np.array([1.0, 2.0, -2.0, 4.0])  # |grad f| = 5, far from 1
    fake = np.full((2, 2, 1), 0.5, "float32")
    norms = {}
    for gp_weight in (0.0, 10.0):
        model = W.WGANGP(constant_generator(fake), linear_critic(w))
        model.compile(
            keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01),
            critic_steps=1, gp_weight=gp_weight, jit_compile=False,
        )
        for seed in range(5):
            model.critic_step(ops.convert_to_tensor(rng_images(8, (2, 2, 1), seed)))
        norms[gp_weight] = np.linalg.norm(model.critic.layers[-1].get_weights()[0])
    assert abs(norms[10.0] - 1) < 0.5 * abs(np.linalg.norm(w) - 1)
    assert abs(norms[0.0] - 1) > 0.9 * abs(np.linalg.norm(w) - 1)


def test_generator_step_changes_only_the_generator():
    model = tiny_model(critic_steps=1)
    before = [np.array(v) for v in model.critic.get_weights()]
    g_before = [np.array(v) for v in model.generator.get_weights()]
    loss = model.generator_step(4)
    assert np.isfinite(float(loss))
    assert all(np.array_equal(b, a) for b, a in zip(before, model.critic.get_weights()))
    assert not any(
        np.array_equal(b, a) for b, a in zip(g_before, model.generator.get_weights())
    )


@pytest.mark.parametrize("critic_steps", [1, 3])
def test_fit_honours_critic_steps(critic_steps):
    model = tiny_model(critic_steps)
    steps, batch = 4, 2 * critic_steps  # each critic update sees 2 real images
    model.fit(rng_images(steps * batch), batch_size=batch, epochs=1, shuffle=False,
              verbose=0)
    assert int(model.critic_optimizer.iterations) == critic_steps * steps
    assert int(model.generator_optimizer.iterations) == steps
    # Each value is weighted by the 2 samples of its update: a Mean's count is
    # the sum of the weights.
    counts = {m.name: int(m.count) for m in model.metrics}
    assert counts == {
        "critic_loss": 2 * critic_steps * steps,
        "generator_loss": 2 * steps,
        "gradient_penalty": 2 * critic_steps * steps,
        "wasserstein": 2 * critic_steps * steps,
    }


def test_metrics_are_listed_and_reset_each_epoch():
    model = tiny_model(critic_steps=2)
    assert [m.name for m in model.metrics] == list(W.METRIC_NAMES)
    history = model.fit(rng_images(12), batch_size=4, epochs=2, shuffle=False,
                        verbose=0)
    assert set(history.history) == set(W.METRIC_NAMES)
    # reset at the start of epoch 2: 3 steps of 2 critic updates of weight 2
    # (images per update), not 6 steps
    assert int(model.metrics[0].count) == 3 * 2 * 2
    model.reset_metrics()
    assert all(int(m.count) == 0 for m in model.metrics)


def test_wrong_image_shape_gives_clear_error():
    model = tiny_model(critic_steps=1)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 4, 4, 1\)"):
        model.fit(rng_images(4, (4, 4)), batch_size=2, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"critic_steps": 0}, "critic_steps must be a positive int"),
        ({"critic_steps": 2.5}, "critic_steps must be a positive int"),
        ({"critic_steps": True}, "critic_steps must be a positive int"),
        ({"gp_weight": -1.0}, "gp_weight must be a finite, non-negative"),
        ({"gp_weight": float("nan")}, "gp_weight must be a finite, non-negative"),
        ({"gp_weight": "10"}, "gp_weight must be a finite, non-negative"),
    ],
)
def test_compile_rejects_bad_settings(kwargs, match):
    model = W.WGANGP(M.build_generator(latent_dim=4), W.build_critic())
    with pytest.raises(ValueError, match=match):
        model.compile(*W.paper_optimizers(), **kwargs)


def test_compile_rejects_bad_optimizers():
    model = W.WGANGP(M.build_generator(latent_dim=4), W.build_critic())
    opt = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="same object"):
        model.compile(opt, opt)
    with pytest.raises(ValueError, match="critic_optimizer must be"):
        model.compile("adam", opt)


def test_build_wgan_gp_uses_the_gan_generator_and_paper_settings():
    model = W.build_wgan_gp(critic_steps=3, gp_weight=5.0, jit_compile=False)
    assert model.generator.count_params() == M.build_generator().count_params()
    assert (model.critic_steps, model.gp_weight) == (3, 5.0)
    assert model.critic_optimizer.beta_2 == 0.9


def test_plot_wgan_losses_labels_both_panels():
    history = LossHistory(W.METRIC_NAMES)
    history.steps = list(range(1, 21))
    history.values = {name: list(np.linspace(0, 1, 20)) for name in W.METRIC_NAMES}
    fig = W.plot_wgan_losses(history, gp_weight=10.0, window=5)
    left, right = fig.axes
    assert len(left.lines) == 3 and len(left.lines[0].get_xdata()) == 16
    assert right.get_title() == "Wasserstein-1 estimate"
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    matplotlib.pyplot.close(fig)


# --- Every dtype policy, weighted trackers, sample weights (issue 12) ---------


def tiny_sgd_model(critic_steps=2, initial_scale=None):
    """``tiny_model`` with the same weights under every policy, and SGD, whose
    updates grow with the gradients' size; loss-scaled from ``initial_scale``."""
    keras.utils.set_random_seed(0)
    model = tiny_model(critic_steps)
    optimizers = [keras.optimizers.SGD(0.1) for _ in range(2)]
    if initial_scale:
        optimizers = [
            keras.optimizers.LossScaleOptimizer(opt, initial_scale=initial_scale)
            for opt in optimizers
        ]
    model.compile(*optimizers, critic_steps=critic_steps, jit_compile=False)
    return model


def fit_update_norms(model, x):
    """Norm of one fit() step's change of the generator's and critic's weights."""
    nets = (model.generator, model.critic)
    before = [[np.array(w) for w in net.get_weights()] for net in nets]
    model.fit(x, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return [
        np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(net.get_weights(), w)))
        for net, w in zip(nets, before)
    ]


@functools.cache
def float32_update_norms():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return fit_update_norms(tiny_sgd_model(), rng_images(8))
    finally:
        keras.config.set_dtype_policy(previous)


def test_one_step_trains_as_much_under_every_policy(policy):
    model = tiny_sgd_model()
    assert model.optimizer is None  # no unused default optimizer: it has two
    scaled = isinstance(model.critic_optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")  # as compile() wraps its own
    if scaled:
        # At compile()'s initial scale, 2**15, this critic's first steps overflow
        # in float16 and are skipped (the scale halves each time), as in fit()'s
        # own step. At 2**6 they train at once, and 1/64 as much if unscaled.
        model = tiny_sgd_model(initial_scale=2.0**6)
    norms = fit_update_norms(model, rng_images(8))
    # Unscaled, a mixed_float16 step would be 1/32768 of the float32 one.
    np.testing.assert_allclose(norms, float32_update_norms(), rtol=0.05)


def test_epoch_means_weight_each_update_by_its_samples():
    x = rng_images(12)
    whole, parts = tiny_model(2, seed=4), tiny_model(2, seed=4)
    parts.set_weights(whole.get_weights())
    logs = whole.fit(x, batch_size=8, shuffle=False, verbose=0).history
    first = parts.fit(x[:8], shuffle=False, verbose=0).history  # the same steps,
    last = parts.fit(x[8:], shuffle=False, verbose=0).history  # one fit() each
    for name in W.METRIC_NAMES:
        expected = (8 * first[name][0] + 4 * last[name][0]) / 12
        assert logs[name][0] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert logs[name][0] != pytest.approx((first[name][0] + last[name][0]) / 2)


def test_sample_weights_are_refused_not_ignored():
    model, x = tiny_model(1), rng_images(4)
    with pytest.raises(ValueError, match="WGANGP got sample weights.*no sample_w"):
        model.fit(x, np.zeros(4), sample_weight=np.ones(4), verbose=0)
