"""A Transformer encoder with the functional API (chapter "The functional API").

Fashion-MNIST read as a sequence of 28 rows of 28 pixels: ``RowPositions`` adds
a learned position vector to each row, ``encoder_block`` is a functional
sub-model (multi-head self-attention and a feed-forward part, each with a
residual connection and layer normalization) that ``row_classifier`` reuses,
and ``SmoothedCrossEntropy`` is a custom loss object passed to ``compile()``.
``draw_model`` wraps ``keras.utils.plot_model`` with a clear error when
Graphviz or pydot is missing.
"""

import importlib.util
import shutil
from pathlib import Path

import keras
import numpy as np
from keras import ops

from fitbook.checks import positive_int

ROWS, PIXELS = 28, 28  # a Fashion-MNIST image as a sequence: 28 rows of 28 pixels


def as_rows(x):
    """Images ``(n, 28, 28[, 1])`` -> float32 sequences ``(n, 28, 28)`` of rows."""
    x = np.asarray(x, dtype="float32")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(
            f"x must hold images of shape (n, rows, pixels) or (n, rows, pixels, 1), "
            f"got shape {x.shape}."
        )
    return x


@keras.saving.register_keras_serializable(package="fitbook")
class RowPositions(keras.layers.Layer):
    """Adds a learned vector per position to a ``(batch, steps, dim)`` input."""

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]), initializer="zeros", name="positions"
        )

    def call(self, x):
        return x + self.positions  # broadcast over the batch axis


def encoder_block(steps, dim, num_heads=2, ff_dim=64, dropout=0.1, name="encoder"):
    """One Transformer encoder block as a functional ``keras.Model``.

    Inputs: ``x`` of shape ``(batch, steps, dim)`` and ``mask`` of shape
    ``(batch, steps)``, 1.0 for a real step and 0.0 for padding. Output: the same
    shape as ``x``. Padding steps are never attended to.
    """
    for arg, value in [("steps", steps), ("dim", dim), ("num_heads", num_heads),
                       ("ff_dim", ff_dim)]:
        positive_int(arg, value)
    if dim % num_heads:
        raise ValueError(
            f"dim ({dim}) must be a multiple of num_heads ({num_heads}): each head "
            "gets dim // num_heads features."
        )
    x = keras.Input((steps, dim), name="x")
    mask = keras.Input((steps,), name="mask")
    # (batch, 1, steps): every query may attend to the real steps only.
    attention_mask = ops.expand_dims(ops.cast(mask, "bool"), 1)
    attended = keras.layers.MultiHeadAttention(
        num_heads, key_dim=dim // num_heads, dropout=dropout, name="attention"
    )(x, x, attention_mask=attention_mask)
    h = keras.layers.Add(name="residual_1")([x, attended])
    h = keras.layers.LayerNormalization(name="norm_1")(h)
    # Dense on a rank-3 tensor acts on the last axis: the same weights per step.
    f = keras.layers.Dense(ff_dim, activation="relu", name="ff_in")(h)
    f = keras.layers.Dense(dim, name="ff_out")(f)
    f = keras.layers.Dropout(dropout, name="ff_dropout")(f)
    h = keras.layers.Add(name="residual_2")([h, f])
    out = keras.layers.LayerNormalization(name="norm_2")(h)
    return keras.Model({"x": x, "mask": mask}, out, name=name)


@keras.saving.register_keras_serializable(package="fitbook")
class MaskedMean(keras.layers.Layer):
    """Mean over the steps whose mask is 1: ``(batch, steps, d)`` -> ``(batch, d)``."""

    def call(self, h, mask):
        weights = ops.expand_dims(ops.cast(mask, h.dtype), -1)
        total = ops.sum(h * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)


def row_classifier(dim=32, num_heads=2, ff_dim=64, depth=2, num_classes=10,
                   dropout=0.1, encoder=None):
    """Rows in, class logits out; the same ``encoder`` block applied ``depth`` times.

    Inputs: ``{"rows": (batch, 28, 28), "mask": (batch, 28)}``. Pass ``encoder``
    (from ``encoder_block``) to share one block, and its weights, with other models.
    """
    positive_int("depth", depth)
    encoder = encoder or encoder_block(ROWS, dim, num_heads, ff_dim, dropout)
    rows = keras.Input((ROWS, PIXELS), name="rows")
    mask = keras.Input((ROWS,), name="mask")
    h = keras.layers.Dense(dim, name="embed")(rows)  # 28 pixels -> dim, per row
    h = RowPositions(name="positions")(h)
    for _ in range(depth):  # one block, called depth times: its weights are shared
        h = encoder({"x": h, "mask": mask})
    pooled = MaskedMean(name="masked_mean")(h, mask)
    logits = keras.layers.Dense(num_classes, name="logits")(pooled)
    return keras.Model({"rows": rows, "mask": mask}, logits, name="row_classifier")


def full_mask(n, steps=ROWS):
    """A mask of ones: every step of every sequence is real."""
    return np.ones((n, steps), dtype="float32")


@keras.saving.register_keras_serializable(package="fitbook")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy from logits with label smoothing, as a ``Loss`` object.

    The target puts ``1 - smoothing`` on the true class and spreads ``smoothing``
    evenly over all classes; the loss is the cross-entropy of the softmax of the
    logits against that target.
    """

    def __init__(self, smoothing=0.1, name="smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(
                f"smoothing must be in [0, 1), got {smoothing!r}: it is the share "
                "of the target spread over all classes."
            )
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        # Loss.__call__ casts, applies sample weights and reduces over the batch;
        # call returns one loss per sample.
        num_classes = ops.shape(y_pred)[-1]
        labels = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"),
                             num_classes, dtype=y_pred.dtype)
        target = labels * (1.0 - self.smoothing) + self.smoothing / num_classes
        log_probs = ops.log_softmax(y_pred, axis=-1)
        return -ops.sum(target * log_probs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


def smoothed_crossentropy_reference(y_true, logits, smoothing):
    """``SmoothedCrossEntropy``'s mean over a batch, in float64 NumPy (for tests)."""
    logits = np.asarray(logits, dtype="float64")
    labels = np.asarray(y_true).reshape(-1).astype(int)
    k = logits.shape[-1]
    target = np.full(logits.shape, smoothing / k)
    target[np.arange(len(labels)), labels] += 1.0 - smoothing
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-(target * log_probs).sum(axis=-1).mean())


def graphviz_missing():
    """What ``keras.utils.plot_model`` lacks on this machine, or ``None``."""
    if importlib.util.find_spec("pydot") is None:
        return "the Python package pydot (pip install pydot)"
    if shutil.which("dot") is None:
        return "Graphviz's `dot` program (Debian: apt-get install graphviz)"
    return None


def draw_model(model, path, **options):
    """``keras.utils.plot_model`` into ``path``, or a clear error if it cannot draw.

    In a notebook, ``plot_model`` only prints a message when Graphviz or pydot is
    missing; this raises instead. Returns the ``Path`` of the image.
    """
    missing = graphviz_missing()
    if missing:
        raise RuntimeError(
            f"keras.utils.plot_model needs {missing}; install it and retry "
            "(`make setup` installs both)."
        )
    path = Path(path)
    keras.utils.plot_model(model, to_file=str(path), **options)
    return path
