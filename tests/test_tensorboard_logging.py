"""TensorBoard summaries from a custom train_step and a from-scratch loop, read
back from the event files: tags, steps, images, histograms; and the frozen
default step of keras.callbacks.TensorBoard."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook import tensorboard_logging as tbl
from fitbook.data import image_dataset
from fitbook.gan import FIXED_RECIPE, make_optimizers
from fitbook.gan_loop import train_gan_loop
from fitbook.models import build_discriminator, build_generator

STEPS = 4  # 32 images in batches of 8
TAGS = ["loss/discriminator", "loss/generator", "discriminator/last_kernel"]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((8 * STEPS, 28, 28, 1), dtype="float32")


@pytest.fixture(scope="module")
def z_grid():
    return keras.random.normal((8, 128), seed=1)


def parts():
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    return build_generator(), build_discriminator(), make_optimizers(FIXED_RECIPE), loss


def fit_gan(images, z_grid, writer=None, callbacks=(), epochs=1):
    generator, discriminator, optimizers, loss = parts()
    gan = tbl.SummaryGAN(generator, discriminator, z_grid, writer=writer)
    gan.compile(*optimizers, loss, FIXED_RECIPE, jit_compile=False)
    gan.fit(images, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
            callbacks=list(callbacks))
    return gan


@pytest.fixture(scope="module")
def fixed_events(tmp_path_factory, images, z_grid):
    logdir = tmp_path_factory.mktemp("fixed")
    writer = tf.summary.create_file_writer(str(logdir))
    fit_gan(images, z_grid, writer, epochs=2)
    writer.close()
    return tbl.read_events(logdir)


def test_train_step_summaries_carry_the_optimizer_step(fixed_events):
    for tag in TAGS:
        assert tbl.steps_of(fixed_events, tag) == list(range(1, 2 * STEPS + 1))
    assert tbl.steps_of(fixed_events, "generated") == [5]  # grid_every=5


def test_logged_values_read_back(fixed_events):
    losses = [value for _, value in fixed_events["loss/discriminator"]]
    assert all(0.0 < value < 5.0 for value in losses)
    table = fixed_events["discriminator/last_kernel"][0][1]
    assert table.shape == (30, 3)
    assert table[:, 2].sum() == 128  # every weight of the 128x1 kernel, once
    np.testing.assert_array_less(table[:, 0], table[:, 1])
    [grid] = fixed_events["generated"][0][1]
    assert grid.shape == (56, 112, 1) and grid.dtype == np.uint8  # 2 x 4 images


def test_loop_summaries_carry_the_optimizer_step(tmp_path, images, z_grid):
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    generator, discriminator, optimizers, loss = parts()
    trainer = tbl.SummaryGanTrainer(
        generator, discriminator, *optimizers, loss, FIXED_RECIPE,
        jit_compile=False, z_grid=z_grid, writer=writer,
    )
    dataset = image_dataset(images, 8, repeat=True)
    train_gan_loop(trainer, dataset, 3, tmp_path / "ckpt", verbose=0)
    train_gan_loop(trainer, dataset, 6, tmp_path / "ckpt", verbose=0)  # resumed
    writer.close()
    events = tbl.read_events(tmp_path / "logs")
    for tag in TAGS:
        assert tbl.steps_of(events, tag) == [1, 2, 3, 4, 5, 6]
    assert tbl.steps_of(events, "generated") == [5]


def test_keras_callback_freezes_the_default_step(tmp_path, images, z_grid):
    callback = tbl.tensorboard_callback(tmp_path, update_freq=1, write_graph=False)
    fit_gan(images, z_grid, callbacks=[callback])
    events = tbl.read_events(tmp_path)
    assert tbl.steps_of(events, "batch_d_loss") == list(range(1, STEPS + 1))
    for tag in TAGS:  # the step at which train_step was traced, every time
        assert tbl.steps_of(events, tag) == [1] * STEPS
    assert "generated" not in events  # record_if decided at trace: 1 % 5 != 0


def test_keras_callback_with_update_freq_2_records_none(tmp_path, images, z_grid):
    callback = tbl.tensorboard_callback(tmp_path, update_freq=2, write_graph=False)
    fit_gan(images, z_grid, callbacks=[callback])
    events = tbl.read_events(tmp_path)
    assert tbl.steps_of(events, "batch_d_loss") == [2, 4]
    assert not set(TAGS) & set(events)


def test_no_step_at_all_fails(tmp_path, images, z_grid):
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        with pytest.raises(ValueError, match="No step set"):
            fit_gan(images[:8], z_grid)


def test_tile_lays_images_out_row_by_row():
    images = np.arange(6, dtype="float32").reshape(6, 1, 1, 1) * np.ones((1, 2, 3, 1))
    grid = np.asarray(tbl.tile(images, columns=3))
    assert grid.shape == (1, 4, 9, 1)
    assert grid[0, 0, ::3, 0].tolist() == [0, 1, 2]
    assert grid[0, 2, ::3, 0].tolist() == [3, 4, 5]


def test_eager_summaries_round_trip(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        tbl.scalar("a", 2.5, step=7)
        tbl.histogram("h", tf.constant([1.0, 1.0, 3.0]), step=7, buckets=2)
        tbl.image("i", tf.ones((2, 3, 5, 1)), step=8, max_outputs=1)
    events = tbl.read_events(tmp_path)
    assert events["a"] == [(7, 2.5)]
    np.testing.assert_allclose(events["h"][0][1], [[1, 2, 2], [2, 3, 1]])
    [(step, [png])] = events["i"]
    assert step == 8 and png.shape == (3, 5, 1) and png.min() == 255


def test_read_events_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no event files"):
        tbl.read_events(tmp_path)
