"""Tests of fitbook.gan_loop: the from-scratch loop runs the train_step algorithm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_weights
from fitbook import gan as G
from fitbook import models as M
from fitbook.data import image_dataset
from fitbook.gan_loop import GanTrainer, train_gan_loop


def images(n, seed=0):
    """``n`` random 28x28x1 images in [0, 1]."""
    return np.random.default_rng(seed).random((n, 28, 28, 1)).astype("float32")


def trainer_like(gan, seed):
    """A ``GanTrainer`` with fresh networks holding ``gan``'s current weights,
    compiled with XLA or not as ``gan`` is."""
    g, d = M.build_generator(), M.build_discriminator()
    g.set_weights(gan.generator.get_weights())
    d.set_weights(gan.discriminator.get_weights())
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    return GanTrainer(g, d, *G.make_optimizers(gan.recipe), loss_fn, gan.recipe, seed,
                      jit_compile=gan.jit_compile)


def test_one_step_matches_fit_train_step():
    recipe = G.FIXED_RECIPE
    gan = G.build_gan(recipe, seed=7, jit_compile=True, precision="float32")
    trainer = trainer_like(gan, seed=7)  # same weights, same random draws
    x = images(16)
    before = gan.generator.get_weights()[0]
    logs = gan.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    d_loss, g_loss = trainer.train_step(x)
    assert float(d_loss) == pytest.approx(logs["d_loss"][0], rel=1e-5)
    assert float(g_loss) == pytest.approx(logs["g_loss"][0], rel=1e-5)
    assert_same_weights(gan.generator, trainer.generator, rtol=1e-5, atol=1e-6)
    assert_same_weights(
        gan.discriminator, trainer.discriminator, rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(before, gan.generator.get_weights()[0])  # it did train


class Crash(Exception):
    """Stands for the process dying between two steps."""


def crash_after(batches, count):
    """Yield ``count`` batches of ``batches``, then raise ``Crash``."""
    for i, batch in enumerate(batches):
        if i == count:
            raise Crash(f"crash after {count} batches")
        yield batch


def exact_trainer(gan, seed):
    """``trainer_like`` without XLA: tiny runs compile faster than they train."""
    g, d = M.build_generator(), M.build_discriminator()
    g.set_weights(gan.generator.get_weights())
    d.set_weights(gan.discriminator.get_weights())
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    return GanTrainer(g, d, *G.make_optimizers(gan.recipe), loss_fn, gan.recipe,
                      seed, jit_compile=False)


def test_interrupted_loop_resumes_bit_for_bit(tmp_path):
    data = image_dataset(images(12), 4, seed=1, repeat=True)  # reshuffled
    gan = G.build_gan(seed=3, jit_compile=False, precision="float32")
    straight, first, second = (exact_trainer(gan, seed=3) for _ in range(3))
    history = train_gan_loop(straight, data, 5, tmp_path / "straight", verbose=0)
    assert history["step"] == [1, 2, 3, 4, 5] and np.isfinite(history["d_loss"]).all()
    run = tmp_path / "run"
    with pytest.raises(Crash):  # dies during step 5, after the checkpoint of 4
        train_gan_loop(first, crash_after(data, 4), 5, run, save_every=2, verbose=0)
    newest = run / "ckpt-0000000004.npz"
    newest.write_bytes(newest.read_bytes()[:-10])  # and that checkpoint is damaged
    with pytest.warns(UserWarning, match=f"{newest} is damaged"):
        resumed = train_gan_loop(second, data, 5, run, verbose=0)
    assert resumed["step"] == [3, 4, 5]  # from the checkpoint of step 2
    assert resumed["d_loss"] == history["d_loss"][2:]
    for net in ("generator", "discriminator", "d_optimizer", "g_optimizer"):
        a, b = getattr(straight, net).variables, getattr(second, net).variables
        assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b)), net
    np.testing.assert_array_equal(
        straight.seed_generator.state.numpy(), second.seed_generator.state.numpy()
    )


def test_loop_refuses_a_checkpoint_past_steps(tmp_path):
    trainer = exact_trainer(G.build_gan(jit_compile=False, precision="float32"), seed=0)
    data = tf.data.Dataset.from_tensors(images(4)).repeat()
    train_gan_loop(trainer, data, 2, tmp_path, verbose=0)
    with pytest.raises(ValueError, match="at step 2, past steps=1"):
        train_gan_loop(trainer, data, 1, tmp_path, verbose=0)


def test_loop_accepts_images_with_labels(tmp_path):
    ds = tf.data.Dataset.from_tensor_slices((images(16), np.arange(16)))
    trainer = exact_trainer(G.build_gan(jit_compile=False, precision="float32"), seed=0)
    history = train_gan_loop(trainer, ds.batch(8), 2, tmp_path, verbose=0)
    assert history["step"] == [1, 2]


def test_loop_rejects_bad_steps_and_short_data(tmp_path):
    trainer = exact_trainer(G.build_gan(jit_compile=False, precision="float32"), seed=0)
    with pytest.raises(ValueError, match="positive int"):
        train_gan_loop(trainer, [], 0, tmp_path)
    short = tf.data.Dataset.from_tensors(images(4))
    with pytest.raises(ValueError, match=r"ended after step 1 of 3.*repeat"):
        train_gan_loop(trainer, short, 3, tmp_path, verbose=0)
