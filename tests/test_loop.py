"""The from-scratch loop: equal to fit(), and every option does what it says."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook.loop import (
    MODES,
    ActivityPenalty,
    LearningRateRecorder,
    Trainer,
    build_classifier,
    measure_throughput,
    minimal_fit,
    minimal_train_step,
    update_norms,
)

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def data():
    """100 random images with random labels: the last batch of 32 is partial."""
    rng = np.random.default_rng(0)
    x = rng.random((100, 28, 28, 1), dtype="float32")
    y = rng.integers(0, 10, size=100).astype("int64")
    return x, y


def small_model(seed=0, penalty=0.05):
    return build_classifier(hidden=16, dropout=0.3, penalty=penalty, seed=seed)


def make_trainer(seed=0, optimizer=None, **kwargs):
    optimizer = optimizer or keras.optimizers.Adam(0.01)
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return Trainer(small_model(seed), optimizer, LOSS, [accuracy], **kwargs)


def weights(model):
    return [w.numpy() for w in model.weights]


def assert_weights_equal(first, second, rtol=0.0):
    for a, b in zip(weights(first), weights(second), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)


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
    assert_weights_equal(trainer.model, keras_model)
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
    model = build_classifier(hidden=16, dropout=0.0, penalty=0.05)  # no dropout noise
    y_pred = model(x[:8], training=True)  # records the penalty in model.losses
    step_loss = float(
        minimal_train_step(model, keras.optimizers.SGD(0.0), LOSS, x[:8], y[:8])
    )
    assert model.losses and step_loss == pytest.approx(float(LOSS(y[:8], y_pred)))


@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm"])
def test_clipping_bounds_the_applied_update(data, option):
    x, y = data
    limit = 1e-3  # far below the raw gradient norm
    norms = {}
    for clip in (None, limit):
        trainer = make_trainer(optimizer=keras.optimizers.SGD(1.0), **{option: clip})
        norms[clip] = update_norms(trainer, x[:32], y[:32])  # = gradient norms
    if option == "clipnorm":
        assert max(norms[limit]) <= limit * (1 + 1e-4)
    else:
        assert np.linalg.norm(norms[limit]) <= limit * (1 + 1e-4)
    assert min(norms[None]) > 10 * limit  # without clipping the bound is exceeded


def test_update_norms_are_the_sgd_gradient_norms(data):
    x, y = data[0][:32], data[1][:32]
    model = build_classifier(hidden=16, dropout=0.0, penalty=0.05)  # deterministic
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
    assert_weights_equal(resumed.model, uninterrupted.model)  # bit for bit
    for a, b in zip(resumed.optimizer.variables, uninterrupted.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


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
    assert trainer.nan_step == 5 and int(trainer.step.numpy()) == 4 and finite
    clean = make_trainer()
    clean.fit(x[:80], y[:80], **options)  # the four good batches only
    assert_weights_equal(trainer.model, clean.model)
    restored = make_trainer(seed=7)
    assert restored.checkpoint(tmp_path).restore_latest() == 4
    assert_weights_equal(restored.model, clean.model)


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
