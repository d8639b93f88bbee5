"""Figures shared by the chapters: image grids first (chapter "The data")."""

import matplotlib.pyplot as plt
import numpy as np

from fitbook.data import CLASS_NAMES


def plot_image_grid(images, labels=None, class_names=CLASS_NAMES, ncols=8, title=None):
    """Draw images of shape (n, 28, 28, 1) in a grid, captioned by class name."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(
            f"images must have shape (n, height, width, 1), got {images.shape}."
        )
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images.")
    nrows = -(-len(images) // ncols)  # ceiling division
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i, :, :, 0], cmap="gray_r", vmin=0.0, vmax=1.0)
            if labels is not None:
                ax.set_title(class_names[int(labels[i])], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
