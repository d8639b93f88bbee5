"""FLOP counts from layer shapes against TensorFlow's own profiler ("Performance")."""

import keras
import pytest

from fitbook.models import build_discriminator, build_generator
from fitbook.performance_flops import (
    conv2d_macs,
    conv2d_transpose_macs,
    dense_macs,
    elementwise_share,
    gan_step_flops,
    gan_step_macs,
    layer_macs,
    network_macs,
    params_count,
    profiler_forward_flops,
)

BATCH = 2  # the profiler counts a whole batch; the functions count one sample


def one_layer(input_shape, layer):
    """A Sequential model of a single layer on ``keras.Input(input_shape)``."""
    return keras.Sequential([keras.Input(input_shape), layer])


@pytest.mark.parametrize(
    "input_shape,layer,op",
    [
        ((7,), keras.layers.Dense(5), "MatMul"),
        ((3, 7), keras.layers.Dense(5), "MatMul"),  # Dense on the last axis
        ((9, 9, 3), keras.layers.Conv2D(4, 3), "Conv2D"),
        ((9, 9, 3), keras.layers.Conv2D(4, 3, strides=2, padding="same"), "Conv2D"),
        ((8, 8, 2), keras.layers.Conv2D(3, (5, 1), padding="same"), "Conv2D"),
        (
            (5, 5, 3),
            keras.layers.Conv2DTranspose(4, 3, padding="same"),
            "Conv2DBackpropInput",
        ),
        (
            (5, 5, 3),
            keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same"),
            "Conv2DBackpropInput",
        ),
    ],
)
def test_layer_macs_match_tensorflow_profiler(input_shape, layer, op):
    model = one_layer(input_shape, layer)
    by_op = profiler_forward_flops(model, BATCH)
    assert by_op[op] == 2 * BATCH * layer_macs(layer)


def test_valid_transposed_conv_profiler_also_counts_border_products():
    # TensorFlow's formula: output pixels x kernel x channels / stride**2. With
    # padding="valid" the 5x5 input grows to 7x7, and the formula counts 49
    # positions where only 25 inputs are scattered: products with zeros.
    model = one_layer((5, 5, 3), keras.layers.Conv2DTranspose(4, 3))
    by_op = profiler_forward_flops(model, BATCH)
    assert layer_macs(model.layers[0]) == 25 * 9 * 3 * 4
    assert by_op["Conv2DBackpropInput"] == 2 * BATCH * 49 * 9 * 3 * 4


def test_whole_gan_networks_match_the_profiler():
    for model in (build_generator(), build_discriminator()):
        by_op = profiler_forward_flops(model, BATCH)
        products = sum(by_op.get(op, 0) for op in ("MatMul", "Conv2D",
                                                   "Conv2DBackpropInput"))
        assert products == 2 * BATCH * network_macs(model).forward


def test_hand_computed_counts():
    assert dense_macs((3,), 4) == 12
    assert dense_macs((2, 3), 4) == 24
    # 4x4 output, 3x3 kernel, 2 input channels, 5 filters
    assert conv2d_macs((4, 4, 5), (3, 3), 2) == 16 * 9 * 2 * 5
    # each of 2x2x3 inputs meets a 4x4 kernel for each of 6 filters
    assert conv2d_transpose_macs((2, 2, 3), (4, 4), 6) == 4 * 3 * 16 * 6


def test_uncounted_layers_count_zero():
    model = one_layer((4,), keras.layers.LeakyReLU())
    assert layer_macs(model.layers[0]) == 0


def test_network_macs_lists_counted_layers_in_order():
    g = network_macs(build_generator())
    assert [kind for _, kind, _ in g.layers] == [
        "Dense", "Conv2DTranspose", "Conv2DTranspose", "Conv2D"
    ]
    # By hand: Dense 128 x 6272; each Conv2DTranspose: input positions x 4 x 4
    # x 128 x 128 (7 x 7, then 14 x 14); Conv2D: 28 x 28 outputs x 7 x 7 x 128.
    assert [macs for _, _, macs in g.layers] == [
        802_816, 12_845_056, 51_380_224, 4_917_248
    ]
    assert g.first == 802_816
    assert g.forward == 69_945_344


def test_shift_add_conv_counts_as_the_conv2d_it_computes():
    g, shifted = build_generator(), build_generator(conv="shift_add")
    assert network_macs(shifted).layers[-1][1:] == network_macs(g).layers[-1][1:]
    assert gan_step_flops(shifted, build_discriminator(), 8) == gan_step_flops(
        g, build_discriminator(), 8)


def test_gan_step_macs_by_hand_on_tiny_networks():
    g = one_layer((3,), keras.layers.Dense(4))  # forward 12, first 12
    d = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(1)]
    )  # forward 8 + 2 = 10, first 8
    phases = gan_step_macs(g, d, batch_size=5)
    # D update: G fwd 5*12, D fwd, weight grads 10*10 each, input grads 10*(10-8)
    # G update: G fwd 60, D fwd 50, D input grads 50, G weight grads 60, G input 0
    assert sum(phases.values()) == 60 + 100 + 100 + 20 + 60 + 50 + 50 + 60 + 0
    assert gan_step_flops(g, d, 5) == 2 * sum(phases.values())


def test_elementwise_work_is_a_small_share_of_the_generator():
    share = elementwise_share(build_generator())
    assert 0 < share < 0.01


def test_params_count():
    model = one_layer((3,), keras.layers.Dense(4))
    assert params_count(model) == 3 * 4 + 4
    assert params_count(model, model) == 2 * 16


@pytest.mark.parametrize(
    "call",
    [
        lambda: dense_macs((0,), 3),
        lambda: dense_macs((3,), 2.5),
        lambda: conv2d_macs((4, 4, 1), (3,), -1),
        lambda: conv2d_transpose_macs((), (3, 3), 1),
        lambda: gan_step_macs(build_generator(), build_discriminator(), 0),
        lambda: network_macs(one_layer((3,), keras.layers.ReLU())),
    ],
)
def test_bad_input_raises_a_clear_error(call):
    with pytest.raises(ValueError, match="must|has no"):
        call()


def test_grouped_convolutions_are_refused():
    model = one_layer((6, 6, 4), keras.layers.Conv2D(4, 3, groups=2))
    with pytest.raises(ValueError, match="grouped"):
        layer_macs(model.layers[0])
