"""Per-epoch training history as a figure (chapter "Training loops from scratch")."""

import matplotlib.pyplot as plt


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
