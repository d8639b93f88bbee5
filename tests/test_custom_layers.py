"""Tests for fitbook.custom_layers (chapter "Custom layers and the functional API")."""

import keras
import numpy as np
import pytest

from fitbook.custom_layers import (
    DenseInCall,
    Linear,
    MLPBlock,
    build_two_head_model,
    image_features,
)

X = np.random.default_rng(0).random((5, 4), dtype=np.float32)


def test_linear_computes_x_kernel_plus_bias_and_round_trips_its_config():
    layer = Linear(3, name="lin")
    y = layer(X)
    expected = X @ np.asarray(layer.kernel) + np.asarray(layer.bias)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6)
    clone = Linear.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.units == 3 and clone.name == "lin"


@pytest.mark.parametrize("units", [0, -1, 2.5, True])
def test_linear_rejects_bad_units(units):
    with pytest.raises(ValueError, match="positive int"):
        Linear(units)


def test_mlp_block_tracks_the_weights_of_its_sub_layers():
    block = MLPBlock(8, 3)
    assert block(X).shape == (5, 3)
    assert [tuple(w.shape) for w in block.trainable_weights] == [
        (4, 8), (8,), (8, 3), (3,)
    ]


def test_sub_layer_created_in_call_gets_new_weights_every_call():
    layer = DenseInCall(2)
    first, second = np.asarray(layer(X)), np.asarray(layer(X))
    assert not np.allclose(first, second)  # same input, different outputs
    assert layer.trainable_weights == []  # nothing for an optimizer to train


def test_custom_layers_survive_a_keras_file_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((4,)), MLPBlock(8, 3), Linear(2)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [MLPBlock, Linear]
    np.testing.assert_array_equal(np.asarray(loaded(X)), np.asarray(model(X)))


def test_image_features_measure_ink_and_width():
    x = np.zeros((2, 28, 28, 1), dtype=np.float32)
    x[0, 5:10, 3:10] = 1.0  # 7 columns wide, 35 pixels
    x[1, :, :, :] = 0.05  # below the ink threshold everywhere
    ink, width = image_features(x)
    np.testing.assert_allclose(ink[:, 0], [35 / 784, 0.05], rtol=1e-6)
    np.testing.assert_allclose(width[:, 0], [7 / 28, 0.0])
    assert ink.dtype == width.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(n, height, width, 1\)"):
        image_features(np.zeros((2, 28, 28)))


def test_two_head_model_outputs_and_graph():
    model = build_two_head_model()
    out = model({"image": np.zeros((3, 28, 28, 1)), "ink": np.zeros((3, 1))})
    assert out["class"].shape == (3, 10) and out["width"].shape == (3, 1)
    concat = model.get_layer("concat")
    assert [t.shape[-1] for t in concat.input] == [16 * 6 * 6, 1]  # image path, ink
    assert model.get_layer("class").input is model.get_layer("width").input
