"""A custom test_step and predict_step (chapter "Overriding test_step").

``WeightedTestStepModel`` adds to the weighted train_step of the chapter "Sample
weights and class weights" the step that ``evaluate()`` and
``fit(validation_data=...)`` call on every batch; ``ClassPredictingModel`` also
changes what ``predict()`` returns. The NumPy functions compute the same numbers
over a whole data set without Keras, to check them.
"""

import numpy as np
import tensorflow as tf

from fitbook.batches import unpack_batch, unpack_x
from fitbook.sample_weights import WeightedTrainStepModel


class WeightedTestStepModel(WeightedTrainStepModel):
    """Adds a weighted test_step for evaluate() (chapter "Overriding test_step")."""

    def test_step(self, data):
        # Unpack, as in train_step: targets required, weights optional.
        x, y, sample_weight = unpack_batch(data)
        # Forward pass in inference mode: no tape, no gradients, no update.
        y_pred = self(x, training=False)
        loss = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        # Update metrics with the same weights as in training.
        logs = self.update_weighted_metrics(loss, x, y, y_pred, sample_weight)
        # Return the running values, which evaluate() reports after the last batch.
        return logs


class ClassPredictingModel(WeightedTestStepModel):
    """Predicts class indices and probabilities (chapter "Overriding test_step")."""

    def predict_step(self, data):
        x = unpack_x(data)
        probabilities = self(x, training=False)
        return {
            "class_index": tf.argmax(probabilities, axis=-1),
            "probabilities": probabilities,
        }


def check_predictions(y, y_pred, sample_weight=None):
    """Return checked ``y, y_pred, sample_weight`` (chapter "Overriding test_step")."""
    y, y_pred = np.asarray(y).reshape(-1), np.asarray(y_pred, dtype="float64")
    if y_pred.ndim != 2 or len(y_pred) != len(y):
        raise ValueError(
            f"y_pred has shape {y_pred.shape} for {len(y)} targets; expected "
            f"class probabilities of shape ({len(y)}, num_classes)."
        )
    if sample_weight is None:
        sample_weight = np.ones(len(y))
    sample_weight = np.asarray(sample_weight, dtype="float64")
    if sample_weight.shape != y.shape:
        raise ValueError(
            f"sample_weight has shape {sample_weight.shape}; expected {y.shape}, "
            "one weight per target."
        )
    return y, y_pred, sample_weight


def crossentropy(y, y_pred):
    """Per-sample crossentropy of class indices y (chapter "Overriding test_step").

    ``y_pred`` are a softmax layer's probabilities. Keras computes this loss from
    the logits the softmax output carries (TensorFlow backend: its
    ``_keras_logits``), so it clips nothing; ``-log p`` in float64 is the same.
    """
    probability = np.asarray(y_pred, "float64")[np.arange(len(y)), y]
    return -np.log(probability)


def numpy_evaluate(y, y_pred, sample_weight=None):
    """What evaluate() reports over a whole set (chapter "Overriding test_step").

    For ``compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"],
    weighted_metrics=["accuracy"])``: the loss divides the weighted sum by the
    number of samples, the weighted accuracy by the sum of the weights, and
    ``metrics=`` ignore the weights.
    """
    y, y_pred, sample_weight = check_predictions(y, y_pred, sample_weight)
    correct = y_pred.argmax(axis=1) == y
    weighted_losses = sample_weight * crossentropy(y, y_pred)
    return {
        "loss": float(weighted_losses.sum() / len(y)),  # divides by sample count
        "accuracy": float(correct.mean()),  # ignores the weights
        "weighted_accuracy": float(np.average(correct, weights=sample_weight)),
    }


def mean_of_batch_losses(y, y_pred, sample_weight, batch_size):
    """Plain mean of per-batch losses (chapter "Overriding test_step").

    This is what a loss tracker updated without ``sample_weight=batch_size``
    reports; it differs from ``numpy_evaluate`` when the last batch is partial.
    """
    y, y_pred, sample_weight = check_predictions(y, y_pred, sample_weight)
    weighted = sample_weight * crossentropy(y, y_pred)
    starts = range(0, len(y), batch_size)
    return float(np.mean([weighted[i : i + batch_size].mean() for i in starts]))
