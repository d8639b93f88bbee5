"""TrainingCheckpoint: round trip, pruning, atomic writes, clear errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_weights
from fitbook import checkpoints
from fitbook.checkpoints import CheckpointError, TrainingCheckpoint


def trained_state(seed=0):
    """A tiny model with Dropout, an Adam optimizer after one step, RNG states."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dropout(0.5)]
    )
    optimizer = keras.optimizers.Adam(0.01)
    x = np.ones((2, 3), "float32")
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    seeds = keras.random.SeedGenerator(7)
    keras.random.normal((1,), seed=seeds)  # advance the state once
    return {
        "model": model,
        "optimizer": optimizer,
        "seeds": seeds,
        "data_rng": np.random.default_rng(3),
        "counter": keras.Variable(5, dtype="int64"),
    }


def snapshot(state):
    """Plain numpy copies of every value in ``state``, to compare later."""
    values = []
    for name, obj in state.items():
        if isinstance(obj, np.random.Generator):
            values.append(obj.random(3))  # consumes: compare on fresh copies only
        else:
            for v in checkpoints.trackable_variables(name, obj):
                values.append(v.numpy().copy())
    return values


def scramble(state):
    """Overwrite every variable and advance the numpy generator."""
    for name, obj in state.items():
        if isinstance(obj, np.random.Generator):
            obj.random(10)
            continue
        for v in checkpoints.trackable_variables(name, obj):
            v.assign(np.ones(v.shape, v.dtype))


def test_round_trip_restores_every_kind_of_trackable(tmp_path):
    state = trained_state()
    ckpt = TrainingCheckpoint(tmp_path, **state)
    path = ckpt.save(12)
    assert path.name == "ckpt-0000000012.npz"
    expected = snapshot(trained_state())  # an identical run, untouched
    scramble(state)
    assert ckpt.restore_latest() == 12
    assert_same_weights(snapshot(state), expected)


def test_restore_into_fresh_objects_of_the_same_architecture(tmp_path):
    TrainingCheckpoint(tmp_path, **trained_state(seed=0)).save(1)
    fresh = trained_state(seed=99)  # different values, same structure
    assert TrainingCheckpoint(tmp_path, **fresh).restore_latest() == 1
    assert_same_weights(snapshot(fresh), snapshot(trained_state(seed=0)))


def test_restore_latest_is_none_without_checkpoints(tmp_path):
    ckpt = TrainingCheckpoint(tmp_path / "new", counter=keras.Variable(1.0))
    assert (tmp_path / "new").is_dir()
    assert ckpt.restore_latest() is None


def test_keeps_only_the_newest(tmp_path):
    counter = keras.Variable(0.0)
    ckpt = TrainingCheckpoint(tmp_path, max_to_keep=2, counter=counter)
    for step in (1, 2, 3):
        counter.assign(float(step))
        ckpt.save(step)
    assert [step for step, _ in ckpt.checkpoints()] == [2, 3]
    counter.assign(0.0)
    assert ckpt.restore_latest() == 3 and float(counter.value) == 3.0


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    counter = keras.Variable(1.0)
    ckpt = TrainingCheckpoint(tmp_path, counter=counter)
    ckpt.save(1)

    def crash(fd):  # the bytes were written, the rename has not happened yet
        raise OSError("disk gone during fsync")

    monkeypatch.setattr(checkpoints.os, "fsync", crash)
    counter.assign(2.0)
    with pytest.raises(OSError, match="disk gone"):
        ckpt.save(2)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt-0000000001.npz"]  # no debris
    counter.assign(99.0)
    assert ckpt.restore_latest() == 1 and float(counter.value) == 1.0


def test_leftover_temporary_file_of_a_killed_process_is_ignored(tmp_path):
    counter = keras.Variable(1.0)
    ckpt = TrainingCheckpoint(tmp_path, counter=counter)
    ckpt.save(1)
    # What a process killed mid-write leaves behind: a truncated temporary file.
    (tmp_path / ".ckpt-0000000002.npz.4242.tmp").write_bytes(b"PK\x03\x04trunc")
    counter.assign(5.0)
    assert ckpt.restore_latest() == 1 and float(counter.value) == 1.0


def test_unbuilt_optimizer_gets_a_clear_error(tmp_path):
    state = trained_state()
    TrainingCheckpoint(tmp_path, optimizer=state["optimizer"]).save(1)
    fresh = TrainingCheckpoint(tmp_path, optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(CheckpointError, match="optimizer.build"):
        fresh.restore_latest()


def test_shape_mismatch_changes_nothing(tmp_path):
    small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    TrainingCheckpoint(tmp_path, model=small).save(1)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    before = snapshot({"model": other})
    with pytest.raises(CheckpointError, match="shape"):
        TrainingCheckpoint(tmp_path, model=other).restore_latest()
    assert_same_weights(snapshot({"model": other}), before)


def test_names_must_match(tmp_path):
    TrainingCheckpoint(tmp_path, a=keras.Variable(1.0)).save(1)
    with pytest.raises(CheckpointError, match="same keyword names"):
        TrainingCheckpoint(tmp_path, b=keras.Variable(1.0)).restore_latest()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({}, CheckpointError, "nothing to checkpoint"),
        ({"thing": [1, 2]}, CheckpointError, "cannot checkpoint thing=list"),
        ({"max_to_keep": 0, "v": None}, ValueError, "max_to_keep"),
    ],
)
def test_bad_arguments_are_explained(tmp_path, kwargs, error, match):
    if kwargs.get("v", 0) is None:
        kwargs["v"] = keras.Variable(1.0)
    with pytest.raises(error, match=match):
        TrainingCheckpoint(tmp_path, **kwargs)


@pytest.mark.parametrize("step", [-1, 1.5, True])
def test_bad_step_is_explained(tmp_path, step):
    ckpt = TrainingCheckpoint(tmp_path, v=keras.Variable(1.0))
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        ckpt.save(step)


def three_checkpoints(tmp_path):
    """A checkpoint of ``counter`` at steps 1, 2 and 3 (counter == step)."""
    counter = keras.Variable(0.0)
    ckpt = TrainingCheckpoint(tmp_path, counter=counter)
    for step in (1, 2, 3):
        counter.assign(float(step))
        ckpt.save(step)
    counter.assign(-1.0)
    return ckpt, counter


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # one flipped byte in the stored array: the zip's CRC-32 catches it
        value = np.float32(3.0).tobytes()
        at = data.rindex(value)
        path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])


@pytest.mark.parametrize("how", ["truncated", "empty", "flipped byte"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, how):
    ckpt, counter = three_checkpoints(tmp_path)
    newest = ckpt.checkpoints()[-1][1]
    damage(newest, how)
    with pytest.warns(checkpoints.CorruptCheckpointWarning) as record:
        assert ckpt.restore_latest() == 2
    assert float(counter.value) == 2.0
    [warning] = record
    assert str(newest) in str(warning.message) and "damaged" in str(warning.message)


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    ckpt, counter = three_checkpoints(tmp_path)
    for _, path in ckpt.checkpoints():
        damage(path, "truncated")
    with pytest.warns(checkpoints.CorruptCheckpointWarning):
        with pytest.raises(CheckpointError, match="no readable checkpoint") as err:
            ckpt.restore_latest()
    assert all(str(path) in str(err.value) for _, path in ckpt.checkpoints())
    assert float(counter.value) == -1.0  # nothing was restored


def test_mismatch_is_not_mistaken_for_damage(tmp_path):
    TrainingCheckpoint(tmp_path, a=keras.Variable(1.0)).save(1)
    TrainingCheckpoint(tmp_path, a=keras.Variable(2.0)).save(2)
    with pytest.raises(CheckpointError, match="same keyword names"):
        TrainingCheckpoint(tmp_path, b=keras.Variable(1.0)).restore_latest()
