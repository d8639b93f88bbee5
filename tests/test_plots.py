"""Tests for fitbook.plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fitbook.plots import plot_image_grid  # noqa: E402


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
