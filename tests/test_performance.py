"""The machine description, the pipelines, the contenders and the table
(chapter "Performance"). No assertion here depends on how fast anything runs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fitbook.performance import (
    PIPELINES,
    CpuInfo,
    classifier_runs,
    clock_ghz,
    describe_machine,
    dropout_runs,
    dtype_policy,
    encode_png,
    estimate_peak,
    gan_runs,
    html_table,
    image_pipeline,
    markdown_table,
    matmul_flops,
    measurement_table,
    parse_cpuinfo,
    pipeline_runs,
    to_uint8,
    usable_cpus,
    vector_floats,
)
from fitbook.timing import Measurement

INTEL_AVX512 = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
cpu MHz		: 2899.998
siblings	: 4
cpu cores	: 2
flags		: fpu sse sse2 avx fma avx2 avx512f avx512_bf16 amx_bf16

processor	: 1
model name	: something else
"""
AMD_AVX2 = """processor	: 0
model name	: AMD EPYC
cpu MHz		: 2445.406
siblings	: 2
cpu cores	: 2
flags		: fpu sse sse2 fma avx avx2
"""
ARM_NO_CLOCK = """processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm
"""


# ---------------------------------------------------------------- dtype policy


def test_dtype_policy_sets_and_restores():
    before = keras.mixed_precision.global_policy().name
    with dtype_policy("mixed_bfloat16") as policy:
        assert policy.name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
    assert layer.compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == before


def test_dtype_policy_restores_on_error():
    before = keras.mixed_precision.global_policy().name
    with pytest.raises(RuntimeError, match="boom"):
        with dtype_policy("mixed_bfloat16"):
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == before


# ---------------------------------------------------------------- tf.data


@pytest.fixture(scope="module")
def png_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 6, 6, 1), dtype=np.uint8)
    return images, encode_png(images), np.arange(10)


def test_png_round_trip(png_and_labels):
    images, png, labels = png_and_labels
    decoded = np.stack([tf.io.decode_png(p).numpy() for p in png])
    np.testing.assert_array_equal(decoded, images)


def test_pipelines_yield_the_same_batches(png_and_labels):
    _, png, labels = png_and_labels
    batches = {}
    for name, options in PIPELINES.items():  # 8 batches of 4: over 3 passes
        ds = image_pipeline(png, labels, 4, seed=3, **options)
        batches[name] = list(ds.take(8).as_numpy_iterator())
    first = batches.pop("tf.data: decode + augment")
    for other in batches.values():
        for (x1, y1), (x2, y2) in zip(first, other, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    x, y = first[0]
    assert x.dtype == np.float32 and x.shape == (4, 6, 6, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(y, [0, 1, 2, 3])


def test_augment_mirrors_some_images_and_depends_on_the_seed(png_and_labels):
    images, png, labels = png_and_labels
    x = np.concatenate([b[0] for b in image_pipeline(png, labels, 10).take(4)])
    originals = np.tile(images / np.float32(255), (4, 1, 1, 1))
    mirrored = originals[:, :, ::-1]
    same = np.all(np.isclose(x, originals), axis=(1, 2, 3))
    flipped = np.all(np.isclose(x, mirrored), axis=(1, 2, 3))
    assert np.all(same | flipped) and same.any() and flipped.any()
    other = next(iter(image_pipeline(png, labels, 10, seed=1)))[0].numpy()
    assert not np.array_equal(other, x[:10])


def test_pipeline_input_errors(png_and_labels):
    _, png, labels = png_and_labels
    with pytest.raises(ValueError, match="same, non-zero"):
        image_pipeline(png, labels[:3], 4)
    with pytest.raises(ValueError, match="exceed"):
        pipeline_runs(png, labels, batch_size=5, steps=2)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_uint8(np.array([1.5]))


def test_to_uint8_inverts_the_data_loader():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(pixels / np.float32(255)), pixels)


# ---------------------------------------------------------------- contenders


def test_classifier_runs_train_the_same_data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    runs = classifier_runs(x, y, batch_size=32, hidden=8)
    assert "fit()" in runs and len(runs) == 8
    history = runs["fit()"]()
    assert len(history.history["loss"]) == 1
    for name in ("from-scratch loop, tf.function", "custom train_step, fit()"):
        runs[name]()
        runs[name]()  # a second epoch continues where the first stopped


def test_dropout_runs_change_only_rate_and_mode():
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    runs = dropout_runs(x, y, batch_size=32, rates=(0.0, 0.5), hidden=8)
    assert list(runs) == [
        "Dropout(0.0), function", "Dropout(0.0), jit",
        "Dropout(0.5), function", "Dropout(0.5), jit",
    ]
    history = runs["Dropout(0.5), jit"]()
    assert len(history["loss"]) == 1


def test_pipeline_runs_fit_steps(png_and_labels):
    _, png, labels = png_and_labels
    images = np.zeros((10, 28, 28, 1), np.uint8)
    runs = pipeline_runs(encode_png(images), labels, batch_size=4, steps=3, hidden=4)
    assert list(runs) == list(PIPELINES)
    history = runs["tf.data: + cache() + prefetch()"]()
    assert len(history.history["loss"]) == 1


def test_gan_runs_build_each_policy_and_restore_it():
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    runs = gan_runs(x, steps=1, policies=("mixed_bfloat16",), jit_compile=False)
    assert list(runs) == ["GAN step, mixed_bfloat16"]
    assert keras.mixed_precision.global_policy().name == "float32"
    gan = runs["GAN step, mixed_bfloat16"].func.__self__
    assert gan.generator.layers[0].compute_dtype == "bfloat16"
    assert gan.generator.layers[0].kernel.dtype == "float32"
    history = runs["GAN step, mixed_bfloat16"]()
    assert np.isfinite(history.history["d_loss"][0])


def test_matmul_flops_is_positive():
    assert matmul_flops(n=32, steps=1, rounds=1) > 0


# ---------------------------------------------------------------- the machine


def test_parse_intel_avx512():
    info = parse_cpuinfo(INTEL_AVX512)
    assert info.model.startswith("Intel(R) Xeon(R) Platinum 8375C")
    assert info.mhz == pytest.approx(2899.998)
    assert info.threads_per_core == 2
    assert {"avx512f", "fma", "avx512_bf16"} <= info.flags
    assert vector_floats(info.flags) == 16


def test_parse_amd_avx2():
    info = parse_cpuinfo(AMD_AVX2)
    assert (info.model, info.threads_per_core) == ("AMD EPYC", 1)
    assert vector_floats(info.flags) == 8


def test_parse_missing_fields_stay_unknown(tmp_path):
    info = parse_cpuinfo(ARM_NO_CLOCK)
    assert info.model is None and info.mhz is None
    assert vector_floats(info.flags) == 4  # NEON
    assert clock_ghz(info, tmp_path / "absent") == (None, "unknown")
    assert estimate_peak(info, cpus=4, ghz=None) is None
    assert vector_floats(frozenset()) is None


def test_parse_rejects_text_that_is_not_cpuinfo():
    with pytest.raises(ValueError, match="/proc/cpuinfo"):
        parse_cpuinfo("")


def test_clock_prefers_cpufreq(tmp_path):
    info = parse_cpuinfo(AMD_AVX2)
    cpufreq = tmp_path / "cpuinfo_max_freq"
    cpufreq.write_text("3500000\n")  # kHz
    assert clock_ghz(info, cpufreq) == (3.5, "cpufreq maximum")
    ghz, source = clock_ghz(info, tmp_path / "absent")
    assert ghz == pytest.approx(2.445406) and "cpu MHz" in source


def test_peak_estimates():
    intel = estimate_peak(parse_cpuinfo(INTEL_AVX512), cpus=4, ghz=2.0)
    # 4 logical CPUs, 2 threads per core: 2 cores x 2 units x 16 lanes x 2 (FMA)
    assert (intel.cores, intel.flops_per_cycle) == (2, 64)
    assert intel.flops == pytest.approx(2 * 2e9 * 64)
    amd = estimate_peak(parse_cpuinfo(AMD_AVX2), cpus=2, ghz=2.5, units=1)
    assert amd.flops == pytest.approx(2 * 2.5e9 * 16)
    no_fma = estimate_peak(CpuInfo(flags=frozenset({"avx"})), cpus=1, ghz=1.0)
    assert no_fma.flops_per_cycle == 16


def test_describe_machine_from_files(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL_AVX512)
    machine = describe_machine(cpuinfo, tmp_path / "absent")
    assert machine["model"].startswith("Intel")
    assert machine["cpus"] == usable_cpus()
    assert machine["vector"] == "AVX-512" and machine["fma"]
    assert machine["bf16_hardware"] and machine["ghz"] == pytest.approx(2.899998)
    unknown = describe_machine(tmp_path / "absent", tmp_path / "absent")
    assert unknown["model"] == "unknown" and unknown["peak"] is None


# ---------------------------------------------------------------- the table


def test_markdown_table():
    text = markdown_table(("a", "b"), [(1, "x|y"), (2.5, "z")])
    assert text.splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| 1 | x\\|y |",
        "| 2.5 | z |",
    ]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(("a", "b"), [(1,)])


def test_measurement_table_ratios():
    base = Measurement("fit()", steps=10, seconds=(1.0,), batch_size=100)
    twice = Measurement("fast", steps=10, seconds=(0.5, 1.0), batch_size=100)
    lines = measurement_table([base, twice], baseline="fit()").splitlines()
    assert lines[0] == "| run | steps/s | samples/s | vs fit() | median/best |"
    assert lines[2] == "| fit() | 10.0 | 1,000 | 1.00x | 1.00 |"
    assert lines[3] == "| fast | 20.0 | 2,000 | 2.00x | 1.50 |"
    with pytest.raises(ValueError, match="no measurement named"):
        measurement_table([base], baseline="missing")


def test_html_table_escapes_and_matches_the_markdown_cells():
    text = html_table(("a", "b"), [(1, "<x>")])
    assert text == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
        "<tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody></table>"
    )
    base = Measurement("fit()", steps=10, seconds=(1.0,), batch_size=100)
    assert "<td>1.00x</td>" in measurement_table([base], base, html=True)
    with pytest.raises(ValueError, match="2 cells"):
        html_table(("a", "b"), [(1,)])
