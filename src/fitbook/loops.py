"""Training loops from scratch, fast and safe (chapter "Training loops from scratch").

Two levels:

- :func:`minimal_train_step` and :func:`minimal_fit`: the smallest correct eager
  loop, ``GradientTape`` plus ``optimizer.apply``;
- :class:`Trainer`: the same step as methods compiled with ``tf.function``
  (optionally XLA), with what ``fit()`` hides as options: metrics, validation,
  per-epoch history, gradient clipping, a progress bar, Keras callbacks, a NaN
  guard and atomic checkpoints that resume to exactly the same weights. Like
  ``Model.compile()``, it wraps the optimizer in a ``LossScaleOptimizer`` under
  the ``mixed_float16`` policy, and its step scales the loss as ``fit()``'s does.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from fitbook.checkpoints import TrainingCheckpoint
from fitbook.checks import positive_int, positive_number
from fitbook.timing import epoch_steps, fit_run, time_run

MODES = ("eager", "function", "jit")  # how Trainer runs its steps


def minimal_train_step(model, optimizer, loss_fn, x, y):
    """One eager training step on a batch (chapter "Training loops", first loop)."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = loss_fn(y, y_pred)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return loss


def minimal_fit(model, optimizer, loss_fn, dataset, epochs):
    """Train ``epochs`` passes over a tf.data dataset, eagerly ("Training loops")."""
    mean_losses = []
    for epoch in range(epochs):
        losses = [
            float(minimal_train_step(model, optimizer, loss_fn, x, y))
            for x, y in dataset
        ]
        mean_losses.append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{epochs}: mean loss {mean_losses[-1]:.4f}")
    return mean_losses


def with_loss_scaling(optimizer, dtype_policy=None):
    """``optimizer`` wrapped in a ``LossScaleOptimizer`` under ``mixed_float16``,
    as ``Model.compile()`` does; unchanged otherwise (chapters "Training loops
    from scratch", "A GAN", "WGAN-GP").

    ``dtype_policy`` defaults to the global policy.
    """
    policy = keras.dtype_policies.get(dtype_policy or keras.config.dtype_policy())
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    if policy.name != "mixed_float16" or scaled:
        return optimizer
    name = f"scaled_{optimizer.name}"
    return keras.optimizers.LossScaleOptimizer(optimizer, name=name)


class Trainer:
    """A small training loop with fit()'s hidden controls as options ("Training loops").

    ``mode`` is ``"eager"``, ``"function"`` (``tf.function``) or ``"jit"`` (XLA).
    ``clipnorm`` clips each gradient, ``global_clipnorm`` all of them together.
    ``nan_guard`` skips the update of a step whose loss or gradients are not
    finite and stops training; the step itself decides and counts: ``step`` holds
    the applied updates, ``skipped`` the refused ones. Under ``mixed_float16``
    the optimizer is wrapped in a ``LossScaleOptimizer``, as ``compile()`` does.
    ``input_signature=True`` traces one graph for every batch size.
    """

    def __init__(
        self,
        model,
        optimizer,
        loss,
        metrics=(),
        mode="function",
        clipnorm=None,
        global_clipnorm=None,
        nan_guard=True,
        input_signature=True,
        shuffle_seed=0,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if not model.built:
            raise ValueError(
                "the model has no weights yet: start it with keras.Input(shape) "
                "or call it once on a batch before creating the Trainer."
            )
        optimizer = with_loss_scaling(optimizer, model.dtype_policy)
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.metrics = [self.loss_tracker, *metrics]
        self.mode, self.input_signature = mode, input_signature
        self.clipnorm = positive_number("clipnorm", clipnorm, allow_none=True)
        self.global_clipnorm = positive_number(
            "global_clipnorm", global_clipnorm, allow_none=True
        )
        self.nan_guard = nan_guard
        self.step = keras.Variable(0, dtype="int64", trainable=False, name="step")
        self.skipped = keras.Variable(0, dtype="int64", trainable=False)
        self.shuffle_seed = keras.Variable(shuffle_seed, dtype="int64", trainable=False)
        self.trace_count = 0  # how often train_step's Python body ran
        self.nan_step = None  # the batch (from 1) at which the guard stopped
        optimizer.build(model.trainable_variables)  # slots exist before tracing
        self.compiled = {}  # step name -> compiled function

    def compute_loss(self, y, y_pred):
        """The loss fit() would compute: the loss function plus ``model.losses``."""
        loss = self.loss_fn(y, y_pred)
        if self.model.losses:  # add_loss() terms and weight regularizers
            loss = keras.ops.sum([loss, *self.model.losses])
        return loss

    def clip(self, grads):
        """Clip each gradient's norm, then their global norm, as configured.

        The gradients are those of the scaled loss, ``scale`` times too large
        (``scale`` is 1 without loss scaling), so the limits are scaled too.
        """
        scale = tf.cast(self.optimizer.scale_loss(1.0), tf.float32)
        if self.clipnorm is not None:
            grads = [tf.clip_by_norm(g, self.clipnorm * scale) for g in grads]
        if self.global_clipnorm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.global_clipnorm * scale)
        return grads

    def train_step(self, x, y):
        """Forward pass, loss, gradients, clipping, guarded update, metric values.

        Returns ``(logs, stop)``; ``stop`` is True when the NaN guard refused the
        update. The metrics only take in batches whose update was applied.
        """
        self.trace_count += 1  # Python code: runs on every trace, not every step
        # Forward under the tape
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.compute_loss(y, y_pred)
            scaled_loss = self.optimizer.scale_loss(loss)  # loss x scale, if any
        # Gradients
        grads = self.clip(tape.gradient(scaled_loss, self.model.trainable_variables))
        # Apply: the guard decides here, in the step, from loss *and* gradients
        call, applied, stop = self.guard(loss, grads)
        tf.cond(call, lambda: self.apply(grads), lambda: None)  # the graph's `if`
        self.step.assign_add(tf.cast(applied, "int64"))
        self.skipped.assign_add(tf.cast(~applied, "int64"))
        # Update metrics
        tf.cond(applied, lambda: self.update_metrics(loss, y, y_pred), lambda: None)
        # Return
        return {m.name: m.result() for m in self.metrics}, stop

    def guard(self, loss, grads):
        """The NaN guard's decision: ``(call optimizer, update applied, stop)``.

        A ``LossScaleOptimizer`` skips non-finite gradients itself and lowers its
        scale (an overflow of the scaled loss): it is called whenever the loss is
        finite, and only a non-finite loss stops training.
        """
        finite_loss = tf.math.is_finite(loss)
        finite_grads = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        )
        scaler = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        no = tf.constant(False)
        if not self.nan_guard:  # always apply; only a loss scaler may skip
            return tf.constant(True), finite_grads if scaler else ~no, no
        call = finite_loss if scaler else finite_loss & finite_grads
        return call, call & finite_grads, ~call

    def apply(self, grads):
        """Apply the (scaled) gradients; a LossScaleOptimizer unscales them."""
        self.optimizer.apply(grads, self.model.trainable_variables)

    def test_step(self, x, y):
        """Forward pass in inference mode, loss and metrics; no update."""
        y_pred = self.model(x, training=False)
        loss = self.compute_loss(y, y_pred)
        self.update_metrics(loss, y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    def update_metrics(self, loss, y, y_pred):
        """Accumulate the batch: mean loss weighted by batch size, then metrics."""
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(y)[0])
        for metric in self.metrics[1:]:
            metric.update_state(y, y_pred)

    def results(self, prefix=""):
        """Current metric values as plain floats, then reset for the next pass.

        NaN when no batch entered them (a run stopped at an epoch's first batch).
        """
        empty = float(self.loss_tracker.count.numpy()) == 0
        logs = {prefix + m.name: math.nan if empty else float(m.result())
                for m in self.metrics}
        for metric in self.metrics:
            metric.reset_state()
        return logs

    def compiled_step(self, name, x, y):
        """Return ``train_step``/``test_step`` compiled for the mode (once per name)."""
        if name not in self.compiled:
            step = getattr(self, name)
            if self.mode != "eager":
                signature = None
                if self.input_signature:  # unknown batch size: one trace for all
                    signature = [
                        tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
                        tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)),
                    ]
                step = tf.function(
                    step, input_signature=signature, jit_compile=self.mode == "jit"
                )
            self.compiled[name] = step
        return self.compiled[name]

    def batches(self, x, y, batch_size, epoch, shuffle=True):
        """The epoch's batches; their order is a pure function of (seed, epoch)."""
        order = np.arange(len(x))
        if shuffle:
            seed = [int(self.shuffle_seed.numpy()), epoch]
            order = np.random.default_rng(seed).permutation(len(x))
        dataset = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
        return dataset.batch(batch_size).prefetch(1)  # next batch while training

    def checkpoint(self, directory, max_to_keep=3):
        """A TrainingCheckpoint of everything a resumed run needs."""
        return TrainingCheckpoint(
            directory,
            max_to_keep=max_to_keep,
            model=self.model,  # weights and the layers' random-seed states
            optimizer=self.optimizer,  # iteration count and moment estimates
            step=self.step,
            skipped=self.skipped,  # with step: the position in the data
            shuffle_seed=self.shuffle_seed,  # with step: the data order
        )

    def batches_done(self):
        """Training steps run so far: applied plus skipped updates."""
        return int(self.step.numpy()) + int(self.skipped.numpy())

    def train_epoch(self, x, y, batch_size, epoch, shuffle, callbacks, progbar, saver):
        """Train from the current step to the end of ``epoch``; return its logs."""
        steps_per_epoch = math.ceil(len(x) / batch_size)
        done = self.batches_done() - epoch * steps_per_epoch  # > 0 after resume
        train_step = self.compiled_step("train_step", x, y)
        batches = self.batches(x, y, batch_size, epoch, shuffle).skip(done)
        for batch, (x_batch, y_batch) in enumerate(batches, start=done):
            callbacks.on_train_batch_begin(batch)
            logs, stop = train_step(x_batch, y_batch)
            logs = {k: float(v) for k, v in logs.items()}
            if bool(stop):  # the step's own decision; its update was not applied
                self.nan_step = self.batches_done()  # counted from 1
                self.model.stop_training = True
                break
            callbacks.on_train_batch_end(batch, logs)
            progbar.update(batch + 1, list(logs.items()), finalize=False)
            if saver is not None:
                saver(self.batches_done())
            if self.model.stop_training:
                break
        return self.results()

    def evaluate(self, x, y, batch_size=256, prefix=""):
        """Loss and metrics over ``(x, y)`` in inference mode, as plain floats."""
        test_step = self.compiled_step("test_step", x, y)
        for x_batch, y_batch in self.batches(x, y, batch_size, 0, shuffle=False):
            test_step(x_batch, y_batch)
        return self.results(prefix)

    def fit(
        self,
        x,
        y,
        batch_size=32,
        epochs=1,
        validation_data=None,
        shuffle=True,
        callbacks=(),
        checkpoint_dir=None,
        checkpoint_every=None,
        verbose=2,
    ):
        """Train until ``epochs`` epochs are done in total; return per-epoch history.

        Training continues from ``self.step``: with ``checkpoint_dir`` the newest
        checkpoint there is restored first, and one is saved every
        ``checkpoint_every`` steps (default: at the end of each epoch).
        """
        x, y = check_data(x, y, batch_size)
        steps_per_epoch = math.ceil(len(x) / batch_size)
        saver = self.make_saver(checkpoint_dir, checkpoint_every, steps_per_epoch)
        callbacks = keras.callbacks.CallbackList(
            list(callbacks), model=self.model, epochs=epochs, steps=steps_per_epoch
        )
        history, self.nan_step, self.model.stop_training = {}, None, False
        callbacks.on_train_begin()
        for epoch in range(self.batches_done() // steps_per_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            progbar = keras.utils.Progbar(
                steps_per_epoch, verbose=verbose, stateless_metrics=()
            )
            callbacks.on_epoch_begin(epoch)
            logs = self.train_epoch(
                x, y, batch_size, epoch, shuffle, callbacks, progbar, saver
            )
            if validation_data is not None and self.nan_step is None:
                logs.update(self.evaluate(*validation_data, prefix="val_"))
            seen = self.batches_done() - epoch * steps_per_epoch
            progbar.update(seen, list(logs.items()), finalize=True)
            callbacks.on_epoch_end(epoch, logs)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            if self.model.stop_training:
                break
        callbacks.on_train_end()
        if self.nan_step is not None and verbose:
            print(f"Stopped at step {self.nan_step}: non-finite loss or gradients; "
                  "its update was not applied.")
        return history

    def make_saver(self, directory, every, steps_per_epoch):
        """Return ``save(step)`` that checkpoints every ``every`` steps, or None."""
        if directory is None:
            if every is not None:
                raise ValueError("checkpoint_every needs a checkpoint_dir.")
            return None
        every = positive_number("checkpoint_every", every or steps_per_epoch)
        checkpoint = self.checkpoint(directory)
        checkpoint.restore_latest()  # nothing happens when the directory is new

        def save(step):
            if step % every == 0:
                checkpoint.save(step)

        return save


def check_data(x, y, batch_size):
    """Return ``x, y`` as arrays after checking they fit ("Training loops")."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"x and y must hold the same, non-zero number of samples; got "
            f"{len(x)} and {len(y)}."
        )
    positive_int("batch_size", batch_size)
    return x, y


def update_norms(trainer, x, y):
    """One ``train_step`` on ``(x, y)``; each weight's change norm ("Training loops").

    With plain SGD at learning rate 1 these are the norms of the applied gradients.
    """
    variables = trainer.model.trainable_variables
    before = [v.numpy() for v in variables]
    trainer.compiled_step("train_step", x, y)(x, y)  # returns (logs, stop)
    return [float(np.linalg.norm(v.numpy() - b)) for v, b in zip(variables, before)]


def loss_and_gradient_norm(model, loss_fn, x, y):
    """One batch's loss and global gradient norm, no update ("Training loops").

    Called eagerly and under ``tf.function``, it shows what each mode's kernels
    make of a NaN in the input.
    """
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, tf.linalg.global_norm(grads)


def trainer_run(trainer, x, y, batch_size):
    """A run for ``fitbook.timing.time_runs``: one more epoch of ``trainer``."""
    steps_per_epoch = math.ceil(len(x) / batch_size)

    def run():  # fit() goes on from where it stopped, so ask for one epoch more
        epochs = trainer.batches_done() // steps_per_epoch + 1
        return trainer.fit(x, y, batch_size, epochs=epochs, shuffle=False, verbose=0)

    return run


def measure_throughput(build_model, x, y, batch_size, mode, repeats=3):
    """Steps per second of a mode of MODES or ``"fit"`` (chapter "Training loops").

    ``time_runs`` trains one untimed warm-up epoch (tracing, compiling), then
    times ``repeats`` epochs one by one and keeps the fastest: other work on the
    machine can only slow an epoch down, so the best epoch is the least disturbed.
    """
    model = build_model()
    optimizer = keras.optimizers.Adam(1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if mode == "fit":
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        run = fit_run(model, x, y, batch_size)
    else:
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        trainer = Trainer(model, optimizer, loss, metrics, mode=mode)
        run = trainer_run(trainer, x, y, batch_size)
    steps = epoch_steps(len(x), batch_size)
    return time_run(mode, run, steps, repeats).steps_per_second
