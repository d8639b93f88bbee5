"""Seed everything with one call (used at the top of every chapter)."""

import keras
import tensorflow as tf


def set_seed(seed=42, deterministic=False):
    """Seed Python's ``random``, NumPy and Keras/TensorFlow with ``seed``.

    With ``deterministic=True`` TensorFlow ops are also made deterministic
    (``tf.config.experimental.enable_op_determinism``), which some chapters need
    to reproduce weights bit for bit; it stays on for the rest of the process.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    keras.utils.set_random_seed(seed)  # seeds random, numpy and the backend
    if deterministic:
        tf.config.experimental.enable_op_determinism()
