"""Tests of fitbook.gan: models, the shared steps, the train_step GAN, the CLI."""

import contextlib
import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook import gan as G
from fitbook import models as M
from fitbook.callbacks import ImageGridCallback, LossHistory
from fitbook.data import IMAGE_SHAPE
from fitbook.plots import plot_losses, smooth
from fitbook.quality import (
    generate,
    load_classifier,
    load_committed_generator,
    make_scorer,
    quality_scores,
    reference_stats,
)
from fitbook.runs import read_run
from fitbook.tools import train_gan

LOSS = keras.losses.BinaryCrossentropy(from_logits=True)


def images(n, seed=0):
    """``n`` random 28x28x1 images in [0, 1]."""
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype("float32")


def weights(model):
    """Copies of a model's weights as NumPy arrays."""
    return [np.array(w) for w in model.get_weights()]


def changed(before, after):
    """True for each weight array that differs between two snapshots."""
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


def test_parameter_counts():
    assert M.build_generator().count_params() == 1_339_905
    assert M.build_discriminator().count_params() == 74_625


def test_generator_makes_images_in_unit_range():
    x = M.build_generator()(np.zeros((3, M.LATENT_DIM), "float32"))
    assert tuple(x.shape) == (3, 28, 28, 1)
    assert 0.0 <= float(keras.ops.min(x)) and float(keras.ops.max(x)) <= 1.0


def test_targets_move_inward_by_label_noise():
    recipe = G.GanRecipe(label_noise=0.1, real_label=0.9)
    y = G.discriminator_targets(2, np.array([[1.0], [0.0], [1.0], [0.5]]), recipe)
    np.testing.assert_allclose(np.ravel(y), [0.9 * 0.9 + 0.1 * 0.1, 0.9, 0.1, 0.05])


def test_keras_label_convention_moves_fake_targets_outward():
    u = np.array([[1.0], [0.5], [1.0], [0.5]], "float32")
    y = G.discriminator_targets(2, u, G.KERAS_LABELS_RECIPE)  # label_noise 0.05
    np.testing.assert_allclose(np.ravel(y), [0.95, 0.975, -0.05, -0.025], atol=1e-7)
    # the Keras example's targets (fake 1, real 0, plus 0.05 u) are 1 minus ours:
    # the same loss for the logit with its sign flipped.
    keras_targets = np.array([0.0, 0.0, 1.0, 1.0]) + 0.05 * np.ravel(u)
    np.testing.assert_allclose(1.0 - np.ravel(y), keras_targets, atol=1e-7)


class Parts:
    """What ``gan_train_step`` needs, with one learning rate per network."""

    def __init__(self, d_rate, g_rate):
        self.generator = M.build_generator()
        self.discriminator = M.build_discriminator()
        self.d_optimizer = keras.optimizers.Adam(d_rate)
        self.g_optimizer = keras.optimizers.Adam(g_rate)
        self.loss_fn, self.recipe = LOSS, G.SEED_RECIPE
        self.seed_generator = keras.random.SeedGenerator(1)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")


@pytest.mark.parametrize("moving", ["discriminator", "generator"])
def test_each_half_of_the_step_moves_only_its_network(moving):
    # A learning rate of 0 makes a network's own update a no-op: what moves
    # then moved through the other network's update.
    parts = Parts(d_rate=1e-3 * (moving == "discriminator"),
                  g_rate=1e-3 * (moving == "generator"))
    g0, d0 = weights(parts.generator), weights(parts.discriminator)
    d_loss, g_loss = G.gan_train_step(parts, (images(8), np.arange(8)))
    assert np.isfinite([float(d_loss), float(g_loss)]).all()
    g_moved, d_moved = changed(g0, weights(parts.generator)), changed(
        d0, weights(parts.discriminator))
    moved, still = (d_moved, g_moved) if moving == "discriminator" else (
        g_moved, d_moved)
    assert all(moved) and not any(still)
    # The trackers hold the step's losses, weighted by the batch size.
    assert float(parts.d_loss_tracker.result()) == pytest.approx(float(d_loss))
    assert float(parts.d_loss_tracker.count) == 8


def test_given_noise_is_the_noise_drawn():
    first, second = Parts(1e-3, 1e-3), Parts(1e-3, 1e-3)
    second.generator.set_weights(first.generator.get_weights())
    second.discriminator.set_weights(first.discriminator.get_weights())
    noise = G.draw_step_noise(keras.random.SeedGenerator(1), 8)
    drawn = G.gan_train_step(first, images(8))
    given = G.gan_train_step(second, images(8), noise=noise)
    np.testing.assert_allclose(np.ravel(drawn), np.ravel(given), rtol=1e-6)


def test_fit_on_images_and_labels_then_evaluate():
    gan = G.build_gan(seed=1, jit_compile=False, precision="float32")
    ds = tf.data.Dataset.from_tensor_slices((images(32), np.arange(32) % 10))
    history = LossHistory()
    fitted = gan.fit(
        ds.batch(8), epochs=2, shuffle=False, verbose=0, callbacks=[history]
    )
    logs = fitted.history
    assert set(logs) == {"d_loss", "g_loss"} and len(logs["d_loss"]) == 2
    assert np.isfinite(logs["d_loss"] + logs["g_loss"]).all()
    assert history.steps == list(range(1, 9))
    # The per-step values average back to what fit() reported for epoch 2.
    g_loss = history.values["g_loss"]
    assert np.mean(g_loss[4:]) == pytest.approx(logs["g_loss"][1], rel=1e-4)
    scores = gan.evaluate(ds.batch(8), verbose=0, return_dict=True)
    assert set(scores) == {"d_loss", "g_loss"}
    assert np.isfinite(list(scores.values())).all()


def test_wrong_image_shape_is_a_clear_error():
    gan = G.build_gan(jit_compile=True, precision="float32")
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\).*x\[\.\.\., None\]"):
        gan.fit(images(16)[..., 0], batch_size=8, epochs=1, verbose=0)


def test_loss_history_recovers_per_step_values_from_running_means():
    history = LossHistory()
    history.on_epoch_begin(0)
    values = [1.0, 3.0, 8.0]
    for k, _ in enumerate(values):
        mean = float(np.mean(values[: k + 1]))
        history.on_train_batch_end(k, {"d_loss": mean, "g_loss": 2 * mean})
    np.testing.assert_allclose(history.values["d_loss"], values)
    np.testing.assert_allclose(history.values["g_loss"], [2 * v for v in values])


def test_loss_history_takes_any_names_and_spans_epochs():
    history = LossHistory(names=("a",))
    values = [[1.0, 3.0, 8.0], [2.0, 4.0]]  # two epochs
    for epoch, epoch_values in enumerate(values):
        history.on_epoch_begin(epoch)
        for k in range(len(epoch_values)):
            history.on_train_batch_end(k, {"a": np.mean(epoch_values[: k + 1])})
    np.testing.assert_allclose(history.values["a"], [1.0, 3.0, 8.0, 2.0, 4.0])
    assert history.steps == [1, 2, 3, 4, 5]


def test_image_grid_callback_keeps_and_saves_grids(tmp_path):
    gan = G.build_gan(jit_compile=False, precision="float32")
    z = keras.random.normal((4, M.LATENT_DIM), seed=0)
    grid = ImageGridCallback(z, every=2, directory=tmp_path, steps_per_epoch=2)
    gan.fit(images(8), batch_size=4, epochs=4, verbose=0, callbacks=[grid])
    assert [when for when, _ in grid.grids] == [4, 8]  # every 2 epochs of 2 steps
    assert grid.grids[0][1].shape == (4, 28, 28, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grid_step_000004.png",
        "grid_step_000008.png",
    ]


def test_smooth_and_its_window_check():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="window"):
        smooth([1, 2], 3)


def test_plot_losses_has_labels_and_rejects_short_runs():
    fig = plot_losses(range(1, 11), np.ones(10), np.ones(10), window=5, title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="at least window=50"):
        plot_losses(range(3), [1] * 3, [1] * 3)


def test_models_round_trip_through_keras_files(tmp_path):
    z = keras.random.normal((2, M.LATENT_DIM), seed=0)
    for model, x in ((M.build_generator(), z), (M.build_discriminator(), images(2))):
        model.save(tmp_path / f"{model.name}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{model.name}.keras")
        np.testing.assert_array_equal(loaded(x), model(x))


def test_resumed_training_matches_uninterrupted_training(tmp_path):
    x = images(24)
    straight = G.build_gan(seed=5, jit_compile=False, precision="float32")
    interrupted = G.build_gan(seed=5, jit_compile=False, precision="float32")
    interrupted.set_weights(straight.get_weights())
    for gan in (straight, interrupted):
        gan.fit(x[:16], batch_size=8, epochs=1, shuffle=False, verbose=0)
    G.make_checkpoint(interrupted, tmp_path).save(2)
    # Other weights and another seed: all of it comes back from the checkpoint.
    resumed = G.build_gan(seed=99, jit_compile=False, precision="float32")
    assert G.make_checkpoint(resumed, tmp_path).restore_latest() == 2
    for gan in (straight, resumed):
        gan.fit(x[16:], batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_command_line_trains_logs_and_resumes(tmp_path, fashion_mnist_dir, capsys):
    argv = ["train", "--out", str(tmp_path), "--steps", "4", "--log-every", "2"]
    argv += ["--grid-every", "1", "--verbose", "0", "--no-jit",
             "--precision", "float32"]
    argv += ["--score-images", "100"]
    train_gan.main(argv)
    with pytest.raises(SystemExit) as refused:
        train_gan.main(argv)  # refuses to overwrite a run
    assert refused.value.code == 2 and "--resume" in capsys.readouterr().err
    train_gan.main([*argv[:4], "6", *argv[5:], "--resume"])
    assert "resumed from step 4" in capsys.readouterr().out
    run = read_run(tmp_path)
    np.testing.assert_array_equal(run["scores"]["step"], [2, 4, 6])
    np.testing.assert_array_equal(run["losses"]["step"], np.arange(1, 7))
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["steps"] == 6 and provenance["recipe"]["beta_1"] == 0.5
    assert keras.saving.load_model(tmp_path / "generator.keras").count_params() == (
        1_339_905
    )


def test_averaged_weights_lends_the_moving_average_then_restores():
    recipe = G.GanRecipe(ema_momentum=0.5)
    gan = G.build_gan(recipe, jit_compile=False, precision="float32")
    with pytest.raises(ValueError, match="use_ema=True"):  # not built yet
        with G.averaged_weights(gan.g_optimizer, gan.generator):
            pass
    gan.fit(images(8), batch_size=8, epochs=1, verbose=0)  # step 1
    first = weights(gan.generator)
    gan.fit(images(8, seed=1), batch_size=8, epochs=1, verbose=0)  # step 2
    own = weights(gan.generator)
    with G.averaged_weights(gan.g_optimizer, gan.generator) as generator:
        average = weights(generator)
    for w1, w2, a in zip(first, own, average):  # momentum 0.5: the mean of both
        np.testing.assert_allclose(a, 0.5 * w1 + 0.5 * w2, rtol=1e-6, atol=1e-7)
    assert all(changed(own, average))  # every weight moved in step 2
    assert not any(changed(own, weights(gan.generator)))  # restored exactly
    no_average = G.build_gan(G.GanRecipe(), jit_compile=False, precision="float32")
    with pytest.raises(ValueError, match="keeps no moving average"):
        with G.averaged_weights(no_average.g_optimizer, no_average.generator):
            pass


def test_committed_generator_scores_as_recorded(fashion_mnist_dir):
    # The recorded final scores of the committed run, from a fresh scoring of
    # the committed generator: the run's scorer (its noise seed, its number of
    # images, the whole test set as reference). Tolerance: 1 % of the Fréchet
    # distance and 0.01 of coverage, for float differences between CPUs.
    generator, provenance = load_committed_generator()
    recorded = provenance["final_scores"]
    prefix = "ema_" if provenance.get("generator_saved") == "moving average" else ""
    scores = make_scorer(provenance.get("score_images", 1000),
                         provenance["seed"])(generator)
    assert scores["frechet"] == pytest.approx(recorded[prefix + "frechet"], rel=0.01)
    assert scores["coverage"] == pytest.approx(recorded[prefix + "coverage"],
                                               abs=0.01)


def test_committed_generator_beats_untrained_one(fashion_mnist_dir):
    from fitbook.data import load_fashion_mnist

    classifier = load_classifier()
    _, (x_test, _) = load_fashion_mnist()
    reference = reference_stats(classifier, x_test[:2000])
    z = keras.random.normal((500, M.LATENT_DIM), seed=0)
    trained, _ = load_committed_generator()
    keras.utils.set_random_seed(0)
    scores = [
        quality_scores(classifier, generate(model, z), reference)
        for model in (trained, M.build_generator())
    ]
    assert scores[0]["frechet"] < 0.5 * scores[1]["frechet"]
    assert scores[0]["coverage"] > scores[1]["coverage"] + 0.2


# --- Every dtype policy, weighted trackers, sample weights (issue 12) ---------


@contextlib.contextmanager
def dtype_policy(name):
    """Set the global dtype policy inside the block, then restore the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.fixture(params=["float32", "mixed_float16", "mixed_bfloat16"])
def policy(request):
    """Run the test under each global dtype policy, then restore the previous one."""
    with dtype_policy(request.param):
        yield request.param


def tiny_networks():
    """A one-layer generator and a small discriminator for 28x28x1 images, with
    the same weights under every policy (they are fast to trace)."""
    keras.utils.set_random_seed(0)
    generator = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(28 * 28, activation="sigmoid"),
            keras.layers.Reshape(IMAGE_SHAPE),
        ],
        name="generator",
    )
    discriminator = keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Conv2D(4, 3, strides=4),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ],
        name="discriminator",
    )
    return generator, discriminator


def tiny_gan(optimizers, seed=0):
    """A compiled GAN (no XLA) with ``tiny_networks`` and the given optimizers."""
    gan = G.GAN(*tiny_networks(), seed=seed)
    gan.compile(*optimizers, LOSS, jit_compile=False)
    return gan


def adams():
    """Two fresh Adam optimizers."""
    return keras.optimizers.Adam(), keras.optimizers.Adam()


def sgds():
    """Two fresh SGD optimizers: their updates grow with the gradients' size."""
    return keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1)


def fit_update_norms(gan, x):
    """Norm of one fit() step's change of each network's weights."""
    nets = (gan.generator, gan.discriminator)
    before = [weights(net) for net in nets]
    gan.fit(x, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return [
        np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights(net), w)))
        for net, w in zip(nets, before)
    ]


@functools.cache
def float32_update_norms():
    """``fit_update_norms`` of a float32 ``tiny_gan`` on ``images(16)``."""
    with dtype_policy("float32"):
        return fit_update_norms(tiny_gan(sgds()), images(16))


@pytest.mark.equivalence
def test_one_step_under_every_policy_trains_and_matches_the_loop(policy):
    from fitbook.gan_loop import GanTrainer

    x = images(16)
    gan = tiny_gan(sgds(), seed=3)
    assert gan.optimizer is None  # no unused default optimizer: it has two
    scaled = policy == "mixed_float16"  # as compile() wraps its optimizer
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    for opt in G.make_optimizers(G.SEED_RECIPE):  # what the loop is given
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer) == scaled
    assert gan.generator.compute_dtype == keras.config.dtype_policy().compute_dtype
    norms = fit_update_norms(gan, x)
    # Unscaled, a mixed_float16 step would be 1/32768 of the float32 one.
    np.testing.assert_allclose(norms, float32_update_norms(), rtol=0.05)
    # The from-scratch loop's step (without XLA, which takes longer to compile
    # than this step; test_gan_loop.py checks the XLA one) takes the same step.
    optimizers = [G.with_loss_scaling(opt) for opt in sgds()]
    trainer = GanTrainer(*tiny_networks(), *optimizers, LOSS, G.SEED_RECIPE, seed=3,
                         jit_compile=False)
    tf.function(trainer.step)(x)
    for a, b in ((gan.generator, trainer.generator),
                 (gan.discriminator, trainer.discriminator)):
        for u, v in zip(weights(a), weights(b)):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_unscaled_optimizer_under_float16_is_a_clear_error():
    from fitbook.gan_loop import GanTrainer

    with dtype_policy("mixed_float16"):
        trainer = GanTrainer(*tiny_networks(), *adams(), LOSS, jit_compile=False)
        with pytest.raises(ValueError, match="float16.*LossScaleOptimizer"):
            trainer.step(images(4))


def test_epoch_means_weight_each_batch_by_its_size():
    x = images(12)
    whole, parts = tiny_gan(adams(), seed=4), tiny_gan(adams(), seed=4)
    logs = whole.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    first = parts.fit(x[:8], shuffle=False, verbose=0).history  # the same steps,
    last = parts.fit(x[8:], shuffle=False, verbose=0).history  # one fit() each
    for name in ("d_loss", "g_loss"):
        expected = (8 * first[name][0] + 4 * last[name][0]) / 12
        assert logs[name][0] == pytest.approx(expected, rel=1e-5)
        assert logs[name][0] != pytest.approx((first[name][0] + last[name][0]) / 2)


def test_sample_weights_are_refused_not_ignored():
    gan = tiny_gan(adams())
    x, y, w = images(8), np.zeros(8), np.ones(8)
    with pytest.raises(ValueError, match="GAN got sample weights.*no sample_weight="):
        gan.fit(x, y, sample_weight=w, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="GAN got sample weights"):
        gan.evaluate(x, y, sample_weight=w, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="GAN got sample weights"):
        gan.fit(x, y, class_weight={0: 1.0}, batch_size=4, verbose=0)
