"""Data-parallel training with tf.distribute (chapter "Scaling out with tf.distribute").

- :func:`split_cpu` splits the CPU into logical devices, so that
  ``MirroredStrategy`` really replicates on a machine without accelerators;
- :class:`MirroredTrainStepModel` is the chapter "Overriding train_step"'s custom
  step, made to report the right loss under a strategy;
- :class:`DistributedTrainer` is the from-scratch loop under a strategy
  (``strategy.run``, ``strategy.reduce``, a distributed dataset, the loss divided
  by the global batch size); :class:`PerReplicaMeanTrainer` is its classic bug.

Call :func:`split_cpu` right after ``import fitbook``, before building any model:
TensorFlow fixes its devices when its runtime starts.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from fitbook.batches import batch_size_of, unpack_x_y
from fitbook.checks import positive_int
from fitbook.models import classifier
from fitbook.sample_weights import largest_difference
from fitbook.timing import epoch_steps, time_run
from fitbook.train_step import loss_tracker


def split_cpu(n):
    """Split the CPU into ``n`` logical devices; return their names (chapter
    "Scaling out with tf.distribute")."""
    n = positive_int("n", n, hint=" It is the number of logical CPU devices.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:  # the runtime has started: devices are fixed
        count = len(tf.config.list_logical_devices("CPU"))
        if count != n:
            raise RuntimeError(
                f"Cannot split the CPU into {n} logical devices: TensorFlow's "
                f"runtime already started with {count}. Call split_cpu({n}) right "
                "after `import fitbook`, before building any model or tensor (in a "
                "notebook: restart the kernel)."
            ) from err
    return [device.name for device in tf.config.list_logical_devices("CPU")]


class MirroredTrainStepModel(keras.Model):
    """CustomTrainStepModel, reporting the right loss under a tf.distribute strategy
    (chapter "Scaling out with tf.distribute")."""

    def train_step(self, data):
        # Unpack: a batch must be (x, y); under a strategy, this replica's share.
        x, y = unpack_x_y(data)
        # Forward pass under the tape. Under a strategy, compute_loss divides the
        # replica's mean loss by the number of replicas; the optimizer scales it
        # (mixed_float16: by the loss scale; else by 1).
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the scaled loss with respect to the trainable weights.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Apply them: the optimizer sums the gradients of all replicas first.
        self.optimizer.apply(gradients, self.trainable_variables)
        # Update metrics: the loss tracker gets this replica's mean loss, undoing
        # the division by the number of replicas; compute_metrics() does the rest.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss_tracker(self).update_state(loss * replicas, sample_weight=batch_size_of(x))
        logs = self.compute_metrics(x, y, y_pred)
        # Return the running values: fit() averages them over the replicas.
        return logs


def batched(x, y, batch_size):
    """``(x, y)`` in order, in batches, ready for any strategy ("Scaling out")."""
    options = tf.data.Options()
    # Several workers: each keeps its share of every batch. The default (AUTO)
    # first tries to give each worker its own files, and this data has none.
    policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_distribute.auto_shard_policy = policy
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return dataset.with_options(options)


def fit_under(strategy, model_class, x, y, batch_size, epochs=1, learning_rate=0.1):
    """Build, compile and ``fit()`` a classifier under ``strategy``; return it and
    its history (chapter "Scaling out with tf.distribute").

    Plain SGD and the same initial weights for every call, so runs under different
    strategies can be compared weight for weight.
    """
    with strategy.scope():  # variables and optimizer slots become mirrored
        model = classifier(model_class, hidden=32, seed=0, probabilities=True)
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    dataset = batched(x, y, batch_size)
    history = model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history


def max_weight_difference(first, second):
    """The largest absolute difference between two models' weights ("Scaling out")."""
    return largest_difference(first.get_weights(), second.get_weights())


class DistributedTrainer:
    """A from-scratch training loop under a tf.distribute strategy (chapter
    "Scaling out with tf.distribute").

    ``loss_fn`` must return one loss per example: a Keras loss with
    ``reduction=None``. Create the model and the optimizer inside
    ``strategy.scope()``.
    """

    def __init__(self, strategy, model, optimizer, loss_fn):
        if getattr(loss_fn, "reduction", None) not in (None, "none"):
            raise ValueError(
                f"loss_fn must return one loss per example, but its reduction is "
                f"{loss_fn.reduction!r}: create it with reduction=None; the trainer "
                "divides the sum by the global batch size itself."
            )
        if not model.built or not model.trainable_variables:
            raise ValueError(
                "the model has no weights yet: start it with keras.Input(shape) "
                "inside strategy.scope() before creating the trainer."
            )
        if not strategy.extended.variable_created_in_scope(
            model.trainable_variables[0].value
        ):
            raise ValueError(
                "the model's variables were not created under this strategy: build "
                "the model and the optimizer inside `with strategy.scope():`."
            )
        self.strategy, self.model = strategy, model
        self.optimizer, self.loss_fn = optimizer, loss_fn
        with strategy.scope():
            optimizer.build(model.trainable_variables)  # slots exist before tracing

    def distribute(self, x, y, global_batch_size):
        """Batches of ``global_batch_size`` examples, split among the replicas."""
        replicas = self.strategy.num_replicas_in_sync
        size = positive_int("global_batch_size", global_batch_size)
        if size < replicas:
            raise ValueError(
                f"global_batch_size must be at least the number of replicas "
                f"({replicas}) so that each gets an example; got {global_batch_size}."
            )
        dataset = batched(x, y, global_batch_size)
        return self.strategy.experimental_distribute_dataset(dataset)

    def replica_loss(self, y, y_pred):
        """This replica's share of the global batch's mean loss."""
        per_example_loss = self.loss_fn(y, y_pred)
        # add_loss() terms: read them before the all_reduce below, where the
        # other replicas (threads sharing these layers) run their forward pass.
        extra_losses = self.model.losses
        # How many examples all replicas hold together (a last batch is short).
        context = tf.distribute.get_replica_context()
        global_batch_size = context.all_reduce("SUM", tf.shape(y)[0])
        loss = tf.nn.compute_average_loss(
            per_example_loss, global_batch_size=global_batch_size
        )
        if extra_losses:  # each replica adds its own, divided by the replicas
            loss += tf.nn.scale_regularization_loss(tf.add_n(extra_losses))
        return loss

    def replica_step(self, x, y):
        """One step on this replica's share of the batch; returns its loss share."""
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.replica_loss(y, y_pred)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        # Under a strategy, apply() first sums the gradients of all replicas.
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss

    def train_step(self, x, y):
        """Run ``replica_step`` on every replica; return the batch's mean loss."""
        per_replica_loss = self.strategy.run(self.replica_step, args=(x, y))
        return self.strategy.reduce("SUM", per_replica_loss, axis=None)

    def fit(self, x, y, global_batch_size, epochs=1):
        """Train ``epochs`` passes in order; return each epoch's mean loss."""
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"x and y must hold the same, non-zero number of examples; got "
                f"{len(x)} and {len(y)}."
            )
        dataset = self.distribute(x, y, global_batch_size)
        # Traced once: the batch dimension of the dataset's spec is unknown.
        step = tf.function(self.train_step, input_signature=dataset.element_spec)
        starts = range(0, len(x), global_batch_size)
        sizes = [min(global_batch_size, len(x) - start) for start in starts]
        epoch_losses = []
        for _ in range(epochs):
            losses = [float(step(x_batch, y_batch)) for x_batch, y_batch in dataset]
            epoch_losses.append(float(np.average(losses, weights=sizes)))
        return epoch_losses


class PerReplicaMeanTrainer(DistributedTrainer):
    """Wrong: each replica averages over its own examples only (chapter "Scaling out
    with tf.distribute")."""

    def replica_loss(self, y, y_pred):
        """This replica's mean loss: the replicas' sum is ``replicas`` times too big."""
        return tf.reduce_mean(self.loss_fn(y, y_pred))  # divides by the local size


def loop_under(
    strategy, trainer_class, x, y, global_batch_size, epochs=1, learning_rate=0.1
):
    """Train a classifier with ``trainer_class`` under ``strategy``; return the model
    and its epoch losses (chapter "Scaling out with tf.distribute")."""
    with strategy.scope():
        model = classifier(keras.Model, hidden=32, seed=0, probabilities=True)
        optimizer = keras.optimizers.SGD(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    trainer = trainer_class(strategy, model, optimizer, loss_fn)
    return model, trainer.fit(x, y, global_batch_size, epochs)


def examples_per_second(strategy, x, y, batch_size, repeats=3):
    """Examples per second of ``fit()`` under ``strategy`` (chapter "Scaling out").

    One untimed warm-up epoch (tracing), then the fastest of ``repeats`` epochs.
    """
    model, _ = fit_under(strategy, MirroredTrainStepModel, x, y, batch_size)
    dataset = batched(x, y, batch_size)
    run = functools.partial(model.fit, dataset, epochs=1, shuffle=False, verbose=0)
    best = time_run("fit", run, epoch_steps(len(x), batch_size), repeats)
    return len(x) / min(best.seconds)
