"""Tests for fitbook.performance_machine: /proc/cpuinfo, clock, peak, matmul."""

from types import SimpleNamespace

import numpy as np
import pytest

from fitbook.performance_machine import (
    CpuInfo,
    clock_ghz,
    describe_machine,
    estimate_peak,
    matmul_ceiling,
    matmul_flops,
    matmul_name,
    matmul_runs,
    matmul_step,
    parse_cpuinfo,
    usable_cpus,
    vector_floats,
)

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


def test_matmul_flops_is_positive():
    assert matmul_flops(n=32, steps=1, rounds=1) > 0
    for jit in (False, True):
        assert matmul_flops(32, "bfloat16", 1, 1, jit_compile=jit) > 0


@pytest.mark.parametrize("jit", [None, False, True])
def test_matmul_step_multiplies_the_same_matrices_each_call(jit):
    step = matmul_step(16, "bfloat16", jit_compile=jit)
    first, second = step(), step()
    assert first.shape == (16, 16) and first.dtype.name == "bfloat16"
    assert np.array_equal(np.asarray(first, "float32"), np.asarray(second, "float32"))
    with pytest.raises(ValueError, match="n"):
        matmul_step(0)


def test_matmul_runs_name_each_dtype_and_way_once():
    runs = matmul_runs(["bfloat16", "float32", "bfloat16"], steps=2, n=8)
    assert list(runs) == ["bfloat16 matmul", "bfloat16 matmul, XLA",
                          "float32 matmul", "float32 matmul, XLA"]
    product = runs["float32 matmul, XLA"]()
    assert product.shape == (8, 8) and product.dtype.name == "float32"
    assert matmul_name("float32", True) == "float32 matmul, XLA"


def test_matmul_ceiling_takes_the_faster_product_of_the_dtype():
    def products(rate):  # a Measurement-like: products per second
        return SimpleNamespace(steps_per_second=rate)

    measured = {"bfloat16 matmul": products(40.0),
                "bfloat16 matmul, XLA": products(20.0),
                "float32 matmul": products(99.0)}
    assert matmul_ceiling(measured, "bfloat16", n=10) == 2 * 10**3 * 40.0


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
