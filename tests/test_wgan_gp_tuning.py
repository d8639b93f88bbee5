"""The WGAN-GP's "auto" XLA setting (fitbook.wgan_gp.tune_wgan_gp, build_wgan_gp,
WGANGP.compile) and its explicit settings and errors."""

import json

import keras
import numpy as np
import pytest

from fitbook import models as M
from fitbook import tuning as T
from fitbook import wgan_gp as W
from fitbook.tuning import PLAIN, Config

REAL_TUNE = W.tune_wgan_gp  # the fixture below replaces it with a fake


@pytest.fixture
def tuned(monkeypatch):
    """tune_wgan_gp replaced by a fake that records what it was asked."""
    asked = []

    def fake(precision="float32", jit_compile="auto", critic_steps=5, **_):
        asked.append((precision, jit_compile, critic_steps))
        chosen = Config(precision, True if jit_compile == "auto" else jit_compile)
        return T.Tuning(chosen, {PLAIN.name: 1.0, chosen.name: 2.0}, {}, {}, 1)

    monkeypatch.setattr(W, "tune_wgan_gp", fake)
    return asked


def test_auto_jit_compile_comes_from_tuning_in_float32(tuned):
    model = W.build_wgan_gp(critic_steps=3)
    assert tuned == [("float32", "auto", 3)]
    assert model.jit_compile and model.critic_steps == 3
    assert model.generator.dtype_policy.name == "float32"
    assert W.tuned_wgan_gp_settings("float32", "auto") == ("float32", True)


def test_explicit_settings_are_honoured_and_nothing_is_measured(tuned):
    before = keras.config.dtype_policy().name
    model = W.build_wgan_gp(jit_compile=False)
    assert not model.jit_compile
    model = W.build_wgan_gp(jit_compile=True, precision="mixed_bfloat16")
    assert model.jit_compile
    assert model.generator.dtype_policy.name == "mixed_bfloat16"
    assert model.critic.dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before  # restored
    assert tuned == []
    assert W.tuned_wgan_gp_settings("float32", False) == ("float32", False)


def test_compile_auto_asks_for_the_models_policy_and_critic_steps(tuned):
    model = W.WGANGP(M.build_generator(latent_dim=4), W.build_critic())
    model.compile(*W.paper_optimizers(), critic_steps=2)
    assert tuned == [("float32", "auto", 2)] and model.jit_compile


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"precision": "auto"}, "not offered for the WGAN-GP"),
        ({"precision": "float64"}, "precision must be one of"),
        ({"jit_compile": "yes"}, "jit_compile must be True, False or 'auto'"),
        ({"jit_compile": 1}, "jit_compile must be True, False or 'auto'"),
        ({"critic_steps": 0}, "critic_steps must be a positive int"),
    ],
)
def test_bad_settings_give_clear_errors(tuned, kwargs, match):
    with pytest.raises(ValueError, match=match):
        W.build_wgan_gp(**kwargs)
    with pytest.raises(ValueError, match=match):
        REAL_TUNE(**kwargs)  # refused before anything is built
    assert tuned == []


def test_compile_rejects_a_bad_jit_compile():
    model = W.WGANGP(M.build_generator(latent_dim=4), W.build_critic())
    with pytest.raises(ValueError, match="jit_compile must be True, False"):
        model.compile(*W.paper_optimizers(), jit_compile="xla")


def test_tune_wgan_gp_measures_the_real_step(tmp_path):
    """One critic update per step, one step per round, no XLA: only the plain
    candidate, measured, written to the given cache file; random state kept."""
    keras.utils.set_random_seed(0)
    expected = keras.random.normal((2,)), np.random.random()
    keras.utils.set_random_seed(0)
    path = tmp_path / "tuning.json"
    result = W.tune_wgan_gp(jit_compile=False, critic_steps=1, steps=1, rounds=1,
                            path=path)
    np.testing.assert_array_equal(keras.random.normal((2,)), expected[0])
    assert np.random.random() == expected[1]
    assert result.chosen == PLAIN and not result.cached
    assert set(result.steps_per_second) == {PLAIN.name}
    assert set(result.losses[PLAIN.name]) == {"critic_loss", "generator_loss"}
    (key,) = json.loads(path.read_text())
    assert key.startswith("wgan_gp, critic_steps 1")


def test_timed_fit_trains_whole_epochs_and_times_each(capsys):
    generator = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(16, "sigmoid"),
         keras.layers.Reshape((4, 4, 1))])
    critic = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model = W.WGANGP(generator, critic)
    model.compile(keras.optimizers.Adam(), keras.optimizers.Adam(),
                  critic_steps=2, jit_compile=False)
    images = np.random.default_rng(0).random((8, 4, 4, 1)).astype("float32")
    data = W.image_dataset(images, 4, repeat=True)
    seconds = W.timed_fit(model, data, steps=4, steps_per_epoch=2)
    assert len(seconds) == 2 and (seconds > 0).all()
    assert int(model.generator_optimizer.iterations) == 4
    assert "Epoch 2/2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a whole number of epochs"):
        W.timed_fit(model, data, steps=5, steps_per_epoch=2)


def test_logged_scores_at_reads_the_saved_generators_columns():
    plain = {"step": np.array([250.0, 500.0]), "coverage": np.array([0.4, 0.5]),
             "frechet": np.array([120.0, 70.0])}
    assert W.logged_scores_at(plain, 499) == (250, {"coverage": 0.4,
                                                    "frechet": 120.0})
    assert W.logged_scores_at(plain, 500)[0] == 500
    assert W.logged_scores_at(plain, 249) is None
    ema = dict(plain, ema_coverage=np.array([0.0, 0.1]),
               ema_frechet=np.array([300.0, 280.0]))
    assert W.logged_scores_at(ema, 10_000) == (500, {"coverage": 0.1,
                                                     "frechet": 280.0})
    with pytest.raises(ValueError, match="no 'frechet' column"):
        W.logged_scores_at({"step": plain["step"], "coverage": plain["coverage"]}, 1)
