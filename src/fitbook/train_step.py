"""Custom train_step variants, right and wrong (chapter "Overriding train_step").

Every ``train_step`` here has the same labelled phases: unpack, forward pass under
the tape, gradients, apply, update metrics, return. The variants differ in one or
two phases, so the chapter can highlight just those lines:

- ``CustomTrainStepModel`` uses the loss and metrics configured in ``compile()``;
- ``OwnLossModel`` computes its own loss and owns its metric trackers;
- ``UnlistedTrackerModel`` and ``LastBatchModel`` are two wrong versions of it;
- ``LegacyTrainStepModel`` is the TF 2.2-era recipe, which Keras 3 still runs.
"""

import keras
import tensorflow as tf

from fitbook.fit_internals import describe_batch


def unpack_x_y(data):
    """Return ``x, y`` from a batch ``(x, y)``, or raise a clear error (chapter
    "Overriding train_step")."""
    if not isinstance(data, (tuple, list)):
        data = (data,)  # fit(x) without y delivers x alone
    if len(data) == 3:
        raise ValueError(
            "This train_step takes batches (x, y); got (x, y, sample_weight). "
            "fit(sample_weight=...) and fit(class_weight=...) add that third "
            "element: drop them, or use a train_step that passes sample_weight on "
            "(chapter 'Sample weights and class weights')."
        )
    if len(data) != 2 or data[1] is None:
        raise ValueError(
            f"A training batch must be (x, y); got {len(data)} element(s): "
            f"{describe_batch(tuple(data))}. Pass targets to fit(x, y), or make "
            "the dataset yield (x, y) pairs."
        )
    return data[0], data[1]


class CustomTrainStepModel(keras.Model):
    """A train_step using compile()'s loss and metrics (chapter "Overriding
    train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the loss configured in compile().
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        # Gradients of the loss with respect to the trainable weights.
        gradients = tape.gradient(loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile().
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: the loss tracker averages losses weighted by batch size,
        # as the built-in step does; compiled metrics get y and y_pred.
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(y)[0])
            else:
                metric.update_state(y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return {m.name: m.result() for m in self.metrics}


class OwnLossModel(keras.Model):
    """Computes its own loss and owns its trackers (chapter "Overriding
    train_step")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy"
        )

    @property
    def metrics(self):
        # Listed here, fit() and evaluate() reset them before every epoch.
        return [self.loss_tracker, self.accuracy_tracker]

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with a loss written out by hand.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, y_pred)
            loss = tf.reduce_mean(losses)
        # Gradients of the loss with respect to the trainable weights.
        gradients = tape.gradient(loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile().
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: our trackers accumulate over the epoch, the loss
        # weighted by batch size, so a short last batch counts for what it holds.
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(y)[0])
        self.accuracy_tracker.update_state(y, y_pred)
        # Return the running values of our trackers.
        return {t.name: t.result() for t in (self.loss_tracker, self.accuracy_tracker)}


class UnlistedTrackerModel(OwnLossModel):
    """Wrong: ``metrics`` omits a tracker, never reset (chapter "Overriding
    train_step")."""

    @property
    def metrics(self):
        # The accuracy tracker is missing: nothing resets it between epochs.
        return [self.loss_tracker]


class LastBatchModel(OwnLossModel):
    """Wrong: returns the batch's raw loss (chapter "Overriding train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with a loss written out by hand.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, y_pred)
            loss = tf.reduce_mean(losses)
        # Gradients of the loss with respect to the trainable weights.
        gradients = tape.gradient(loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile().
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: skipped, so nothing accumulates over the epoch.
        # Return this batch's loss: after the epoch, fit() logs the last one.
        return {"loss": loss}


class LegacyTrainStepModel(keras.Model):
    """The TF 2.2-era recipe, wrong in Keras 3 (chapter "Overriding train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the deprecated loss shim.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compiled_loss(y, y_pred)
        # Gradients of the loss with respect to the trainable weights.
        gradients = tape.gradient(loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile().
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics with the deprecated shim: it feeds y_pred to every Mean,
        # the loss tracker included.
        self.compiled_metrics.update_state(y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return {m.name: m.result() for m in self.metrics}
