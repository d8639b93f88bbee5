"""Three ways to give a loss more than ``(y_true, y_pred)`` (chapter "A VAE").

1. ``ExpectedCost``: a ``keras.losses.Loss`` subclass whose extra values are
   constructor parameters, saved by ``get_config``.
2. ``ActivityPenalty`` (in :mod:`fitbook.models`; the chapter on loops uses it first): a
   layer that calls ``add_loss`` with a value computed from its own inputs;
   ``fit()`` adds it to the compiled loss.
3. ``MirrorConsistentModel``: a ``train_step`` override, for a loss that needs
   another forward pass.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from fitbook.batches import batch_size_of, unpack_batch
from fitbook.train_step import loss_tracker


@keras.saving.register_keras_serializable(package="fitbook")
class ExpectedCost(keras.losses.Loss):
    """Expected misclassification cost ``sum_j p_j C[y, j]`` (chapter "A VAE")."""

    def __init__(self, cost_matrix, name="expected_cost", **kwargs):
        super().__init__(name=name, **kwargs)
        cost_matrix = np.asarray(cost_matrix, dtype="float32")
        if cost_matrix.ndim != 2 or cost_matrix.shape[0] != cost_matrix.shape[1]:
            raise ValueError(
                "cost_matrix must be square, (num_classes, num_classes), with "
                f"cost_matrix[true, predicted]; got shape {cost_matrix.shape}."
            )
        self.cost_matrix = cost_matrix

    def call(self, y_true, y_pred):
        # y_true: integer labels (n,) or (n, 1); y_pred: probabilities (n, k).
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        costs = ops.take(ops.convert_to_tensor(self.cost_matrix), labels, axis=0)
        return ops.sum(costs * y_pred, axis=-1)

    def get_config(self):
        return {**super().get_config(), "cost_matrix": self.cost_matrix.tolist()}


def consistency_loss(y_pred, y_mirror, sample_weight=None):
    """Mean squared difference of two predictions, per sample weighted and divided
    by the batch size as compiled losses are (chapter "A VAE")."""
    difference = ops.cast(y_pred, "float32") - ops.cast(y_mirror, "float32")
    per_sample = ops.mean(ops.square(difference), axis=-1)
    if sample_weight is not None:
        per_sample = per_sample * ops.cast(sample_weight, "float32")
    return ops.mean(per_sample)


@keras.saving.register_keras_serializable(package="fitbook")
class MirrorConsistentModel(keras.Model):
    """Compiled loss + ``weight`` * (f(x) - f(mirror x))^2 (chapter "A VAE")."""

    def __init__(self, *args, weight=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight = weight
        self.consistency_tracker = keras.metrics.Mean(name="consistency")

    def train_step(self, data):
        # Unpack.
        x, y, sample_weight = unpack_batch(data)
        if len(x.shape) != 4:
            raise ValueError(
                "MirrorConsistentModel mirrors images left to right and needs x "
                f"of shape (batch, height, width, channels); got {x.shape}."
            )
        # Forward under the tape: the compiled loss (with any add_loss terms of
        # this pass), then a second pass on left-right mirrored images, compared
        # in float32 and weighted per sample like the compiled loss; the
        # optimizer scales the total (mixed_float16: by the loss scale).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            y_mirror = self(ops.flip(x, axis=2), training=True)
            consistency = consistency_loss(y_pred, y_mirror, sample_weight)
            loss = loss + self.weight * consistency
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss.
        grads = tape.gradient(scaled_loss, self.trainable_weights)
        # Apply; the optimizer unscales the gradients first.
        self.optimizer.apply(grads, self.trainable_weights)
        # Update metrics: the loss tracker gets the total weighted by batch
        # size, ours the extra term; compute_metrics() updates compile()'s.
        batch_size = batch_size_of(x)
        loss_tracker(self).update_state(loss, sample_weight=batch_size)
        self.consistency_tracker.update_state(consistency, sample_weight=batch_size)
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        # Return.
        return logs

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
