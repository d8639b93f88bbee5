"""Tests for fitbook.functional_api (chapter "The functional API at full strength")."""

import keras
import numpy as np
import pytest

from fitbook.functional_api import (
    ROWS,
    MaskedMean,
    RowPositions,
    SmoothedCrossEntropy,
    as_rows,
    draw_model,
    encoder_block,
    full_mask,
    graphviz_missing,
    row_classifier,
    smoothed_crossentropy_reference,
)


def small_classifier(**kwargs):
    return row_classifier(dim=8, num_heads=2, ff_dim=8, dropout=0.0, **kwargs)


def inputs(n, seed=0):
    rows = np.random.default_rng(seed).random((n, ROWS, 28), dtype=np.float32)
    return {"rows": rows, "mask": full_mask(n)}


def test_as_rows_accepts_images_with_and_without_a_channel_axis():
    x = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    assert as_rows(x).shape == (2, 28, 28)
    assert as_rows(x).dtype == np.float32
    assert as_rows(x[..., 0]).shape == (2, 28, 28)
    with pytest.raises(ValueError, match="shape"):
        as_rows(np.zeros((2, 784)))


def test_encoder_block_keeps_the_shape_and_checks_its_arguments():
    block = encoder_block(5, 8, num_heads=2, ff_dim=4)
    x, mask = np.ones((3, 5, 8), "float32"), np.ones((3, 5), "float32")
    out = block({"x": x, "mask": mask})
    assert tuple(out.shape) == (3, 5, 8)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        encoder_block(5, 9, num_heads=2)
    with pytest.raises(ValueError, match="ff_dim"):
        encoder_block(5, 8, ff_dim=0)


def test_reusing_the_block_shares_its_weights():
    once, twice = small_classifier(depth=1), small_classifier(depth=3)
    assert once.count_params() == twice.count_params()
    encoder = encoder_block(ROWS, 8, 2, 8, 0.0)
    a, b = small_classifier(encoder=encoder), small_classifier(encoder=encoder)
    assert a.get_layer("encoder") is b.get_layer("encoder")
    with pytest.raises(ValueError, match="depth"):
        small_classifier(depth=0)


def test_masked_rows_do_not_change_the_logits():
    model = small_classifier()
    data = inputs(2)
    data["mask"][:, 20:] = 0.0
    noisy = {"rows": data["rows"].copy(), "mask": data["mask"]}
    noisy["rows"][:, 20:] = 5.0
    np.testing.assert_allclose(
        np.asarray(model(data)), np.asarray(model(noisy)), atol=1e-6
    )
    unmasked = {"rows": noisy["rows"], "mask": full_mask(2)}
    assert np.abs(np.asarray(model(data)) - np.asarray(model(unmasked))).max() > 1e-3


def test_masked_mean_averages_the_real_steps_only():
    h = np.arange(12, dtype="float32").reshape(1, 4, 3)
    mask = np.array([[1, 1, 0, 0]], "float32")
    np.testing.assert_allclose(
        np.asarray(MaskedMean()(h, mask)), h[:, :2].mean(axis=1)
    )
    # an all-padding sequence gives zeros, not a division by zero
    empty = np.asarray(MaskedMean()(h, np.zeros((1, 4), "float32")))
    np.testing.assert_allclose(empty, 0.0)


def test_row_positions_add_one_vector_per_step():
    layer = RowPositions()
    x = np.ones((2, 4, 3), "float32")
    np.testing.assert_allclose(np.asarray(layer(x)), x)  # initialised to zeros
    assert tuple(layer.positions.shape) == (4, 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_smoothed_crossentropy_matches_two_references(smoothing):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 16)
    logits = rng.normal(size=(16, 10)).astype("float32")
    loss = float(SmoothedCrossEntropy(smoothing)(labels, logits))
    reference = smoothed_crossentropy_reference(labels, logits, smoothing)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    keras_loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=smoothing
    )(np.eye(10)[labels], logits)
    np.testing.assert_allclose(loss, float(keras_loss), rtol=1e-5)


def test_smoothed_crossentropy_config_and_bad_smoothing():
    loss = SmoothedCrossEntropy(0.2, reduction="sum")
    again = SmoothedCrossEntropy.from_config(loss.get_config())
    assert again.smoothing == 0.2 and again.reduction == "sum"
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        SmoothedCrossEntropy(1.0)


def test_the_model_trains_saves_and_loads_with_the_custom_loss(tmp_path):
    model = small_classifier()
    model.compile(optimizer="adam", loss=SmoothedCrossEntropy(0.1))
    data = inputs(32)
    labels = np.arange(32) % 10
    model.fit(data, labels, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, SmoothedCrossEntropy)
    np.testing.assert_allclose(
        np.asarray(loaded(data)), np.asarray(model(data)), atol=1e-6
    )


def test_draw_model_writes_an_image_or_says_what_is_missing(tmp_path, monkeypatch):
    model = small_classifier()
    if graphviz_missing() is None:
        path = draw_model(model, tmp_path / "g.png")
        assert path.stat().st_size > 0
    monkeypatch.setattr("shutil.which", lambda name: None)
    if graphviz_missing() is not None:
        with pytest.raises(RuntimeError, match="plot_model needs"):
            draw_model(model, tmp_path / "h.png")
