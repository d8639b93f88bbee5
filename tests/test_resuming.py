"""Tests for fitbook.resuming: fit() resumed after a kill, a GAN saved whole."""

import shutil

import keras
import numpy as np
import pytest

from fitbook import resuming as r
from fitbook.gan import build_gan, make_checkpoint


@pytest.fixture(scope="module")
def data():
    return r.toy_data()


@pytest.fixture(scope="module")
def straight(data):
    """Weights and optimizer variables of uninterrupted runs, by method."""
    x, y = data
    model = r.make_model("builtin")
    model.fit(x, y, batch_size=r.BATCH_SIZE, epochs=r.EPOCHS, shuffle=False, verbose=0)
    shuffled = r.make_model("builtin")
    shuffled.fit(r.batches(x, y), epochs=1, shuffle=False, verbose=0)
    return {"backup": r.weights_of(model), "checkpoint": r.weights_of(shuffled)}


def interrupted_backup(tmp_path, x, y, save_freq, at, kind="builtin"):
    model = r.make_model(kind)
    with pytest.raises(r.Interrupted):
        r.fit_with_backup(model, x, y, tmp_path, save_freq, [r.Interrupt(at, "raise")])
    return tmp_path


@pytest.mark.parametrize("kind", ["builtin", "custom"])
def test_backup_per_epoch_resumes_exactly(tmp_path, data, straight, kind):
    x, y = data
    backup = interrupted_backup(tmp_path / "b", x, y, "epoch", 20, kind)
    spare = shutil.copytree(backup, tmp_path / "spare")  # the resume deletes it
    model = r.make_model(kind)
    assert r.fit_with_backup(model, x, y, backup, "epoch") == [2]
    got = r.weights_of(model)
    if kind == "builtin":
        for part in ("weights", "optimizer"):
            assert r.max_difference(got[part], straight["backup"][part]) == 0.0
    assert int(model.optimizer.iterations) == r.EPOCHS * r.STEPS_PER_EPOCH
    # The check has teeth: without the optimizer's state the weights differ.
    forgetful = r.make_model(kind)
    r.fit_with_backup(forgetful, x, y, spare, "epoch", [r.ForgetOptimizerState()])
    assert r.max_difference(r.weights_of(forgetful)["weights"], got["weights"]) > 1e-3


def test_backup_mid_epoch_repeats_the_epochs_first_batches(tmp_path, data, straight):
    x, y = data
    backup = interrupted_backup(tmp_path, x, y, 4, 12)  # epoch 1, after batch 3
    model = r.make_model("builtin")
    assert r.fit_with_backup(model, x, y, backup, 4) == [1, 2]
    assert int(model.optimizer.iterations) == r.EPOCHS * r.STEPS_PER_EPOCH + 4
    got = r.weights_of(model)["weights"]
    assert r.max_difference(got, straight["backup"]["weights"]) > 1e-4


def test_training_checkpoint_resumes_shuffled_fit_exactly(tmp_path, data, straight):
    x, y = data
    with pytest.raises(r.Interrupted):
        r.fit_with_checkpoint(
            r.make_model(), x, y, tmp_path, 4, r.Interrupt(12, "raise")
        )
    model = r.make_model()
    assert r.fit_with_checkpoint(model, x, y, tmp_path, 4) == 12
    got = r.weights_of(model)
    for part in ("weights", "optimizer"):
        assert r.max_difference(got[part], straight["checkpoint"][part]) == 0.0


def test_sigkilled_subprocess_resumes(tmp_path, data, straight):
    x, y = data
    r.run_killed("backup", "builtin", tmp_path, "epoch", 20, timeout=60)
    assert (tmp_path / "latest.weights.h5").exists()
    model = r.make_model("builtin")
    assert r.fit_with_backup(model, x, y, tmp_path, "epoch") == [2]
    got = r.weights_of(model)["weights"]
    assert r.max_difference(got, straight["backup"]["weights"]) < 1e-6


def gan_images():
    return np.random.default_rng(0).random((8, 28, 28, 1), dtype="float32")


def train_gan(gan, start, steps):
    return r.train_gan(gan, gan_images(), start, steps)


def test_plain_gan_cannot_be_saved_as_keras(tmp_path):
    with pytest.raises(NotImplementedError, match="get_config"):
        build_gan(jit_compile=False, precision="float32").save(tmp_path / "gan.keras")


def test_reloaded_keras_gan_continues_exactly(tmp_path):
    gan = train_gan(r.build_savable_gan(), 0, 1)
    gan.save(tmp_path / "gan.keras")
    expected = r.gan_state(train_gan(gan, 1, 1))
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    assert type(loaded) is r.SavableGAN
    same = r.same_state(expected, r.gan_state(train_gan(loaded, 1, 1)))
    assert all(same.values()), same


def test_keras_files_leave_out_the_noise_state_by_default(tmp_path):
    gan = r.build_savable_gan(r.NoNoiseStateGAN)
    gan.seed_generator.next()  # the state moves with every draw
    gan.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    same = r.same_state(r.gan_state(gan), r.gan_state(loaded))
    assert not same["seed_generator"]
    assert same["generator"] and same["d_optimizer"] and same["g_optimizer"]


def test_gan_checkpoint_continues_exactly(tmp_path):
    gan = train_gan(build_gan(jit_compile=False, precision="float32"), 0, 1)
    make_checkpoint(gan, tmp_path).save(1)
    expected = r.gan_state(train_gan(gan, 1, 1))
    fresh = build_gan(seed=1, jit_compile=False, precision="float32")
    assert make_checkpoint(fresh, tmp_path).restore_latest() == 1
    same = r.same_state(expected, r.gan_state(train_gan(fresh, 1, 1)))
    assert all(same.values()), same


def test_tf_checkpoint_of_a_gan_continues_exactly(tmp_path):
    gan = train_gan(build_gan(jit_compile=False, precision="float32"), 0, 1)
    path = r.tf_checkpoint(gan).save(tmp_path / "ckpt")
    expected = r.gan_state(train_gan(gan, 1, 1))
    fresh = build_gan(seed=1, jit_compile=False, precision="float32")
    r.tf_checkpoint(fresh).restore(path).assert_consumed()
    same = r.same_state(expected, r.gan_state(train_gan(fresh, 1, 1)))
    assert all(same.values()), same
