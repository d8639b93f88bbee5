"""The from-scratch loop: equal to fit(), and every option does what it says."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_same_weights, labeled_images
from fitbook.callbacks import LearningRateRecorder
from fitbook.loops import (
    MODES,
    Trainer,
    loss_and_gradient_norm,
    measure_throughput,
    minimal_fit,
    minimal_train_step,
    update_norms,
)
from fitbook.models import ActivityPenalty, classifier

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@pytest.fixture
def policy(request):
    """Set the global dtype policy for one test, then restore float32."""
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def data():
    """100 random images with random labels: the last batch of 32 is partial."""
    return labeled_images(100, seed=0)


def small_model(seed=0, penalty=0.05):
    return classifier(hidden=16, dropout=0.3, penalty=penalty, seed=seed)


def make_trainer(seed=0, optimizer=None, **kwargs):
    optimizer = optimizer or keras.optimizers.Adam(0.01)
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return Trainer(small_model(seed), optimizer, LOSS, [accuracy], **kwargs)


def weights(model):
    return [w.numpy() for w in model.weights]


@pytest.mark.parametrize("mode", MODES)
def test_same_weights_and_history_as_keras_fit(data, mode):
    x, y = data
    keras_model = small_model()
    keras_model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=LOSS,
        metrics=["accuracy"],
        jit_compile=mode == "jit",  # XLA draws other dropout masks than TF kernels
    )
    expected = keras_model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    trainer = make_trainer(mode=mode)
    history = trainer.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    # Same initial weights, data order, dropout masks and loss (with model.losses):
    # the same weights, bit for bit.
    assert_same_weights(trainer.model, keras_model)
    np.testing.assert_allclose(history["loss"], expected.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(history["accuracy"], expected.history["accuracy"])


def test_evaluate_matches_keras_evaluate(data):
    x, y = data
    trainer = make_trainer()
    trainer.model.compile(loss=LOSS, metrics=["accuracy"])
    loss, accuracy = trainer.model.evaluate(x, y, batch_size=256, verbose=0)
    logs = trainer.evaluate(x, y, prefix="val_")
    assert logs == pytest.approx({"val_loss": loss, "val_accuracy": accuracy}, rel=1e-5)


def test_model_losses_are_part_of_the_loss(data):
    x, y = data
    trainer = make_trainer()
    y_pred = trainer.model(x[:8])
    hidden = trainer.model.layers[1](trainer.model.layers[0](x[:8]))
    penalty = 0.05 * float(keras.ops.mean(keras.ops.abs(hidden)))
    assert penalty > 1e-4  # otherwise the check below could not fail
    total = float(trainer.compute_loss(y[:8], y_pred))
    assert total == pytest.approx(float(LOSS(y[:8], y_pred)) + penalty, rel=1e-5)


def test_minimal_loop_trains_but_ignores_model_losses(data, capsys):
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = small_model()
    losses = minimal_fit(model, keras.optimizers.Adam(0.01), LOSS, dataset, epochs=3)
    assert losses[-1] < losses[0] and "epoch 3/3" in capsys.readouterr().out
    model = classifier(hidden=16, dropout=0.0, penalty=0.05, seed=0)  # no dropout noise
    y_pred = model(x[:8], training=True)  # records the penalty in model.losses
    step_loss = float(
        minimal_train_step(model, keras.optimizers.SGD(0.0), LOSS, x[:8], y[:8])
    )
    assert model.losses and step_loss == pytest.approx(float(LOSS(y[:8], y_pred)))


@pytest.mark.equivalence
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"], indirect=True)
@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm"])
def test_clipping_bounds_the_applied_update(data, option, policy):
    x, y = data
    limit = 1e-3  # far below the raw gradient norm
    norms = {}
    for clip in (None, limit):
        trainer = make_trainer(optimizer=keras.optimizers.SGD(1.0), **{option: clip})
        norms[clip] = update_norms(trainer, x[:32], y[:32])  # = gradient norms
    # The bound is reached, not undercut: under loss scaling the gradients are
    # clipped in unscaled units (else the update would be 32768 times smaller).
    if option == "clipnorm":
        assert max(norms[limit]) == pytest.approx(limit, rel=1e-3)
    else:
        assert np.linalg.norm(norms[limit]) == pytest.approx(limit, rel=1e-3)
    assert min(norms[None]) > 10 * limit  # without clipping the bound is exceeded


def test_update_norms_are_the_sgd_gradient_norms(data):
    x, y = data[0][:32], data[1][:32]
    model = classifier(hidden=16, dropout=0.0, penalty=0.05, seed=0)  # deterministic
    trainer = Trainer(model, keras.optimizers.SGD(1.0), LOSS)
    with tf.GradientTape() as tape:
        loss = trainer.compute_loss(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    expected = [float(np.linalg.norm(g)) for g in grads]
    np.testing.assert_allclose(update_norms(trainer, x, y), expected, rtol=1e-4)


def test_schedule_sets_the_learning_rate_of_every_step():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [2, 4], [0.5, 0.1, 0.02]
    )
    optimizer = keras.optimizers.SGD(schedule)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(np.zeros((3, 1), "float32"))
    loss = lambda y, y_pred: keras.ops.mean(y_pred)  # noqa: E731  gradient = mean(x)
    trainer = Trainer(model, optimizer, loss)
    recorder = LearningRateRecorder(optimizer)
    kernels = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append(model.get_weights()[0])
    )
    steps = []
    x, y = np.ones((12, 3), "float32"), np.zeros((12, 1), "float32")
    trainer.fit(x, y, batch_size=2, callbacks=[recorder, kernels], verbose=0)
    expected = [float(schedule(step)) for step in range(6)]
    # PiecewiseConstantDecay keeps a value up to and including its boundary.
    assert recorder.learning_rates == pytest.approx([0.5, 0.5, 0.5, 0.1, 0.1, 0.02])
    assert recorder.learning_rates == pytest.approx(expected)
    # The update actually applied at each step is that learning rate times 1.
    updates = -np.diff([np.zeros((3, 1)), *steps], axis=0)[:, 0, 0]
    np.testing.assert_allclose(updates, expected, rtol=1e-6)


def test_early_stopping_stops_the_custom_loop(data):
    x, y = data
    trainer = make_trainer()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)
    history = trainer.fit(
        x, y, 32, epochs=10, validation_data=(x, y), callbacks=[stop], verbose=0
    )
    assert len(history["val_loss"]) == 2 and stop.stopped_epoch == 1
    assert trainer.model.stop_training


def test_interrupted_run_resumes_to_the_same_weights(data, tmp_path):
    x, y = data
    uninterrupted = make_trainer()
    uninterrupted.fit(x, y, batch_size=32, epochs=3, verbose=0)

    class Crash(Exception):
        pass

    def crash_at_step_7(batch, logs):
        if int(interrupted.step.numpy()) == 7:
            raise Crash("power cut")

    interrupted = make_trainer()
    crash = keras.callbacks.LambdaCallback(on_train_batch_end=crash_at_step_7)
    options = dict(batch_size=32, epochs=3, verbose=0, checkpoint_dir=tmp_path)
    with pytest.raises(Crash):
        interrupted.fit(x, y, checkpoint_every=3, callbacks=[crash], **options)
    resumed = make_trainer(seed=123)  # a new process: other initial weights
    resumed.fit(x, y, checkpoint_every=3, **options)  # restores step 6, goes on
    assert int(resumed.step.numpy()) == 12 == int(uninterrupted.step.numpy())
    assert_same_weights(resumed.model, uninterrupted.model)  # bit for bit
    for a, b in zip(resumed.optimizer.variables, uninterrupted.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.guard
@pytest.mark.parametrize("nan_guard", [True, False])
def test_nan_guard_stops_before_a_bad_update(data, tmp_path, nan_guard):
    x, y = data
    x_bad = x.copy()
    x_bad[4 * 20 + 3] = np.nan  # a sample of the fifth batch of 20
    trainer = make_trainer(nan_guard=nan_guard)
    options = dict(batch_size=20, shuffle=False, verbose=0)
    trainer.fit(x_bad, y, checkpoint_dir=tmp_path, checkpoint_every=2, **options)
    finite = all(np.isfinite(w).all() for w in weights(trainer.model))
    if not nan_guard:  # the bad step is applied and poisons the weights
        assert not finite
        return
    # Whether this batch's *loss* is NaN depends on the CPU's kernels (a fused
    # MatMul+BiasAdd+ReLU may zero the NaN row in graph mode); its gradients are
    # NaN on every kernel: the first kernel's gradient is x^T times the deltas.
    assert trainer.nan_step == 5 and int(trainer.step.numpy()) == 4 and finite
    assert int(trainer.skipped.numpy()) == 1  # counted, never silent
    clean = make_trainer()
    clean.fit(x[:80], y[:80], **options)  # the four good batches only
    assert_same_weights(trainer.model, clean.model)
    restored = make_trainer(seed=7)
    assert restored.checkpoint(tmp_path).restore_latest() == 4
    assert_same_weights(restored.model, clean.model)


@tf.custom_gradient
def nan_gradient_if(x, bad):
    """Identity; its gradient is NaN when ``bad``: a finite loss, NaN gradients."""

    def grad(upstream):
        poison = tf.cast(tf.where(bad, np.nan, 1.0), upstream.dtype)
        return upstream * poison, None

    return tf.identity(x), grad


def poisoned_mse(y, y_pred):
    """MSE; a batch holding a target of -1 gets NaN gradients but a finite loss."""
    y_pred = nan_gradient_if(tf.cast(y_pred, "float32"), tf.reduce_any(y == -1.0))
    return tf.reduce_mean(tf.square(y - y_pred))


def regression_trainer(mode="function", **kwargs):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(np.full((3, 1), 0.5, "float32"))
    return Trainer(model, keras.optimizers.SGD(0.1), poisoned_mse, mode=mode, **kwargs)


def regression_data(bad):
    """Six batches of two; the third holds a NaN target or the -1 marker (or not)."""
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 3), "float32"), rng.random((12, 1), "float32")
    y[5] = {"nan_loss": np.nan, "nan_gradients": -1.0, None: y[5, 0]}[bad]
    return x, y


@pytest.mark.guard
@pytest.mark.parametrize("bad", ["nan_gradients", "nan_loss"])
@pytest.mark.parametrize("mode", MODES)
def test_nan_guard_decides_in_the_step(mode, bad):
    x, y = regression_data(bad)
    trainer = regression_trainer(mode)
    compiled = trainer.compiled_step("train_step", x, y)
    logs, stop = compiled(x[4:6], y[4:6])  # the bad batch
    assert bool(stop) and int(trainer.skipped.numpy()) == 1
    assert int(trainer.step.numpy()) == 0 == int(trainer.optimizer.iterations)
    assert float(logs["loss"]) == 0.0  # the bad batch stayed out of the metrics
    np.testing.assert_array_equal(trainer.model.layers[0].kernel.numpy(), 0.5)
    # In a run, training stops there: two updates, one refused, none silently.
    trainer = regression_trainer(mode)
    history = trainer.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    assert trainer.nan_step == 3 and int(trainer.step.numpy()) == 2
    assert int(trainer.skipped.numpy()) == 1
    clean = regression_trainer(mode)
    expected = clean.fit(x[:4], y[:4], batch_size=2, shuffle=False, verbose=0)
    assert_same_weights(trainer.model, clean.model)
    assert history["loss"] == expected["loss"]  # the mean of the good batches


@pytest.mark.guard
def test_a_run_stopped_before_any_update_logs_nan_not_zero():
    x, y = regression_data("nan_loss")
    trainer = regression_trainer("eager")
    history = trainer.fit(x[4:], y[4:], batch_size=2, shuffle=False, verbose=0)
    assert trainer.nan_step == 1 and int(trainer.step.numpy()) == 0
    assert np.isnan(history["loss"]).all()  # no batch entered the mean


@pytest.mark.guard
def test_without_the_guard_a_finite_loss_with_nan_gradients_poisons():
    x, y = regression_data("nan_gradients")
    trainer = regression_trainer(nan_guard=False)
    trainer.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    assert trainer.nan_step is None and int(trainer.step.numpy()) == 6
    assert np.isnan(trainer.model.layers[0].kernel.numpy()).all()


@pytest.mark.guard
@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
@pytest.mark.parametrize("bad", ["nan_gradients", "nan_loss", None])
def test_nan_guard_and_the_loss_scale_optimizer(policy, bad):
    x, y = regression_data(bad)
    trainer = regression_trainer()
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    history = trainer.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    scale = float(trainer.optimizer.dynamic_scale.numpy())
    step, skipped = int(trainer.step.numpy()), int(trainer.skipped.numpy())
    if bad == "nan_loss":  # the guard stops before the optimizer sees the batch
        assert (trainer.nan_step, step, skipped, scale) == (3, 2, 1, 2.0**15)
    elif bad == "nan_gradients":  # read as an overflow: the optimizer skips it,
        # halves its scale, and training goes on; the guard only counts it
        assert (trainer.nan_step, step, skipped, scale) == (None, 5, 1, 2.0**14)
    else:
        assert (trainer.nan_step, step, skipped, scale) == (None, 6, 0, 2.0**15)
    assert step == int(trainer.optimizer.iterations.numpy())
    assert np.isfinite(trainer.model.layers[0].kernel.numpy()).all()
    assert np.isfinite(history["loss"]).all()


@pytest.mark.equivalence
@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_one_step_equals_keras_fit_under_every_dtype_policy(data, policy):
    x, y = data[0][:32], data[1][:32]
    keras_model = small_model()
    keras_model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    expected = keras_model.fit(x, y, batch_size=32, shuffle=False, verbose=0)
    trainer = Trainer(small_model(), keras.optimizers.SGD(0.1), LOSS)
    history = trainer.fit(x, y, batch_size=32, shuffle=False, verbose=0)
    scaled = policy == "mixed_float16"  # then both wrap SGD in a LossScaleOptimizer
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    assert type(trainer.optimizer) is type(keras_model.optimizer)
    assert_same_weights(trainer.model, keras_model, rtol=1e-6, atol=1e-8)
    assert history["loss"] == pytest.approx(expected.history["loss"], rel=1e-6)
    change = np.linalg.norm(keras_model.layers[1].kernel.numpy() - weights(
        small_model())[0])
    assert change > 1e-3  # a real step (not one 32768 times too small)


@pytest.mark.parametrize("compiled", [False, True])
def test_loss_and_gradient_norm(data, compiled):
    x, y = data[0][:8], data[1][:8]
    model = classifier(hidden=16, dropout=0.0, seed=0)
    probe = tf.function(loss_and_gradient_norm) if compiled else loss_and_gradient_norm
    loss, norm = probe(model, LOSS, x, y)
    with tf.GradientTape() as tape:
        expected = LOSS(y, model(x))
    grads = tape.gradient(expected, model.trainable_variables)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(norm) == pytest.approx(float(tf.linalg.global_norm(grads)), rel=1e-4)
    x_bad = x.copy()
    x_bad[3] = np.nan
    assert not np.isfinite(float(probe(model, LOSS, x_bad, y)[1]))  # on any kernel


def test_keras_format_round_trip(data, tmp_path):
    x, _ = data
    trainer = make_trainer()
    trainer.fit(x, data[1], batch_size=32, verbose=0)
    path = tmp_path / "classifier.keras"
    trainer.model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: it is registered
    penalty = [layer for layer in loaded.layers if isinstance(layer, ActivityPenalty)]
    assert len(penalty) == 1 and penalty[0].rate == 0.05
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), trainer.model.predict(x, verbose=0)
    )


@pytest.mark.parametrize(
    "mode,input_signature,traces",
    [("function", False, 2), ("function", True, 1), ("eager", True, 8)],
)
def test_trace_count(data, mode, input_signature, traces):
    x, y = data  # batches of 32, 32, 32 and 4: two shapes, four steps per epoch
    trainer = make_trainer(mode=mode, input_signature=input_signature)
    trainer.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert trainer.trace_count == traces


def test_progress_bar_prints_one_line_per_epoch(data, capsys):
    x, y = data
    make_trainer().fit(x, y, batch_size=32, epochs=2, validation_data=(x, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "Epoch 1/2" and len(lines) == 4
    assert lines[1].startswith("4/4 - ") and "val_accuracy:" in lines[1]


@pytest.mark.parametrize("mode", ["function", "fit"])
def test_measure_throughput_is_positive(data, mode):
    x, y = data
    assert measure_throughput(small_model, x, y, 32, mode, repeats=1) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "graph"}, "mode must be one of"),
        ({"clipnorm": -1.0}, "clipnorm must be a positive number"),
        ({"global_clipnorm": 0}, "global_clipnorm must be a positive number"),
    ],
)
def test_bad_trainer_options_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(**kwargs)


def test_unbuilt_model_is_explained():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="keras.Input"):
        Trainer(model, keras.optimizers.SGD(), LOSS)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"y": np.zeros(3, "int64")}, "same, non-zero number of samples"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"checkpoint_every": 2}, "checkpoint_every needs a checkpoint_dir"),
    ],
)
def test_bad_fit_arguments_are_explained(data, kwargs, match):
    arguments = {"x": data[0], "y": data[1], "batch_size": 32, "verbose": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_trainer().fit(**arguments)


def test_negative_penalty_is_explained():
    with pytest.raises(ValueError, match="rate must be a non-negative number"):
        ActivityPenalty(-0.1)
