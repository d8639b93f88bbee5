"""Building block: figures shared by the chapters (image grids, training histories)."""

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


def plot_history(history, title="Training history"):
    """Plot ``{name: [value per epoch]}``, train next to ``val_`` ("Training loops")."""
    names = [name for name in history if not name.startswith("val_")]
    if not names:
        raise ValueError(
            "history has no training metrics; expected a dict such as "
            "{'loss': [...], 'val_loss': [...]} with one value per epoch."
        )
    lengths = {len(values) for values in history.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "every metric in history needs one value per epoch (same, non-zero "
            f"length); got lengths {sorted(lengths)}."
        )
    epochs = range(1, lengths.pop() + 1)
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False
    )
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, history[name], "o-", label="training")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.set_xticks(list(epochs))
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def smooth(values, window):
    """Means of ``window`` consecutive values: a moving average (chapters "A GAN"
    and "WGAN-GP")."""
    values = np.asarray(values, dtype="float64")
    if not 1 <= window <= len(values):
        raise ValueError(f"window must be in 1..{len(values)}, got {window}.")
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_losses(steps, d_loss, g_loss, window=50, title="GAN losses"):
    """Figure of both losses against steps, averaged over ``window`` steps."""
    if len(steps) < window:
        raise ValueError(f"Need at least window={window} steps, got {len(steps)}.")
    x = np.asarray(steps)[window - 1 :]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in (("discriminator", d_loss), ("generator", g_loss)):
        ax.plot(x, smooth(values, window), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"loss (mean of {window} steps)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
