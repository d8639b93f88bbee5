"""The machine and its peak (chapter "Performance").

``/proc/cpuinfo`` parsed by pure functions, a peak FLOP/s derived from it under
stated assumptions, and one measured with a matmul, to compare the chapter's
throughputs with.
"""

import dataclasses
import math
import os
from pathlib import Path

import tensorflow as tf

from fitbook.checks import positive_int
from fitbook.timing import step_run, time_steps

CPUINFO = Path("/proc/cpuinfo")

CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions computing in bfloat16


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says about the first processor; None if absent."""

    model: str = None
    flags: frozenset = frozenset()
    mhz: float = None  # the "cpu MHz" line: the clock when the file was read
    threads_per_core: int = 1  # "siblings" over "cpu cores"


def parse_cpuinfo(text):
    """Parse ``/proc/cpuinfo`` text into a CpuInfo (chapter "Performance").

    Only the first processor's block is read; missing fields stay None (or
    empty), so the chapter can say "unknown" instead of inventing a value.
    """
    block = text.strip().split("\n\n")[0]
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if not fields:
        raise ValueError(
            "no 'key : value' lines found: pass the text of /proc/cpuinfo."
        )
    flags = fields.get("flags", fields.get("features", ""))  # x86, then ARM
    mhz = fields.get("cpu mhz")
    siblings, cores = fields.get("siblings"), fields.get("cpu cores")
    threads = 1
    if siblings and cores and siblings.isdigit() and cores.isdigit():
        threads = max(1, int(siblings) // max(1, int(cores)))
    return CpuInfo(
        model=fields.get("model name"),
        flags=frozenset(flags.split()),
        mhz=float(mhz) if mhz else None,
        threads_per_core=threads,
    )


def vector_floats(flags):
    """float32 lanes of the widest vector unit in ``flags``; None if unknown."""
    if "avx512f" in flags:
        return 16
    if "avx2" in flags or "avx" in flags:
        return 8
    if "sse2" in flags or "asimd" in flags:
        return 4
    return None


def clock_ghz(info, cpufreq_max=CPUFREQ_MAX):
    """Return ``(GHz, source)``: cpufreq's maximum if readable, else "cpu MHz".

    ``(None, "unknown")`` when neither is available.
    """
    try:
        return int(Path(cpufreq_max).read_text()) / 1e6, "cpufreq maximum"
    except (OSError, ValueError):
        pass
    if info.mhz:
        return info.mhz / 1000, "cpu MHz in /proc/cpuinfo"
    return None, "unknown"


@dataclasses.dataclass(frozen=True)
class PeakEstimate:
    """A float32 peak FLOP/s derived from the CPU's description ("Performance")."""

    cores: int
    ghz: float
    lanes: int  # float32 values per vector register
    fma: bool  # fused multiply-add: 2 FLOPs per lane per instruction
    units: int  # vector arithmetic units issuing per cycle, an assumption

    @property
    def flops_per_cycle(self):
        """FLOPs one core can finish per cycle."""
        return self.units * self.lanes * (2 if self.fma else 1)

    @property
    def flops(self):
        """FLOP/s of all cores together."""
        return self.cores * self.ghz * 1e9 * self.flops_per_cycle


def estimate_peak(info, cpus, ghz, units=2):
    """Peak float32 FLOP/s = cores x clock x units x lanes x (2 with FMA).

    ``cpus`` logical CPUs become ``cpus / threads_per_core`` cores, since
    hyper-threads share one core's units. ``units=2`` assumes two vector FMA
    units per core (most server cores since 2013; without FMA, one multiplier
    and one adder). Returns None when the clock or the vector width is unknown.
    """
    lanes = vector_floats(info.flags)
    if ghz is None or lanes is None:
        return None
    cores = max(1, math.ceil(cpus / info.threads_per_core))
    return PeakEstimate(cores, ghz, lanes, "fma" in info.flags, units)


def usable_cpus():
    """Logical CPUs this process may run on (its affinity mask)."""
    return len(os.sched_getaffinity(0))


def describe_machine(cpuinfo=CPUINFO, cpufreq_max=CPUFREQ_MAX):
    """The build machine for the chapter's text: a dict of plain values."""
    try:
        info = parse_cpuinfo(Path(cpuinfo).read_text())
    except (OSError, ValueError):
        info = CpuInfo()
    cpus = usable_cpus()
    ghz, clock_source = clock_ghz(info, cpufreq_max)
    peak = estimate_peak(info, cpus, ghz)
    return {
        "model": info.model or "unknown",
        "cpus": cpus,
        "threads_per_core": info.threads_per_core,
        "ghz": ghz,
        "clock_source": clock_source,
        "vector": {16: "AVX-512", 8: "AVX2", 4: "SSE2/NEON"}.get(
            vector_floats(info.flags), "unknown"
        ),
        "fma": "fma" in info.flags,
        "bf16_hardware": any(flag in info.flags for flag in BF16_FLAGS),
        "peak": peak,
    }


def matmul_step(n=2048, dtype="float32", jit_compile=None):
    """A callable that multiplies two fixed random n x n matrices of ``dtype``
    (2 n**3 FLOPs a call); ``jit_compile`` as for :func:`matmul_flops`."""
    positive_int("n", n)
    a = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 2]), dtype)
    product = tf.matmul
    if jit_compile is not None:
        product = tf.function(tf.matmul, jit_compile=jit_compile)
    return lambda: product(a, b)


def matmul_runs(dtypes, steps, n=2048):
    """Name -> run of ``steps`` n x n products, for each dtype, by TensorFlow's
    kernel (``"bfloat16 matmul"``) and by XLA (``"bfloat16 matmul, XLA"``):
    runs to time in turns with a model's steps, for a ceiling measured under
    the same load (chapter "Performance")."""
    return {matmul_name(dtype, jit): step_run(matmul_step(n, dtype, jit), steps)
            for dtype in dict.fromkeys(dtypes) for jit in (False, True)}


def matmul_name(dtype, jit_compile):
    """The name :func:`matmul_runs` gives the run of ``dtype``'s product."""
    return f"{dtype} matmul{', XLA' if jit_compile else ''}"


def matmul_ceiling(measurements, dtype, n=2048):
    """FLOP/s of the faster of ``dtype``'s two products, from the
    measurements (``timing.time_runs``) of :func:`matmul_runs`' runs."""
    return 2 * n**3 * max(measurements[matmul_name(dtype, jit)].steps_per_second
                          for jit in (False, True))


def matmul_flops(n=2048, dtype="float32", steps=3, rounds=3, jit_compile=None):
    """Measured FLOP/s of an n x n matmul (2 n**3 FLOPs), best of ``rounds``.

    The attainable peak: one big product keeps every core's vector units busy,
    with little else to do (chapter "Performance"). ``jit_compile=None`` runs
    the op eagerly (TensorFlow's own kernel); True or False runs it in a
    ``tf.function`` compiled by XLA or not, to see which kernels each uses.
    """
    step = matmul_step(n, dtype, jit_compile)
    measurement = time_steps(step, steps, rounds, name=dtype)
    return 2 * n**3 * measurement.steps_per_second
