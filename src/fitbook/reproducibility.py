"""Seed everything with one call (used at the top of every chapter)."""

import keras
import tensorflow as tf

from fitbook.checks import non_negative_int


def set_seed(seed=42, deterministic=False):
    """Seed Python's ``random``, NumPy and Keras/TensorFlow with ``seed``.

    With ``deterministic=True`` TensorFlow ops are also made deterministic
    (``tf.config.experimental.enable_op_determinism``), which some chapters need
    to reproduce weights bit for bit; it stays on for the rest of the process.
    """
    seed = non_negative_int("seed", seed)
    keras.utils.set_random_seed(seed)  # seeds random, numpy and the backend
    if deterministic:
        tf.config.experimental.enable_op_determinism()
