"""Gradient accumulation in a custom train_step (chapter "Gradient accumulation").

``AccumulatingModel`` adds the gradients of ``accumulation_steps`` micro-batches
into non-trainable variables, each weighted by its number of samples, and applies
their sample-weighted mean once per group: one update on the union of the
micro-batches, the update a batch that many times larger would give.
``ApplyLeftoverGradients`` applies a short last group at the end of an epoch.
The helpers build the three contenders of the chapter (ours, one big batch, and
Keras' ``gradient_accumulation_steps`` optimizer option) from the same initial
weights and train them on the same data.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from fitbook.batches import batch_size_of, unpack_x_y
from fitbook.models import classifier
from fitbook.train_step import loss_tracker


class AccumulatingModel(keras.Model):
    """Applies the gradients of ``accumulation_steps`` micro-batches at once
    (chapter "Gradient accumulation").

    Build it as a functional model, e.g. ``AccumulatingModel(inputs, outputs,
    accumulation_steps=4)``; ``compile()`` creates the optimizer's variables, so
    that the update can run inside ``tf.cond``.
    """

    def __init__(self, *args, accumulation_steps=2, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(accumulation_steps, bool) or not isinstance(
            accumulation_steps, int
        ) or accumulation_steps < 1:
            raise ValueError(
                "accumulation_steps must be a positive int, got "
                f"{accumulation_steps!r}."
            )
        self.accumulation_steps = accumulation_steps
        self.accumulators = [
            keras.Variable(
                np.zeros(v.shape, v.dtype), trainable=False, name=f"sum_{i}"
            )
            for i, v in enumerate(self.trainable_variables)
        ]
        self.micro_batches = keras.Variable(
            0, dtype="int64", trainable=False, name="micro_batches"
        )
        self.samples = keras.Variable(0.0, trainable=False, name="samples")

    def compile(self, *args, **kwargs):
        """``keras.Model.compile``, then build the optimizer's variables."""
        super().compile(*args, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        # Unpack: a batch (a micro-batch here) must be (x, y).
        x, y = unpack_x_y(data)
        # Forward pass under the tape: the micro-batch's mean loss, scaled.
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients: add them to the sums, weighted by the micro-batch's size.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        n = tf.cast(batch_size_of(x), "float32")
        for total, gradient in zip(self.accumulators, gradients):
            total.assign_add(n * gradient)
        self.samples.assign_add(n)
        self.micro_batches.assign_add(1)
        # Apply once the group is complete; until then the weights do not move.
        group_complete = self.micro_batches >= self.accumulation_steps
        tf.cond(group_complete, self.apply_accumulated, lambda: None)
        # Update metrics per micro-batch, as CustomTrainStepModel does.
        loss_tracker(self).update_state(loss, sample_weight=batch_size_of(x))
        logs = self.compute_metrics(x, y, y_pred)
        # Return the running values: fit() logs them and hands them to callbacks.
        return logs

    def apply_accumulated(self):
        """Apply the sample-weighted mean of the summed gradients; reset the sums."""
        mean = [total / self.samples for total in self.accumulators]
        self.optimizer.apply(mean, self.trainable_variables)
        for total in self.accumulators:
            total.assign(tf.zeros_like(total))
        self.samples.assign(0.0)
        self.micro_batches.assign(0)

    def apply_leftover(self):
        """Apply a short last group, if any; return how many micro-batches it had."""
        pending = int(self.micro_batches.numpy())
        if pending:
            self.apply_accumulated()
        return pending


class ApplyLeftoverGradients(keras.callbacks.Callback):
    """Applies a short last group at each epoch's end (chapter "Gradient
    accumulation"); ``leftovers`` lists each epoch's number of micro-batches."""

    def __init__(self):
        super().__init__()
        self.leftovers = []

    def on_epoch_end(self, epoch, logs=None):
        self.leftovers.append(self.model.apply_leftover())


def make_optimizer(name, accumulation_steps=None, learning_rate=None):
    """SGD (rate 0.1) or Adam (rate 0.001), with Keras' accumulation option if
    asked (chapter "Gradient accumulation"); ``learning_rate`` may be a schedule."""
    if name not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}.")
    optimizer_class = keras.optimizers.SGD if name == "sgd" else keras.optimizers.Adam
    if learning_rate is None:
        learning_rate = 0.1 if name == "sgd" else 0.001
    return optimizer_class(
        learning_rate, gradient_accumulation_steps=accumulation_steps
    )


def make_model(kind, optimizer, accumulation_steps=None, seed=0, learning_rate=None):
    """A compiled classifier, the same initial weights for every ``kind`` (chapter
    "Gradient accumulation").

    ``kind`` is "ours" (``AccumulatingModel``), "big" (a plain model, to be fed
    the large batch) or "keras" (a plain model whose optimizer accumulates).
    """
    if kind == "ours":
        model_class = functools.partial(
            AccumulatingModel, accumulation_steps=accumulation_steps
        )
        model = classifier(model_class, hidden=32, seed=seed, probabilities=True)
        model.compile(
            make_optimizer(optimizer, None, learning_rate),
            "sparse_categorical_crossentropy",
            jit_compile=False,  # tiny runs: compiling would cost more than it saves
        )
    elif kind in ("big", "keras"):
        steps = accumulation_steps if kind == "keras" else None
        model = classifier(keras.Model, hidden=32, seed=seed, probabilities=True)
        model.compile(
            make_optimizer(optimizer, steps, learning_rate),
            "sparse_categorical_crossentropy",
            jit_compile=False,
        )
    else:
        raise ValueError(f"kind must be 'ours', 'big' or 'keras', got {kind!r}.")
    return model


def train(model, x, y, batch_size, epochs=1):
    """Fit in order, without shuffling; return the trainable weights (chapter
    "Gradient accumulation")."""
    callbacks = [ApplyLeftoverGradients()] if isinstance(
        model, AccumulatingModel
    ) else []
    model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
        callbacks=callbacks,
    )
    return [v.numpy() for v in model.trainable_variables]


def max_difference(weights_a, weights_b):
    """The largest absolute difference between two lists of arrays (chapter
    "Gradient accumulation")."""
    return max(
        float(np.max(np.abs(np.subtract(a, b, dtype="float64"))))
        for a, b in zip(weights_a, weights_b, strict=True)
    )


def compare(optimizer, x, y, micro_batch_size, accumulation_steps):
    """Trainable weights after one pass over ``(x, y)``: ours and Keras' with
    micro-batches, the plain model with one batch of all of ``x`` (chapter
    "Gradient accumulation")."""
    weights = {}
    for kind in ("ours", "keras"):
        model = make_model(kind, optimizer, accumulation_steps)
        weights[kind] = train(model, x, y, micro_batch_size)
    weights["big"] = train(make_model("big", optimizer), x, y, len(x))
    return weights
