"""The GAN under MirroredStrategy: with its noise drawn outside the step, two
replicas reach the single-device weights; drawn inside, it is the same on both.

The two-replica runs need the CPU split before TensorFlow's runtime starts, so
they run in a fresh Python process that prints its measurements as JSON.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from fitbook import distribute_gan as dg
from fitbook.gan import GAN
from fitbook.tf_noise import is_known_notice, is_startup_noise

ATOL = 1e-5  # replicas sum gradients in another order: float rounding only

REPLICATED = textwrap.dedent(
    """
    import fitbook
    from fitbook.distribute import split_cpu

    devices = split_cpu(2)

    import json

    import numpy as np
    import tensorflow as tf

    from fitbook import distribute_gan as dg
    from fitbook.gan import GAN

    mirrored = tf.distribute.MirroredStrategy(devices)
    one = tf.distribute.get_strategy()
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype="float32")
    data = dg.noise_dataset(x, dg.step_noise(2, 8), 8)
    images = tf.data.Dataset.from_tensor_slices(x).batch(8)
    out = {"replicas": mirrored.num_replicas_in_sync}
    reference, out["reference"] = dg.fit_gan_under(one, data)
    model, out["fit_losses"] = dg.fit_gan_under(mirrored, data)
    out["fit"] = dg.gan_weights_difference(model, reference)
    trainer, out["loop_losses"] = dg.loop_gan_under(mirrored, data)
    out["loop"] = dg.gan_weights_difference(trainer, reference)
    z = dg.replica_noise(mirrored)
    out["same_noise"] = bool(np.array_equal(z[0], z[1]))
    out["errors"] = {}
    for build in [(), ("model",)]:
        try:
            dg.fit_gan_under(mirrored, images, GAN, build=build)
            out["errors"][str(build)] = None
        except Exception as err:
            out["errors"][str(build)] = dg.first_line(err)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module", autouse=True)
def replicated_run():
    """Start the two-replica script when the module starts: it runs meanwhile."""
    process = subprocess.Popen(
        [sys.executable, "-c", REPLICATED],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def replicated(replicated_run):
    """Measurements of the two-replica runs, made in a fresh process."""
    stdout, stderr = replicated_run.communicate(timeout=150)
    stderr = [line for line in stderr.splitlines()
              if line.strip() and not is_startup_noise(line)
              and not is_known_notice(line)]
    assert replicated_run.returncode == 0, "\n".join(stderr[-20:])
    assert stderr == [], stderr  # no warnings from the replicated runs
    return json.loads(stdout.splitlines()[-1])


# First the one-process tests, while the two-replica script runs.


def test_noise_input_gan_reproduces_the_gan_on_one_device():
    x = np.random.default_rng(1).random((16, 28, 28, 1), dtype="float32")
    one = tf.distribute.get_strategy()
    noisy, losses = dg.fit_gan_under(
        one, dg.noise_dataset(x, dg.step_noise(2, 8), 8)
    )
    plain, plain_losses = dg.fit_gan_under(
        one, tf.data.Dataset.from_tensor_slices(x).batch(8), GAN
    )
    assert dg.gan_weights_difference(noisy, plain) == 0.0
    assert losses == plain_losses


def test_step_noise_shapes():
    noise = dg.step_noise(3, 4)
    assert noise["z_d"].shape == noise["z_g"].shape == (12, 128)
    assert noise["u_real"].shape == noise["u_fake"].shape == (12, 1)
    assert not np.array_equal(noise["z_d"], noise["z_g"])


def test_first_line():
    assert dg.first_line(ValueError("\nbad thing\nmore")) == "ValueError: bad thing"
    message = "Graph execution error:\n\n2 root error(s) found.\n"
    message += "  (0) INVALID_ARGUMENT:  No value for 'a/b' here\n"
    message += "  (1) INVALID_ARGUMENT: other"
    error = tf.errors.InvalidArgumentError(None, None, message)
    assert dg.first_line(error) == "InvalidArgumentError: No value for (...) here"


def test_fit_with_noise_in_the_batch_matches_one_device(replicated):
    assert replicated["replicas"] == 2
    assert replicated["fit"] < ATOL
    for name in ("d_loss", "g_loss"):  # reported losses: the undivided means
        assert replicated["fit_losses"][name] == pytest.approx(
            replicated["reference"][name], rel=1e-5
        )


def test_loop_under_strategy_matches_one_device(replicated):
    assert replicated["loop"] < ATOL


def test_noise_drawn_in_the_step_is_the_same_on_every_replica(replicated):
    assert replicated["same_noise"]


def test_unbuilt_gan_fails_under_fit_and_building_first_works(replicated):
    errors = replicated["errors"]
    assert errors["()"].startswith("ValueError: Exception encountered when calling")
    assert errors["('model',)"].startswith(
        "InvalidArgumentError: You must feed a value for placeholder tensor"
    )
