"""fitbook.batches: unpack_x and check_images (the other helpers are tested with
the chapters that introduced them: test_train_step, test_sample_weights,
test_gan)."""

import numpy as np
import pytest
import tensorflow as tf

from fitbook.batches import check_images, unpack_x


@pytest.mark.parametrize(
    "batch", ["x", ("x",), ("x", "y"), ("x", "y", "w")], ids=["x", "(x,)", "xy", "xyw"]
)
def test_unpack_x_takes_the_inputs_of_every_batch_form(batch):
    x, y, w = tf.zeros((2, 3)), tf.ones(2), tf.ones(2)
    parts = {"x": x, "y": y, "w": w}
    data = parts[batch] if isinstance(batch, str) else tuple(parts[k] for k in batch)
    assert unpack_x(data) is x


def test_check_images_casts_and_names_the_expected_shape():
    x = check_images(np.zeros((2, 28, 28, 1), "float64"))
    assert x.dtype == "float32"
    with pytest.raises(ValueError, match=r"The GAN expects .*\(batch, 28, 28, 1\)"):
        check_images(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"The critic expects .*\(batch, 4, 4, 1\)"):
        check_images(np.zeros((2, 28, 28, 1)), (4, 4, 1), "The critic")
