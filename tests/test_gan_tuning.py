"""The GAN's "auto" settings (fitbook.gan.tune_gan, build_gan, GAN.compile, the
command line's --precision auto --jit auto) and a GAN built under a policy."""

import dataclasses
import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook import gan as G
from fitbook import models as M
from fitbook import tuning as T
from fitbook.tools.train_gan import parse_args
from fitbook.tuning import PLAIN, Config

BF16 = Config("mixed_bfloat16")


def fake_tuning(chosen):
    return T.Tuning(chosen, {PLAIN.name: 1.0, chosen.name: 2.0}, {}, {}, 4)


@pytest.fixture
def tuned(monkeypatch):
    """tune_gan replaced by a fake that records what it was asked."""
    asked = []

    def fake(precision="auto", jit_compile="auto", conv="auto", **_):
        asked.append((precision, jit_compile) + ((conv,) if conv != "auto" else ()))
        return fake_tuning(Config(
            "mixed_bfloat16" if precision == "auto" else precision,
            True if jit_compile == "auto" else jit_compile,
            **({} if conv == "auto" else G.conv_fields(conv))))

    monkeypatch.setattr(G, "tune_gan", fake)
    return asked


def test_generator_built_under_bfloat16_survives_save_and_load(tmp_path):
    before = keras.config.dtype_policy().name
    gan = G.build_gan(G.FIXED_RECIPE, jit_compile=False, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before  # restored
    assert gan.generator.dtype_policy.name == "mixed_bfloat16"
    assert gan.generator.layers[0].kernel.dtype == "float32"  # weights stay float32
    z = np.random.default_rng(0).normal(size=(3, G.LATENT_DIM)).astype("float32")
    gan.generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    policies = {layer.dtype_policy.name for layer in loaded.layers if layer.weights}
    assert policies == {"mixed_bfloat16"}  # its layers still compute in bfloat16
    images = keras.ops.convert_to_numpy(loaded(z)).astype("float32")
    assert images.shape == (3, 28, 28, 1) and np.isfinite(images).all()
    original = keras.ops.convert_to_numpy(gan.generator(z)).astype("float32")
    np.testing.assert_allclose(images, original)


def test_auto_settings_come_from_tuning(tuned):
    gan = G.build_gan(G.FIXED_RECIPE)
    assert tuned == [("auto", "auto")]
    assert gan.generator.dtype_policy.name == "mixed_bfloat16" and gan.jit_compile
    gan = G.build_gan(G.FIXED_RECIPE, jit_compile=False)  # precision tuned only
    assert tuned[-1] == ("auto", False) and not gan.jit_compile
    G.build_gan(G.FIXED_RECIPE, jit_compile=False, precision="float32")
    assert len(tuned) == 2  # explicit: nothing measured
    assert G.tuned_settings(None, "auto") == (None, True, "keras")
    assert tuned[-1] == (keras.config.dtype_policy().name, "auto")
    assert G.tuned_settings("float32", False) == ("float32", False, "keras")
    assert len(tuned) == 3  # conv "auto" alone measures nothing
    gan = G.build_gan(G.FIXED_RECIPE, precision="float32", conv="shift_add")
    assert tuned[-1] == ("float32", "auto", "shift_add")
    assert G.conv_of(gan.generator) == "shift_add"
    with pytest.raises(ValueError, match="conv must be one of"):
        G.tuned_settings("float32", False, "fast")


def test_compile_auto_asks_for_the_models_policy(tuned):
    gan = G.GAN(G.build_generator(), G.build_discriminator())
    optimizers = G.make_optimizers(G.FIXED_RECIPE)
    gan.compile(*optimizers, keras.losses.BinaryCrossentropy(from_logits=True))
    assert tuned == [(gan.dtype_policy.name, "auto", "keras")] and gan.jit_compile


def test_command_line_defaults_to_auto_and_takes_explicit_values(tmp_path):
    args = parse_args(["train", "--out", str(tmp_path / "run")])
    assert (args.precision, args.jit) == ("auto", "auto")
    for flags, jit in ((["--jit"], True), (["--no-jit"], False),
                       (["--jit", "off"], False), (["--jit", "auto"], "auto")):
        args = parse_args(["train", "--out", str(tmp_path / "run"), *flags])
        assert args.jit == jit
    with pytest.raises(SystemExit):
        parse_args(["train", "--out", str(tmp_path / "run"), "--jit", "maybe"])
    assert args.conv == "auto"
    args = parse_args(["train", "--out", str(tmp_path / "run"), "--conv",
                       "shift_add"])
    assert args.conv == "shift_add"
    with pytest.raises(SystemExit):
        parse_args(["train", "--out", str(tmp_path / "run"), "--conv", "fast"])


def run_args(out, precision="auto", jit="auto", resume=False, conv="auto"):
    return SimpleNamespace(out=str(out), precision=precision, jit=jit,
                           resume=resume, conv=conv)


def test_choose_settings_tunes_or_takes_the_resumed_runs(tmp_path, tuned):
    args = run_args(tmp_path)
    G.choose_settings(args)
    assert (args.precision, args.jit) == ("mixed_bfloat16", True)
    assert args.tuning.chosen == Config("mixed_bfloat16", True)
    assert args.conv == "keras"
    assert args.asked == {"precision": "auto", "jit_compile": "auto",
                          "conv": "auto"}
    (tmp_path / "run.json").write_text(json.dumps(
        {"precision": "float32", "jit_compile": False}))  # recorded before conv
    args = run_args(tmp_path, resume=True)
    G.choose_settings(args)  # the resumed run's own settings, nothing measured
    assert (args.precision, args.jit, args.tuning) == ("float32", False, None)
    assert args.conv == "keras"
    (tmp_path / "run.json").write_text(json.dumps(
        {"precision": "float32", "jit_compile": False, "conv": "shift_add"}))
    args = run_args(tmp_path, resume=True)
    G.choose_settings(args)
    assert (args.precision, args.jit, args.conv) == ("float32", False, "shift_add")
    assert len(tuned) == 1
    args = run_args(tmp_path, conv="shift_add")
    G.choose_settings(args)  # tuned among shift-add configurations only
    assert tuned[-1] == ("auto", "auto", "shift_add") and args.conv == "shift_add"
    args = run_args(tmp_path, precision="mixed_bfloat16", resume=True)
    G.choose_settings(args)  # explicit wins; check_settings then refuses it
    assert (args.precision, args.jit) == ("mixed_bfloat16", False)


def test_build_gan_leaves_tensorflow_graph_options_alone(tuned):
    before = tf.config.optimizer.get_experimental_options()
    G.build_gan(G.FIXED_RECIPE, jit_compile=False, precision="mixed_bfloat16")
    assert tf.config.optimizer.get_experimental_options() == before


def test_tune_gan_measures_real_candidates(tmp_path, capfd):
    """Two real candidates without XLA, one step each, float32 and bf16 with
    matmul bias gradients (exact_bias_sums); then the winner against itself
    with every combination of the shift-add convolution, phase kernel
    gradients and (for float32) matmul bias gradients: all sound (bf16 close
    to float32), the record is written to the given cache file."""
    keras.utils.set_random_seed(0)
    expected = keras.random.normal((2,))  # the caller's random state is kept
    keras.utils.set_random_seed(0)
    path = tmp_path / "tuning.json"
    result = G.tune_gan(jit_compile=False, steps=1, rounds=1, path=path)
    np.testing.assert_array_equal(keras.random.normal((2,)), expected)
    bf16 = Config("mixed_bfloat16", matmul_bias_grad=True)
    winner = max((PLAIN, bf16), key=lambda c: result.steps_per_second[c.name])
    variants = {G.exact_bias_sums(Config(winner.precision, shift_add_conv=s,
                                         matmul_bias_grad=b,
                                         phase_kernel_grads=g)).name
                for s in (False, True) for b in (False, True) for g in (False, True)}
    variants.discard(winner.name)
    assert set(result.steps_per_second) == {PLAIN.name, bf16.name, *variants}
    assert set(result.second_stage) == {winner.name, *variants}
    assert result.rejected == {}
    assert result.chosen.name in {winner.name, *variants}
    assert path.is_file()
    assert "remapper failed" not in capfd.readouterr().err  # a known notice: dropped


def test_bfloat16_candidates_keep_exact_bias_sums():
    """exact_bias_sums turns matmul bias gradients on for bfloat16 only: its
    BiasAddGrad may sum in bfloat16, float16's and float32's do not here."""
    for config in (PLAIN, Config("mixed_float16", True),
                   Config("float32", shift_add_conv=True)):
        assert G.exact_bias_sums(config) == config
    for config in (BF16, Config("mixed_bfloat16", True, shift_add_conv=True)):
        fixed = G.exact_bias_sums(config)
        assert fixed.matmul_bias_grad and fixed == dataclasses.replace(
            config, matmul_bias_grad=True)


@pytest.mark.parametrize("conv", M.CONVS)
def test_conv_settings_round_trip(conv):
    """A conv setting, its Config fields, the Config's name for it and the
    generator built with it all agree."""
    config = Config("mixed_bfloat16", **G.conv_fields(conv))
    assert G.conv_name(config) == conv
    assert G.conv_of(M.build_generator(conv=conv)) == conv
    with pytest.raises(ValueError, match="conv must be one of"):
        G.conv_fields("matmul_bias")
