"""tf.distribute: replicated training reaches the single-device weights.

The replicated runs need the CPU split into two logical devices before
TensorFlow's runtime starts, so they run in a fresh Python process (the script
below) that prints its measurements as JSON; this pytest process keeps one CPU.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import labeled_images
from fitbook.distribute import (
    DistributedTrainer,
    MirroredTrainStepModel,
    PerReplicaMeanTrainer,
    batched,
    examples_per_second,
    fit_under,
    loop_under,
    max_weight_difference,
    split_cpu,
)
from fitbook.models import classifier
from fitbook.tf_noise import is_known_notice, is_startup_noise

ATOL = 1e-5  # replicas sum gradients in another order: float rounding only

REPLICATED = textwrap.dedent(
    """
    import fitbook
    from fitbook.distribute import split_cpu

    devices = split_cpu(2)  # first, before anything starts TensorFlow's runtime

    import json

    import keras
    import numpy as np
    import tensorflow as tf

    from fitbook import distribute as d
    from fitbook.models import classifier
    from fitbook.train_step import CustomTrainStepModel

    rng = np.random.default_rng(0)
    x = rng.random((72, 28, 28, 1), dtype="float32")  # 4 batches of 16, one of 8
    y = rng.integers(0, 10, size=72).astype("int64")
    one = tf.distribute.get_strategy()  # the default: one device, no replicas
    mirrored = tf.distribute.MirroredStrategy(devices)
    out = {"devices": devices, "again": d.split_cpu(2),
           "replicas": mirrored.num_replicas_in_sync}

    # The trusted reference: Keras' own train_step, one device, same batches.
    reference, history = d.fit_under(one, keras.Model, x, y, 16, epochs=2)
    out["reference_loss"] = history["loss"]
    for name, cls in [("fixed", d.MirroredTrainStepModel),
                      ("unchanged", CustomTrainStepModel)]:
        model, history = d.fit_under(mirrored, cls, x, y, 16, epochs=2)
        out[name] = [d.max_weight_difference(model, reference), history["loss"]]
    for name, cls in [("loop", d.DistributedTrainer),
                      ("wrong", d.PerReplicaMeanTrainer)]:
        model, losses = d.loop_under(mirrored, cls, x, y, 16, epochs=2)
        out[name] = [d.max_weight_difference(model, reference), losses]
    doubled, history = d.fit_under(one, keras.Model, x, y, 16, 2, learning_rate=0.2)
    out["wrong_vs_doubled_lr"] = d.max_weight_difference(model, doubled)
    out["doubled_lr_loss"] = history["loss"]

    # 41 examples: the last batch of 9 splits 5 + 4 between the replicas.
    short, _ = d.fit_under(one, keras.Model, x[:41], y[:41], 16, epochs=2)
    model, _ = d.loop_under(mirrored, d.DistributedTrainer, x[:41], y[:41], 16, 2)
    out["loop_uneven"] = d.max_weight_difference(model, short)

    # An add_loss() term, divided among the replicas like the data loss.
    logits = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    def penalised():
        return classifier(hidden=16, dropout=0.0, penalty=0.1, seed=0)
    expected = penalised()
    expected.compile(optimizer=keras.optimizers.SGD(0.1), loss=logits)
    expected.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    with mirrored.scope():
        model, optimizer = penalised(), keras.optimizers.SGD(0.1)
    per_example = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)
    d.DistributedTrainer(mirrored, model, optimizer, per_example).fit(x, y, 16)
    out["loop_penalty"] = d.max_weight_difference(model, expected)
    print(json.dumps(out))
    """
)


class Background:
    """A script running in a fresh interpreter while other tests run."""

    def __init__(self, code):
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def result(self, timeout):
        """Its last stdout line as JSON, and its stderr lines other than noise."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        stderr = [
            line for line in stderr.splitlines()
            if line.strip() and not is_startup_noise(line)
            and not is_known_notice(line)
        ]
        assert self.process.returncode == 0, "\n".join(stderr[-20:])
        return json.loads(stdout.splitlines()[-1]), stderr


def mlp(hidden):
    """The chapter's functional softmax MLP, seed 0."""
    return classifier(keras.Model, hidden=hidden, seed=0, probabilities=True)


@pytest.fixture(scope="module", autouse=True)
def replicated_run():
    """Start the two-replica script when the module starts: it runs meanwhile."""
    run = Background(REPLICATED)
    yield run
    if run.process.poll() is None:
        run.process.kill()
        run.process.wait()


@pytest.fixture(scope="module")
def replicated(replicated_run):
    """Measurements of the two-replica runs, made in a fresh process."""
    results, stderr = replicated_run.result(timeout=180)
    assert stderr == [], stderr  # no warnings from the replicated runs
    return results


@pytest.fixture(scope="module")
def data():
    return labeled_images(48, seed=1)


def test_the_script_really_ran_two_replicas(replicated):
    assert replicated["replicas"] == 2
    assert replicated["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert replicated["again"] == replicated["devices"]  # idempotent after start


def test_fit_with_custom_train_step_matches_one_device(replicated):
    difference, losses = replicated["fixed"]
    assert difference < ATOL
    np.testing.assert_allclose(losses, replicated["reference_loss"], rtol=1e-5)


def test_unchanged_custom_train_step_trains_right_but_reports_half(replicated):
    difference, losses = replicated["unchanged"]
    assert difference < ATOL
    ratio = np.array(losses) / np.array(replicated["reference_loss"])
    np.testing.assert_allclose(ratio, 0.5, rtol=1e-5)


def test_custom_loop_matches_one_device(replicated):
    difference, losses = replicated["loop"]
    assert difference < ATOL
    np.testing.assert_allclose(losses, replicated["reference_loss"], rtol=1e-5)


def test_custom_loop_matches_with_a_batch_split_unevenly(replicated):
    assert replicated["loop_uneven"] < ATOL


def test_custom_loop_adds_model_losses_once(replicated):
    assert replicated["loop_penalty"] < ATOL


def test_per_replica_mean_doubles_the_learning_rate(replicated):
    difference, losses = replicated["wrong"]
    assert difference > 100 * ATOL
    assert replicated["wrong_vs_doubled_lr"] < ATOL
    # It also reports the sum of the replicas' means: twice the batch's mean loss.
    doubled = 2 * np.array(replicated["doubled_lr_loss"])
    np.testing.assert_allclose(losses, doubled, rtol=1e-5)


def test_split_cpu_after_the_runtime_started():
    count = len(tf.config.list_logical_devices("CPU"))  # starts the runtime here
    assert len(split_cpu(count)) == count  # what it already is: fine
    with pytest.raises(RuntimeError, match=r"right after `import fitbook`"):
        split_cpu(count + 1)
    assert len(tf.config.list_logical_devices("CPU")) == count


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "2", None])
def test_split_cpu_rejects_bad_counts(n):
    with pytest.raises(ValueError, match="positive int"):
        split_cpu(n)


def test_one_replica_loop_and_fit_match_keras_fit(data):
    x, y = data
    one = tf.distribute.get_strategy()
    reference, history = fit_under(one, keras.Model, x, y, 16, epochs=2)
    model, h = fit_under(one, MirroredTrainStepModel, x, y, 16, epochs=2)
    assert max_weight_difference(model, reference) < ATOL
    np.testing.assert_allclose(h["loss"], history["loss"], rtol=1e-6)
    model, losses = loop_under(one, DistributedTrainer, x, y, 16, epochs=2)
    assert max_weight_difference(model, reference) < ATOL
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-5)
    # With one replica the per-replica mean is the global mean: the bug hides.
    model, _ = loop_under(one, PerReplicaMeanTrainer, x, y, 16, epochs=2)
    assert max_weight_difference(model, reference) < ATOL


def new_trainer(strategy, loss=None, model=None):
    with strategy.scope():
        model = model or mlp(hidden=8)
        optimizer = keras.optimizers.SGD(0.1)
    loss = loss or keras.losses.SparseCategoricalCrossentropy(reduction=None)
    return DistributedTrainer(strategy, model, optimizer, loss)


def test_trainer_rejects_a_reduced_loss():
    loss = keras.losses.SparseCategoricalCrossentropy()  # sum_over_batch_size
    with pytest.raises(ValueError, match="reduction=None"):
        new_trainer(tf.distribute.get_strategy(), loss=loss)


def test_trainer_rejects_a_model_built_outside_the_scope():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with pytest.raises(ValueError, match=r"inside `with strategy.scope\(\):`"):
        new_trainer(strategy, model=mlp(hidden=8))


def test_trainer_rejects_a_model_without_weights():
    unbuilt = keras.Sequential([keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="no weights yet"):
        new_trainer(tf.distribute.get_strategy(), model=unbuilt)


@pytest.mark.parametrize("size", [0, 16.0, True])
def test_trainer_rejects_bad_batch_sizes(data, size):
    with pytest.raises(ValueError, match="global_batch_size"):
        new_trainer(tf.distribute.get_strategy()).fit(*data, size)


def test_trainer_rejects_mismatched_data(data):
    x, y = data
    with pytest.raises(ValueError, match="same, non-zero number"):
        new_trainer(tf.distribute.get_strategy()).fit(x, y[:-1], 16)


def test_batched_keeps_order_and_shards_by_data(data):
    x, y = data
    dataset = batched(x, y, 20)
    assert [len(b) for b, _ in dataset] == [20, 20, 8]
    np.testing.assert_array_equal(np.concatenate([b for _, b in dataset]), y)
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_max_weight_difference():
    first, second = mlp(hidden=4), mlp(hidden=4)
    assert max_weight_difference(first, second) == 0.0
    weights = second.get_weights()
    weights[1][2] += 0.25
    second.set_weights(weights)
    assert max_weight_difference(first, second) == pytest.approx(0.25)


def test_examples_per_second_is_positive(data):
    x, y = data
    assert examples_per_second(tf.distribute.get_strategy(), x, y, 16, repeats=1) > 0


# The two-worker example: pure helpers first, then a real run on localhost.


