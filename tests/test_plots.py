"""Tests for fitbook.plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fitbook.plots import plot_history, plot_image_grid  # noqa: E402


def test_grid_has_one_titled_axis_per_image_and_hides_the_rest():
    images = np.random.default_rng(0).random((10, 28, 28, 1), dtype=np.float32)
    fig = plot_image_grid(images, labels=np.arange(10), ncols=4, title="t")
    axes = fig.axes
    assert len(axes) == 12  # 3 rows of 4
    assert [ax.get_title() for ax in axes[:2]] == ["T-shirt/top", "Trouser"]
    assert all(not ax.images for ax in axes[10:])
    assert fig._suptitle.get_text() == "t"


def test_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(n, height, width, 1\)"):
        plot_image_grid(np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        plot_image_grid(np.zeros((3, 28, 28, 1)), labels=[0, 1])


def test_grid_is_saved_opaque_so_it_stays_legible_on_the_dark_theme():
    import io

    from IPython.core.pylabtools import print_figure
    from PIL import Image

    fig = plot_image_grid(np.zeros((2, 28, 28, 1)), labels=[0, 1], ncols=2)
    png = print_figure(fig, "png")  # what myst-nb's glue stores for a figure
    alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[..., 3]
    assert alpha.min() == 255


def test_one_panel_per_metric_with_train_and_validation_curves():
    history = {
        "loss": [1.0, 0.6, 0.5],
        "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [0.9, 0.7, 0.65],
        "val_accuracy": [0.6, 0.7, 0.75],
    }
    fig = plot_history(history, title="demo")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    train, val = loss_ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3]  # epochs counted from 1
    assert list(train.get_ydata()) == history["loss"]  # every epoch, not the last
    assert list(val.get_ydata()) == history["val_loss"]
    assert loss_ax.get_xlabel() == "epoch" and fig._suptitle.get_text() == "demo"
    plt.close(fig)


def test_single_metric_without_validation():
    fig = plot_history({"loss": [3.0, 2.0]})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    plt.close(fig)


@pytest.mark.parametrize(
    "history,match",
    [
        ({}, "no training metrics"),
        ({"val_loss": [1.0]}, "no training metrics"),
        ({"loss": [1.0, 2.0], "val_loss": [1.0]}, "one value per epoch"),
        ({"loss": []}, "one value per epoch"),
    ],
)
def test_bad_history_is_explained(history, match):
    with pytest.raises(ValueError, match=match):
        plot_history(history)
