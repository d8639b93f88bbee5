"""Custom train_step variants, right and wrong (chapter "Overriding train_step").

Every ``train_step`` here has the same labelled phases: unpack, forward pass under
the tape, gradients, apply, update metrics, return. The variants differ in one
phase, so the chapter can highlight just those lines:

- ``CustomTrainStepModel`` uses the loss and metrics configured in ``compile()``
  and matches the built-in step under every dtype policy and for any number of
  outputs;
- ``UnscaledLossModel`` and ``MetricsLoopModel`` are two wrong versions of it:
  gradients of the unscaled loss, and the hand-written metrics loop;
- ``OwnLossModel`` computes its own loss and owns its metric trackers;
- ``UnlistedTrackerModel`` and ``LastBatchModel`` are two wrong versions of it;
- ``LegacyTrainStepModel`` is the TF 2.2-era recipe, which Keras 3 still runs.
"""

import keras
import numpy as np
import tensorflow as tf

from fitbook.batches import batch_size_of, unpack_x_y
from fitbook.models import classifier
from fitbook.tf_noise import without_float16_notice


def loss_tracker(model):
    """The ``Mean`` named "loss" that ``compile()`` creates (chapter "Overriding
    train_step")."""
    for metric in model.metrics:
        if metric.name == "loss":
            return metric
    raise ValueError(
        "The model has no metric named 'loss': call compile() before fit(), or "
        "create and list your own loss tracker as OwnLossModel does."
    )


class CustomTrainStepModel(keras.Model):
    """A train_step using compile()'s loss and metrics (chapter "Overriding
    train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the loss configured in compile(),
        # scaled by the optimizer (mixed_float16: by the loss scale; else by 1).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile(); it unscales them.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: the loss tracker averages the unscaled loss weighted by
        # batch size; compute_metrics() updates the compiled metrics (compute_loss
        # has updated any per-output losses) and reads every tracker.
        loss_tracker(self).update_state(loss, sample_weight=batch_size_of(x))
        logs = self.compute_metrics(x, y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return logs


class UnscaledLossModel(CustomTrainStepModel):
    """Wrong: gradients of the unscaled loss (chapter "Overriding train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the loss configured in compile().
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        # Gradients of the unscaled loss: under mixed_float16, apply() still
        # divides them by the loss scale.
        gradients = tape.gradient(loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile().
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics as CustomTrainStepModel does.
        loss_tracker(self).update_state(loss, sample_weight=batch_size_of(x))
        logs = self.compute_metrics(x, y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return logs


class MetricsLoopModel(CustomTrainStepModel):
    """Wrong with several outputs: updates each metric by hand (chapter "Overriding
    train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the loss configured in compile(),
        # scaled by the optimizer (mixed_float16: by the loss scale; else by 1).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile(); it unscales them.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics by hand: each per-output loss tracker, a Mean already
        # updated by compute_loss, also averages y weighted by y_pred.
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=batch_size_of(x))
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
        # Forward pass under the tape, with a loss written out by hand, in float32
        # as compile()'s losses are, and scaled by the optimizer.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            y_pred = tf.cast(y_pred, "float32")  # float16/bfloat16 when mixed
            losses = keras.losses.sparse_categorical_crossentropy(y, y_pred)
            loss = tf.reduce_mean(losses)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile(); it unscales them.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: our trackers accumulate over the epoch, the loss
        # weighted by batch size, so a short last batch counts for what it holds.
        self.loss_tracker.update_state(loss, sample_weight=batch_size_of(x))
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
        # Forward pass under the tape, with a loss written out by hand, in float32
        # as compile()'s losses are, and scaled by the optimizer.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            y_pred = tf.cast(y_pred, "float32")  # float16/bfloat16 when mixed
            losses = keras.losses.sparse_categorical_crossentropy(y, y_pred)
            loss = tf.reduce_mean(losses)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile(); it unscales them.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: skipped, so nothing accumulates over the epoch.
        # Return this batch's loss: after the epoch, fit() logs the last one.
        return {"loss": loss}


class LegacyTrainStepModel(keras.Model):
    """The TF 2.2-era recipe, wrong in Keras 3 (chapter "Overriding train_step")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape, with the deprecated loss shim (the loss
        # scaled as in Keras 3, so that only the metrics go wrong).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compiled_loss(y, y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them with the optimizer configured in compile(); it unscales them.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics with the deprecated shim: it feeds y_pred to every Mean,
        # the loss tracker included.
        self.compiled_metrics.update_state(y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return {m.name: m.result() for m in self.metrics}


def update_norm(model_class, x, y, dtype_policy="float32", learning_rate=0.1):
    """The size of one SGD step on the batch ``(x, y)`` under ``dtype_policy``
    (chapter "Overriding train_step").

    Runs the model's ``train_step`` once, eagerly (``fit()`` runs the same step
    as a graph), and returns the Euclidean norm of the change of all weights; the
    global dtype policy is restored afterwards.
    """
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
        with without_float16_notice():  # float16 kernels may log a CPU notice
            model = classifier(model_class, seed=0, probabilities=True)
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate),
                loss="sparse_categorical_crossentropy",
            )
            start = model.get_weights()
            model.train_step((tf.convert_to_tensor(x), tf.convert_to_tensor(y)))
    finally:
        keras.config.set_dtype_policy(before)
    pairs = zip(model.get_weights(), start)
    squares = [np.sum(np.subtract(w, w0, dtype="float64") ** 2) for w, w0 in pairs]
    return float(np.sqrt(sum(squares)))


def build_two_output_model(model_class=keras.Model, seed=0):
    """An MLP for 28x28 images with two regression heads, "top" and "bottom"
    (chapter "Overriding train_step")."""
    init = keras.initializers.GlorotUniform
    inputs = keras.Input(shape=(28, 28, 1))
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(32, activation="relu", kernel_initializer=init(seed))(
        hidden
    )
    heads = [
        keras.layers.Dense(1, kernel_initializer=init(seed + i), name=name)(hidden)
        for i, name in ((1, "top"), (2, "bottom"))
    ]
    return model_class(inputs, heads)
