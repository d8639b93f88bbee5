"""fitbook.tuning: the autotuner, with fake candidates on a fake clock (known
timings, a NaN candidate, a wrong one), and once with a small real model."""

import json
import random
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import fitbook.timing
from fitbook import tuning as T
from fitbook.tuning import PLAIN, Config

BF16 = Config("mixed_bfloat16")
XLA = Config("float32", True)
BF16_XLA = Config("mixed_bfloat16", True)


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter for fitbook.timing: runs advance it by their cost."""
    now = SimpleNamespace(t=0.0)
    fake = SimpleNamespace(perf_counter=lambda: now.t)
    monkeypatch.setattr(fitbook.timing, "time", fake)
    return now


def fake_maker(clock, seconds, losses, calls=None):
    """make_run for configs: each run costs seconds[name] on the fake clock."""

    def make_run(config):
        def run():
            clock.t += seconds.get(config.name, 2.0)
            if calls is not None:
                calls.append(config.name)
            return losses.get(config.name, {"loss": 1.0})

        return run

    return make_run


def test_fastest_sound_candidate_wins_and_nan_is_rejected_untimed(clock):
    seconds = {PLAIN.name: 1.0, BF16.name: 0.5, XLA.name: 0.8, BF16_XLA.name: 0.1}
    losses = {BF16_XLA.name: {"loss": float("nan")}}
    calls = []
    result = T.autotune(fake_maker(clock, seconds, losses, calls),
                        T.grid(), steps=4, rounds=2)
    assert result.chosen == BF16
    assert set(result.rejected) == {BF16_XLA.name}
    assert "nan" in result.rejected[BF16_XLA.name]
    assert calls.count(BF16_XLA.name) == 1  # the warm-up only: never timed
    assert result.steps_per_second[BF16.name] == pytest.approx(4 / 0.5)
    assert result.ratio(BF16.name) == pytest.approx(2.0)


def test_never_slower_than_the_plain_path(clock):
    seconds = {PLAIN.name: 1.0, BF16.name: 1.5, XLA.name: 2.0, BF16_XLA.name: 3.0}
    result = T.autotune(fake_maker(clock, seconds, {}), T.grid(), steps=2)
    assert result.chosen == PLAIN
    assert result.rejected == {}


def test_a_result_far_from_float32_is_not_sound(clock):
    seconds = {PLAIN.name: 1.0, BF16.name: 0.2}
    losses = {PLAIN.name: {"loss": 0.7}, BF16.name: {"loss": 1.4}}
    result = T.autotune(fake_maker(clock, seconds, losses),
                        T.grid(jit_compile=(False,)), steps=1, rounds=1)
    assert result.chosen == PLAIN
    assert "too far from float32" in result.rejected[BF16.name]


def test_eligible_limits_the_choice_but_plain_stays_the_reference(clock):
    seconds = {PLAIN.name: 0.1, BF16.name: 0.5, BF16_XLA.name: 0.4}
    candidates, eligible = T.restrict(T.grid(), "mixed_bfloat16")
    assert candidates == [PLAIN, BF16, BF16_XLA] and PLAIN not in eligible
    result = T.autotune(fake_maker(clock, seconds, {}), candidates, 1,
                        eligible=eligible)
    assert result.chosen == BF16_XLA


def test_plain_must_come_first_and_be_sound(clock):
    with pytest.raises(ValueError, match="first candidate must be the plain"):
        T.autotune(fake_maker(clock, {}, {}), [BF16, PLAIN], steps=1)
    with pytest.raises(ValueError, match="twice"):
        T.autotune(fake_maker(clock, {}, {}), [PLAIN, BF16, BF16], steps=1)
    maker = fake_maker(clock, {PLAIN.name: 1.0}, {PLAIN.name: {"loss": np.inf}})
    with pytest.raises(FloatingPointError, match="plain float32 run itself"):
        T.autotune(maker, [PLAIN], steps=1)


def test_soundness():
    ref = {"d_loss": 0.7, "g_loss": 0.69}
    assert T.soundness({"d_loss": 0.71, "g_loss": 0.70}, ref) is None
    assert "g_loss is inf" in T.soundness({"d_loss": 0.7, "g_loss": np.inf}, ref)
    assert "no 'g_loss'" in T.soundness({"d_loss": 0.7}, ref)
    assert "too far" in T.soundness({"d_loss": 0.7, "g_loss": 2.0}, ref)


def test_config_grid_and_restrict():
    assert PLAIN.name == "float32, no XLA"
    assert [Config(p).compute_dtype for p in T.PRECISIONS] == [
        "float32", "bfloat16", "float16"]
    assert Config("mixed_bfloat16", True, 8).name == (
        "mixed_bfloat16, XLA, steps_per_execution=8")
    with pytest.raises(ValueError, match="precision must be one of"):
        Config("float16")
    with pytest.raises(ValueError, match="jit_compile must be True or False"):
        Config(jit_compile="auto")
    configs = T.grid(steps_per_execution=(1, 8))
    assert configs[0] == PLAIN and len(configs) == 8
    assert T.grid(precisions=("mixed_bfloat16", "float32"))[0] == PLAIN
    candidates, eligible = T.restrict(T.grid(), jit_compile=False)
    assert candidates == eligible == [PLAIN, BF16]
    candidates, eligible = T.restrict(T.grid(), "mixed_float16", False)
    assert candidates == [PLAIN, Config("mixed_float16")]
    assert eligible == [Config("mixed_float16")]
    shifted = T.grid(shift_add_conv=(True,))
    assert len(shifted) == 4 and all(c.shift_add_conv for c in shifted)
    candidates, eligible = T.restrict(shifted, "mixed_float16", False)
    assert candidates == [PLAIN, Config("mixed_float16", shift_add_conv=True)]
    with pytest.raises(ValueError, match="shift_add_conv must be True or False"):
        Config(shift_add_conv="yes")
    with pytest.raises(ValueError, match="matmul_bias_grad must be True or False"):
        Config(matmul_bias_grad=1)
    assert len(T.grid(matmul_bias_grad=(False, True))) == 8
    with pytest.raises(ValueError, match="phase_kernel_grads must be True or False"):
        Config(phase_kernel_grads=None)
    phased = T.grid(phase_kernel_grads=(True,))
    assert len(phased) == 4 and all(c.phase_kernel_grads for c in phased)
    assert Config("mixed_bfloat16", matmul_bias_grad=True,
                  phase_kernel_grads=True).name == (
        "mixed_bfloat16, no XLA, matmul bias, phase grads")
    candidates, _ = T.restrict(phased, "mixed_float16", False)  # keeps the layers
    assert candidates == [PLAIN, Config("mixed_float16", phase_kernel_grads=True)]
    with pytest.raises(ValueError, match="no candidate"):
        T.restrict([PLAIN], jit_compile=True)


def test_second_stage_tries_the_winners_variant_against_it(clock):
    shifted = Config("mixed_bfloat16", shift_add_conv=True)
    seconds = {PLAIN.name: 1.0, BF16.name: 0.5, XLA.name: 0.8,
               BF16_XLA.name: 0.9, shifted.name: 0.25}
    calls = []
    result = T.autotune(fake_maker(clock, seconds, {}, calls), T.grid(), steps=4,
                        rounds=2, variants={"shift_add_conv": True})
    assert result.chosen == shifted and shifted.name == (
        "mixed_bfloat16, no XLA, shift-add conv")
    assert len(set(calls)) == 5  # four candidates and one variant, not eight
    assert result.second_stage == pytest.approx({BF16.name: 8.0, shifted.name: 16.0})
    assert result.ratio(shifted.name) == pytest.approx(4.0)
    assert set(result.measurements) == {c.name for c in T.grid()}  # first stage
    record = result.to_dict()
    again = T.Tuning.from_dict(json.loads(json.dumps(record)))
    assert again.chosen == shifted and again.second_stage == result.second_stage
    assert again.measurements == result.measurements  # rounds and all
    seconds[shifted.name] = 0.6  # slower than the winner: the winner stays
    slower = T.autotune(fake_maker(clock, seconds, {}), T.grid(), steps=4,
                        variants={"shift_add_conv": True})
    assert slower.chosen == BF16
    losses = {shifted.name: {"loss": float("nan")}}  # unsound: never timed
    unsound = T.autotune(fake_maker(clock, seconds, losses), T.grid(), steps=4,
                         variants={"shift_add_conv": True})
    assert unsound.chosen == BF16 and shifted.name in unsound.rejected
    assert unsound.second_stage == {}
    del record["second_stage"], record["chosen"]["shift_add_conv"]  # older record
    del record["measurements"]
    assert T.Tuning.from_dict(record).chosen == BF16  # Keras' Conv2D


def test_second_stage_tries_every_combination_of_variants(clock):
    """Two switches: the winner with each one and with both take turns; the
    pair wins here, faster than either alone."""
    variants = {"shift_add_conv": True, "matmul_bias_grad": True}
    assert T.combinations(variants) == [
        {"matmul_bias_grad": True}, {"shift_add_conv": True}, variants]
    assert T.combinations(None) == []
    both = Config("mixed_bfloat16", shift_add_conv=True, matmul_bias_grad=True)
    alone = [Config("mixed_bfloat16", shift_add_conv=True),
             Config("mixed_bfloat16", matmul_bias_grad=True)]
    seconds = {PLAIN.name: 1.0, BF16.name: 0.5, XLA.name: 0.8,
               BF16_XLA.name: 0.9, alone[0].name: 0.3, alone[1].name: 0.4,
               both.name: 0.2}
    calls = []
    result = T.autotune(fake_maker(clock, seconds, {}, calls), T.grid(), steps=4,
                        variants=variants)
    assert result.chosen == both and both.name == (
        "mixed_bfloat16, no XLA, shift-add conv, matmul bias")
    assert set(result.second_stage) == {BF16.name, both.name,
                                        *(c.name for c in alone)}
    assert len(set(calls)) == 7  # four candidates and three variants


def test_variants_the_winner_already_has_are_not_tried_twice(clock):
    """A winner that has one switch on already: the variant turning it on is
    the winner itself, and the pair equals the other switch alone, so one
    variant is made, warmed up and timed, once."""
    winner = Config("mixed_bfloat16", matmul_bias_grad=True)
    both = Config("mixed_bfloat16", shift_add_conv=True, matmul_bias_grad=True)
    seconds = {PLAIN.name: 1.0, winner.name: 0.5, both.name: 0.4}
    calls = []
    result = T.autotune(fake_maker(clock, seconds, {}, calls), [PLAIN, winner],
                        steps=4, rounds=2, variants={"shift_add_conv": True,
                                                     "matmul_bias_grad": True})
    assert result.chosen == both
    assert set(result.second_stage) == {winner.name, both.name}
    assert calls.count(both.name) == 3  # its warm-up and two timed rounds


def test_cache_file_and_memory(clock, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "_MEMORY", {})
    path = tmp_path / "sub" / "tuning.json"
    calls = []
    seconds = {PLAIN.name: 1.0, BF16.name: 0.5}
    maker = fake_maker(clock, seconds, {}, calls)
    grid = T.grid(jit_compile=(False,))
    first = T.cached_autotune("toy", maker, grid, 2, path=path)
    assert not first.cached and first.chosen == BF16
    record = json.loads(path.read_text())
    assert len(record) == 1 and next(iter(record)).startswith("toy:")
    n = len(calls)
    assert T.cached_autotune("toy", maker, grid, 2, path=path) is first  # memory
    monkeypatch.setattr(T, "_MEMORY", {})
    again = T.cached_autotune("toy", maker, grid, 2, path=path)  # the file
    assert again.cached and again.chosen == BF16 and len(calls) == n
    assert again.steps_per_second == pytest.approx(first.steps_per_second, 1e-3)
    assert again.measurements == first.measurements  # the rounds themselves
    other = T.cached_autotune("toy", maker, T.grid(), 2, path=path)  # new key
    assert not other.cached and len(json.loads(path.read_text())) == 2
    monkeypatch.setattr(T, "_MEMORY", {})
    T.cached_autotune("none", maker, grid, 2, path=None)
    assert len(json.loads(path.read_text())) == 2


def test_cache_path_and_machine_key(tmp_path):
    assert T.cache_path({T.CACHE_ENV: "off"}) is None
    assert T.cache_path({T.CACHE_ENV: str(tmp_path / "t.json")}) == tmp_path / (
        "t.json")
    assert T.cache_path({}).name == "tuning.json"
    key = T.machine_key()
    assert "tf " in key and "cpus" in key


def test_dtype_policy_is_restored_even_on_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with T.dtype_policy("mixed_bfloat16") as policy:
            assert policy.name == "mixed_bfloat16"
            raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == before


def test_random_state_kept():
    keras.utils.set_random_seed(3)
    keras.random.normal((2,))  # the global SeedGenerator exists
    with T.random_state_kept():
        expected = (random.random(), np.random.rand(),
                    np.asarray(keras.random.normal((2,))),
                    keras.layers.Dense(2).build((None, 2)))
    keras.utils.set_random_seed(3)
    keras.random.normal((2,))
    assert random.random() == expected[0] and np.random.rand() == expected[1]
    np.testing.assert_array_equal(keras.random.normal((2,)), expected[2])


def test_a_small_real_model_is_tuned():
    """Two real candidates (float32 and mixed_bfloat16, no XLA) of a tiny
    classifier: both sound, the choice is one of them, timings are positive."""
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    start = None

    def make_run(config):
        nonlocal start
        with T.dtype_policy(config.precision):
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8),
                                      keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True),
                      jit_compile=config.jit_compile,
                      steps_per_execution=config.steps_per_execution)
        start = start or model.get_weights()
        model.set_weights(start)

        def run():
            history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False,
                                verbose=0)
            return {"loss": history.history["loss"][-1]}

        return run

    result = T.autotune(make_run, T.grid(jit_compile=(False,)), steps=4,
                        rounds=1, batch_size=16)
    assert result.rejected == {}
    assert result.chosen in (PLAIN, BF16)
    assert all(rate > 0 for rate in result.steps_per_second.values())
    assert json.dumps(result.to_dict())  # JSON-ready
