"""plot_history: one panel per metric, one point per epoch, clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from fitbook.history import plot_history  # noqa: E402


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
