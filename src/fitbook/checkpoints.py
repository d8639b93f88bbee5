"""Atomic training checkpoints for custom loops (chapter "Training loops from scratch").

A :class:`TrainingCheckpoint` saves the state of any number of named
*trackables* into one ``.npz`` file per step:

- a Keras model or layer (every entry of ``.variables``: weights, non-trainable
  state and the layers' random-seed states);
- a Keras optimizer (``.variables``: iteration count, learning rate, slots);
- a ``keras.random.SeedGenerator`` (its ``state``) or a single ``keras.Variable``;
- a ``numpy.random.Generator`` (its bit generator's state).

Writes are atomic on POSIX systems: the file is written under a temporary name
in the same directory, flushed to disk, then renamed with :func:`os.replace`,
which POSIX makes atomic (Windows does not promise that of a rename). A crash in the
middle of a save leaves at most a ``*.tmp`` file, which :meth:`restore_latest`
ignores, so it always finds the last complete checkpoint. A checkpoint damaged
afterwards (truncated, a flipped byte: the zip's CRC-32 catches it) is skipped
with a :class:`CorruptCheckpointWarning` naming it, and the newest readable one is
restored instead; when none is readable, :class:`CheckpointError` lists them.

Why not ``tf.train.Checkpoint`` and ``CheckpointManager``, which save and
restore Keras 3 models and optimizers too? They never ``fsync`` (a power cut can
leave a renamed but empty checkpoint), a damaged newest checkpoint ends the
restore with a raw error and no fallback, objects under other names are
silently left unrestored, and a NumPy generator is not trackable. This module
does those four things; for sharded, asynchronous or distributed saving of big
models, use TensorFlow's.

Example::

    ckpt = TrainingCheckpoint("ckpts", model=model, optimizer=optimizer)
    step = ckpt.restore_latest() or 0  # None when there is nothing to resume
    ...
    ckpt.save(step)
"""

import io
import json
import os
import re
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

from fitbook.checks import non_negative_int, positive_int

FILE_PATTERN = re.compile(r"^ckpt-(\d+)\.npz$")  # complete checkpoints only
METADATA_KEY = "__metadata__"  # the entry of the .npz holding the JSON metadata


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the objects to restore ("Training loops")."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file cannot be read: truncated or damaged ("Training loops")."""


class CorruptCheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an older one ("Training loops")."""


def trackable_variables(name, trackable):
    """The Keras variables that make up ``trackable``'s state ("Training loops")."""
    if isinstance(trackable, keras.Variable):
        return [trackable]
    if isinstance(trackable, keras.random.SeedGenerator):
        return [trackable.state]
    if hasattr(trackable, "variables") and not isinstance(trackable, np.ndarray):
        return list(trackable.variables)
    raise CheckpointError(
        f"cannot checkpoint {name}={type(trackable).__name__}: expected a Keras "
        "model, layer, optimizer, SeedGenerator, Variable or a "
        "numpy.random.Generator. Wrap other state in a keras.Variable."
    )


def atomic_write(path, data):
    """Write bytes to ``path``: complete or absent, never half ("Training loops")."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same directory
    try:
        with open(tmp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())  # the bytes are on disk before the rename
        # A rename within one directory: atomic on POSIX file systems. Windows
        # documents no such guarantee for os.replace (MoveFileEx).
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory):
    """Flush a rename to disk where the OS allows it (chapter "Training loops")."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TrainingCheckpoint:
    """Save and resume a training run's state atomically (chapter "Training loops").

    ``directory`` is created if needed; ``max_to_keep`` newest checkpoints are
    kept (``None`` keeps all); every keyword argument is a named trackable (see
    the module docstring). The same names must be used to restore.
    """

    def __init__(self, directory, max_to_keep=3, **trackables):
        if not trackables:
            raise CheckpointError(
                "nothing to checkpoint: pass the objects as keyword arguments, "
                "e.g. TrainingCheckpoint(directory, model=model, optimizer=opt)."
            )
        max_to_keep = positive_int("max_to_keep", max_to_keep, allow_none=True)
        for name, trackable in trackables.items():
            if not isinstance(trackable, np.random.Generator):
                trackable_variables(name, trackable)  # fail now, not at save time
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_to_keep = max_to_keep
        self.trackables = trackables

    def checkpoints(self):
        """Return ``[(step, path), ...]`` of complete checkpoints, oldest first."""
        found = []
        for path in self.directory.iterdir():
            match = FILE_PATTERN.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def save(self, step):
        """Write every trackable's state as checkpoint ``step``; return its path."""
        step = non_negative_int("step", step)
        arrays, metadata = {}, {"step": step, "trackables": {}}
        for name, trackable in self.trackables.items():
            if isinstance(trackable, np.random.Generator):
                state = trackable.bit_generator.state
                metadata["trackables"][name] = {"numpy_generator": state}
                continue
            variables = trackable_variables(name, trackable)
            metadata["trackables"][name] = {"paths": [v.path for v in variables]}
            for i, variable in enumerate(variables):
                arrays[f"{name}/{i}"] = variable.numpy()
        arrays[METADATA_KEY] = np.array(json.dumps(metadata))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path = self.directory / f"ckpt-{int(step):010d}.npz"
        atomic_write(path, buffer.getvalue())
        self.prune()
        return path

    def prune(self):
        """Delete the oldest complete checkpoints beyond ``max_to_keep``."""
        if self.max_to_keep is None:
            return
        for _, path in self.checkpoints()[: -self.max_to_keep]:
            path.unlink(missing_ok=True)

    def restore_latest(self):
        """Restore the newest readable checkpoint; return its step, or None if none.

        A damaged checkpoint is skipped with a warning naming it; if every one is
        damaged, ``CheckpointError`` lists them.
        """
        damaged = []
        for _, path in reversed(self.checkpoints()):
            try:
                return self.restore(path)
            except CorruptCheckpointError as err:
                damaged.append(str(err))
                warnings.warn(
                    f"{err}; trying the previous checkpoint.",
                    CorruptCheckpointWarning,
                    stacklevel=2,
                )
        if damaged:
            raise CheckpointError(
                f"no readable checkpoint in {self.directory}: " + "; ".join(damaged)
            )
        return None

    def read(self, path):
        """``(arrays, metadata, step)`` of checkpoint file ``path``.

        Raises ``CorruptCheckpointError`` if the file cannot be read whole.
        """
        try:
            with open(path, "rb") as stream:  # closed even if np.load fails
                with np.load(stream, allow_pickle=False) as stored:
                    arrays = {key: stored[key] for key in stored.files}
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
            step = int(metadata["step"])
            for name, entry in metadata["trackables"].items():
                expected = {f"{name}/{i}" for i in range(len(entry.get("paths", [])))}
                if expected - set(arrays):
                    raise KeyError(f"{name}'s arrays are missing")
        except (OSError, EOFError, ValueError, KeyError, TypeError,
                zipfile.BadZipFile) as err:  # truncated, bad CRC-32, bad JSON...
            raise CorruptCheckpointError(
                f"checkpoint {path} is damaged ({type(err).__name__}: {err})"
            ) from err
        return arrays, metadata, step

    def restore(self, path):
        """Restore every trackable from checkpoint file ``path``; return its step."""
        arrays, metadata, step = self.read(path)
        saved, ours = set(metadata["trackables"]), set(self.trackables)
        if saved != ours:
            raise CheckpointError(
                f"{path} holds {sorted(saved)} but this TrainingCheckpoint has "
                f"{sorted(ours)}; create it with the same keyword names."
            )
        assignments = []  # check everything first, so a mismatch changes nothing
        for name, trackable in self.trackables.items():
            if isinstance(trackable, np.random.Generator):
                continue
            variables = trackable_variables(name, trackable)
            if "paths" not in metadata["trackables"][name]:
                raise CheckpointError(
                    f"{path}: {name} was saved as a numpy Generator, it is a "
                    f"{type(trackable).__name__} now; use the same objects."
                )
            count = len(metadata["trackables"][name]["paths"])
            if len(variables) != count:
                raise CheckpointError(
                    f"{path}: {name} was saved with {count} variables, it has "
                    f"{len(variables)} now. Build it first (call the model once; "
                    "optimizer.build(model.trainable_variables)) with the same "
                    "architecture."
                )
            for i, variable in enumerate(variables):
                value = arrays[f"{name}/{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(
                        f"{path}: {name} variable {variable.path} has shape "
                        f"{tuple(variable.shape)}, the checkpoint {value.shape}."
                    )
                assignments.append((variable, value))
        for variable, value in assignments:
            variable.assign(value)
        for name, trackable in self.trackables.items():
            if isinstance(trackable, np.random.Generator):
                state = metadata["trackables"][name]["numpy_generator"]
                trackable.bit_generator.state = state
        return step
