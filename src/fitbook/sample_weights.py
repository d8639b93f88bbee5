"""Sample and class weights in a custom train_step.

Used by the chapter "Sample weights and class weights" ("Sample weights" in the
docstrings below). ``WeightedTrainStepModel`` extends the basic custom
``train_step`` of the chapter "Overriding train_step" in three phases: the
unpack phase accepts an optional third element, ``sample_weight`` (where
``fit()`` also puts ``class_weight``), and the loss and metrics phases pass
those weights on, weighted exactly as the built-in ``fit()`` weighs them. The
helpers around it build the chapter's imbalanced Fashion-MNIST problem and
measure what class weighting changes.
"""

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from fitbook.batches import batch_size_of, unpack_batch
from fitbook.models import classifier
from fitbook.train_step import loss_tracker


class WeightedTrainStepModel(keras.Model):
    """A train_step honouring sample and class weights (chapter "Sample weights")."""

    def train_step(self, data):
        # Unpack: (x, y) or (x, y, sample_weight); class_weight arrives here too.
        x, y, sample_weight = unpack_batch(data)
        # Forward pass under the tape; the weights scale each sample's loss, and
        # the optimizer scales the loss (mixed_float16: by the loss scale).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight
            )
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the weighted, scaled loss.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them; the optimizer unscales them first.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics with the same weights.
        logs = self.update_weighted_metrics(loss, x, y, y_pred, sample_weight)
        # Return the running values that fit() logs.
        return logs

    def update_weighted_metrics(self, loss, x, y, y_pred, sample_weight):
        """Update ``self.metrics`` as built-in steps do and return their results
        (chapter "Sample weights")."""
        # The loss tracker averages batch losses weighted by batch size.
        loss_tracker(self).update_state(loss, sample_weight=batch_size_of(x))
        # compile()'s metrics: weighted_metrics= get the weights, metrics= not.
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def make_classifier(model_class=keras.Model, num_classes=10, weights=None):
    """A small compiled classifier for 28x28 images (chapter "Sample weights").

    ``weights`` (from another model's ``get_weights()``) makes two models start
    alike. Accuracy is reported twice: unweighted (``metrics=``) and weighted by
    the sample weights (``weighted_metrics=``).
    """
    model = classifier(
        model_class, hidden=64, num_classes=num_classes, probabilities=True
    )
    if weights is not None:
        model.set_weights(weights)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        weighted_metrics=["accuracy"],
    )
    return model


def largest_difference(a, b):
    """Largest absolute difference of two lists of arrays (chapter "Sample weights").

    For example two models' ``get_weights()``, or two ``History.history`` dicts'
    values; the lists must match in length and the arrays in shape.
    """
    if len(a) != len(b):
        raise ValueError(f"lists of {len(a)} and {len(b)} arrays; expected one length.")
    gaps = [np.abs(np.subtract(u, v, dtype="float64")) for u, v in zip(a, b)]
    return max((float(gap.max(initial=0.0)) for gap in gaps), default=0.0)


def loss_and_gradients(model, x, y, sample_weight=None):
    """Return the compiled loss and its gradients (chapter "Sample weights")."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
    gradients = tape.gradient(loss, model.trainable_variables)
    return float(loss), [g.numpy() for g in gradients]


def class_weight_to_sample_weight(y, class_weight):
    """The per-sample weights ``fit(class_weight=...)`` uses (chapter "Sample weights").

    ``y`` holds class indices, shape ``(n,)`` or ``(n, 1)``, or one-hot rows,
    shape ``(n, num_classes)``. Classes missing from ``class_weight`` get weight
    1, as in Keras.
    """
    if not isinstance(class_weight, dict) or not all(
        isinstance(k, (int, np.integer)) and k >= 0 for k in class_weight
    ):
        raise ValueError(
            "class_weight must be a dict from class index (an int >= 0) to "
            f"weight, e.g. {{0: 1.0, 1: 5.0}}; got {class_weight!r}."
        )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        labels = y.argmax(axis=1)
    elif y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        labels = np.round(y.reshape(-1)).astype("int64")
    else:
        raise ValueError(
            f"y has shape {y.shape}; expected class indices (n,) or (n, 1), "
            "or one-hot rows (n, num_classes)."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"y holds class index {labels.min()}; expected >= 0.")
    size = max([int(labels.max(initial=-1)) + 1] + [int(k) + 1 for k in class_weight])
    lookup = np.ones(size, dtype="float32")  # classes not in class_weight keep 1
    for label, weight in class_weight.items():
        lookup[label] = weight
    return lookup[labels]


def balanced_class_weight(y):
    """Weights ``n / (num_classes * count)`` per class (chapter "Sample weights")."""
    counts = np.bincount(np.asarray(y).reshape(-1))
    if counts.size == 0 or (counts == 0).any():
        raise ValueError(
            f"every class from 0 to {max(counts.size - 1, 0)} needs at least one "
            f"sample to get a weight; counts per class are {counts.tolist()}."
        )
    return {c: float(counts.sum() / (counts.size * n)) for c, n in enumerate(counts)}


def make_imbalanced(x, y, classes, rare_class, keep_fraction, seed=0):
    """Keep ``classes`` (relabelled 0..k-1) and thin out one (chapter "Sample weights").

    Returns ``x`` and ``y`` restricted to ``classes``, where only
    ``keep_fraction`` of the samples of ``rare_class`` (an original label) are
    kept, chosen at random with ``seed``.
    """
    if rare_class not in classes:
        raise ValueError(f"rare_class {rare_class} is not one of classes {classes}.")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}.")
    y = np.asarray(y)
    rare = np.flatnonzero(y == rare_class)
    n_dropped = len(rare) - round(keep_fraction * len(rare))
    keep = np.isin(y, classes)
    keep[np.random.default_rng(seed).permutation(rare)[:n_dropped]] = False
    relabel = np.full(y.max() + 1, -1)  # original label -> position in classes
    relabel[list(classes)] = np.arange(len(classes))
    return x[keep], relabel[y[keep]]


def per_class_recall(y, y_pred_labels, num_classes):
    """Fraction of each class predicted as that class (chapter "Sample weights")."""
    y, y_pred_labels = np.asarray(y), np.asarray(y_pred_labels)
    if y.shape != y_pred_labels.shape:
        raise ValueError(
            f"y has shape {y.shape} but y_pred_labels {y_pred_labels.shape}; "
            "expected one predicted class index per target."
        )
    hits = np.bincount(y[y == y_pred_labels], minlength=num_classes)
    totals = np.bincount(y, minlength=num_classes)
    return hits / np.maximum(totals, 1)


def plot_recall_bars(recalls, class_names, title):
    """Grouped bars of per-class recall (chapter "Sample weights").

    ``recalls`` maps a label (e.g. "no weights") to an array of recalls.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(recalls)
    positions = np.arange(len(class_names))
    for i, (label, recall) in enumerate(recalls.items()):
        bars = ax.bar(positions + (i - (len(recalls) - 1) / 2) * width, recall,
                      width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(positions, class_names)
    ax.set_ylim(0, 1.25)  # room for the legend above the bars
    ax.set_xlabel("true class (test set)")
    ax.set_ylabel("recall")
    ax.set_title(title)
    ax.legend(loc="upper center", ncols=len(recalls), frameon=False)
    fig.tight_layout()
    return fig
