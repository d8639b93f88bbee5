"""Custom layers and a two-input, two-output functional model (chapter "Custom layers").

``Linear`` creates its weights in ``build``, ``MLPBlock`` creates its
sub-layers in ``__init__``, and ``DenseInCall`` makes the classic mistake of
creating a sub-layer inside ``call``, so the chapter can show what goes wrong.
"""

import keras
import numpy as np
from keras import ops

from fitbook.checks import positive_int

INK_THRESHOLD = 0.1  # a pixel darker than this counts as ink (images are in [0, 1])


@keras.saving.register_keras_serializable(package="fitbook")
class Linear(keras.layers.Layer):
    """``x @ kernel + bias``, weights made in ``build`` (chapter "Custom layers")."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)

    def build(self, input_shape):
        # Called once, on the first call, when the input size is known.
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.units,), initializer="zeros", name="bias"
        )

    def call(self, x):
        return ops.matmul(x, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="fitbook")
class MLPBlock(keras.layers.Layer):
    """Two ``Linear`` layers made in ``__init__`` (chapter "Custom layers")."""

    def __init__(self, hidden_units, units, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_units
        self.units = units
        # Assigned to attributes, so Keras tracks them and their weights;
        # each builds itself on its first call.
        self.hidden = Linear(hidden_units)
        self.out = Linear(units)

    def build(self, input_shape):
        # Build the sub-layers now, so a loaded model has weights to restore into.
        self.hidden.build(input_shape)
        self.out.build((*input_shape[:-1], self.hidden_units))

    def call(self, x):
        return self.out(ops.relu(self.hidden(x)))

    def get_config(self):
        config = super().get_config()
        return {**config, "hidden_units": self.hidden_units, "units": self.units}


class DenseInCall(keras.layers.Layer):
    """The mistake: a new sub-layer in every ``call`` (chapter "Custom layers")."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, x):
        # A local variable: Keras never tracks it, and each call draws new weights.
        dense = keras.layers.Dense(self.units)
        return dense(x)


def image_features(x):
    """Two scalars per image: ink (mean pixel) and width (chapter "Custom layers").

    ``width`` is the fraction of the 28 columns that hold any pixel above
    ``INK_THRESHOLD``; both are float32 arrays of shape ``(n, 1)``.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"x must have shape (n, height, width, 1), got {x.shape}.")
    ink = x.mean(axis=(1, 2, 3))
    width = (x[..., 0] > INK_THRESHOLD).any(axis=1).mean(axis=1)
    return ink[:, None].astype("float32"), width[:, None].astype("float32")


def build_two_head_model(num_classes=10):
    """Image + ink in, class + width out (chapter "Custom layers")."""
    image = keras.Input(shape=(28, 28, 1), name="image")
    ink = keras.Input(shape=(1,), name="ink")
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv")(image)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Concatenate(name="concat")([h, ink])
    h = MLPBlock(64, 32, name="mlp")(h)
    return keras.Model(
        inputs={"image": image, "ink": ink},
        outputs={
            "class": keras.layers.Dense(
                num_classes, activation="softmax", name="class"
            )(h),
            "width": keras.layers.Dense(1, name="width")(h),
        },
        name="two_heads",
    )
