"""Measure training throughput, the machine and its peak (chapter "Performance").

Every row of the chapter's table and of ``benchmarks/performance_table.py`` is
timed by :func:`fitbook.timing.time_runs`. This module supplies what it times,
and what the chapter compares the results with:

- contenders: the same classifier trained by ``fit()`` (with and without
  ``steps_per_execution``), by a custom ``train_step``, by the from-scratch
  ``Trainer`` in each mode, and by ``fit()`` fed from ``tf.data`` pipelines;
  the GAN step in float32 and in ``mixed_bfloat16``;
- the machine: ``/proc/cpuinfo`` parsed by pure functions, a peak FLOP/s
  derived from it under stated assumptions, and one measured with a matmul;
- a plain Markdown table, so no pandas is needed.
"""

import contextlib
import dataclasses
import functools
import html
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fitbook.checks import positive_int
from fitbook.data import image_dataset
from fitbook.gan import FIXED_RECIPE, build_gan
from fitbook.loops import Trainer, trainer_run
from fitbook.models import classifier, compile_classifier
from fitbook.timing import dataset_run, fit_run, time_steps
from fitbook.train_step import CustomTrainStepModel

CPUINFO = Path("/proc/cpuinfo")
CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions computing in bfloat16


@contextlib.contextmanager
def dtype_policy(name):
    """Set Keras' global dtype policy inside the block, restore it after, even
    on error (chapter "Performance").

    Layers take the global policy when they are created, so build the model
    inside the block; it keeps computing in that policy afterwards.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ---------------------------------------------------------------- contenders


def _compiled(hidden, model_class=keras.Model, **compile_options):
    """The chapter's classifier (``models.classifier``, seed 0, softmax), compiled
    by ``models.compile_classifier`` with ``compile_options`` ("Performance")."""
    model = classifier(model_class, hidden=hidden, seed=0, probabilities=True)
    return compile_classifier(model, **compile_options)


def classifier_runs(x, y, batch_size, hidden=128):
    """Name -> run for every way of training the classifier, one epoch each.

    The same architecture, data, batch size, optimizer and loss in every row:
    only the machinery around the step changes (chapter "Performance").
    """
    runs = {
        "fit()": fit_run(_compiled(hidden, jit_compile=False),
                         x, y, batch_size),
    }
    for k in (8, 32):
        model = _compiled(hidden, jit_compile=False, steps_per_execution=k)
        runs[f"fit(), steps_per_execution={k}"] = fit_run(model, x, y, batch_size)
    model = _compiled(hidden, jit_compile=True)
    runs["fit(), jit_compile=True"] = fit_run(model, x, y, batch_size)
    model = _compiled(hidden, CustomTrainStepModel, jit_compile=False)
    runs["custom train_step, fit()"] = fit_run(model, x, y, batch_size)
    loss = keras.losses.SparseCategoricalCrossentropy()
    for mode, label in (("eager", "eager"), ("function", "tf.function"),
                        ("jit", "tf.function(jit_compile=True)")):
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        trainer = Trainer(
            classifier(keras.Model, hidden=hidden, seed=0, probabilities=True),
            keras.optimizers.Adam(1e-3), loss,
            [accuracy], mode=mode,
        )
        runs[f"from-scratch loop, {label}"] = trainer_run(trainer, x, y, batch_size)
    return runs


def dropout_runs(x, y, batch_size, rates=(0.0, 0.2), hidden=128):
    """Name -> run: the from-scratch loop under ``tf.function`` and under XLA, for
    each Dropout rate of ``rates`` (chapter "Performance").

    The model is chapter "Training loops"'s classifier; only the Dropout rate and
    the compilation change, so the rows isolate what random masks cost under XLA.
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    runs = {}
    for rate in rates:
        for mode in ("function", "jit"):
            trainer = Trainer(
                classifier(hidden=hidden, dropout=rate, seed=0),
                keras.optimizers.Adam(1e-3),
                loss,
                [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                mode=mode,
            )
            runs[f"Dropout({rate}), {mode}"] = trainer_run(trainer, x, y, batch_size)
    return runs


def to_uint8(images):
    """Float images in [0, 1] back to the uint8 pixels they were stored as."""
    images = np.asarray(images)
    if images.size == 0 or images.min() < 0 or images.max() > 1:
        raise ValueError("to_uint8 expects a non-empty array of values in [0, 1].")
    return np.round(images * 255).astype("uint8")


def encode_png(images):
    """Encode uint8 images (n, height, width, channels) as PNG byte strings.

    They stand for image files on disk: a pipeline must decode every one.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"encode_png expects uint8 images shaped (n, height, width, channels), "
            f"got {images.dtype} {images.shape}; see to_uint8()."
        )
    encoded = tf.data.Dataset.from_tensor_slices(images).map(tf.io.encode_png)
    return np.array(list(encoded.as_numpy_iterator()), dtype=object)


def decode(png, label):
    """PNG bytes to a float32 image in [0, 1] (the pipeline's costly map)."""
    image = tf.io.decode_png(png, channels=1)
    return tf.cast(image, tf.float32) / 255.0, label


def augment(index, batch, seed=0):
    """Mirror a random half of the batch's images, left to right.

    One vectorised op per batch rather than one per image. The randomness is a
    pure function of ``(seed, index)``, ``index`` counting batches across
    epochs: the same images, whatever the pipeline's caching and prefetching.
    """
    images, labels = batch
    op_seed = tf.stack([tf.cast(seed, tf.int64), index])
    return tf.image.stateless_random_flip_left_right(images, op_seed), labels


def image_pipeline(png, labels, batch_size, cache=False, prefetch=False, seed=0):
    """Batches of augmented images from PNG bytes, repeated forever.

    decode -> [cache] -> repeat -> batch -> augment -> [prefetch]: the cache
    keeps decoded images, never augmented ones, so every epoch is augmented
    anew (chapter "Performance").
    """
    if len(png) != len(labels) or len(png) == 0:
        raise ValueError(
            f"png and labels must hold the same, non-zero number of examples; "
            f"got {len(png)} and {len(labels)}."
        )
    positive_int("batch_size", batch_size)
    ds = tf.data.Dataset.from_tensor_slices((png, labels)).map(decode)
    if cache:
        ds = ds.cache()  # in memory, filled by the first full pass
    ds = ds.repeat().batch(batch_size, drop_remainder=True).enumerate()
    ds = ds.map(functools.partial(augment, seed=seed))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)  # prepare batches while training
    return ds


PIPELINES = {  # row name -> options of image_pipeline
    "tf.data: decode + augment": {},
    "tf.data: + cache()": {"cache": True},
    "tf.data: + prefetch()": {"prefetch": True},
    "tf.data: + cache() + prefetch()": {"cache": True, "prefetch": True},
}


def pipeline_runs(png, labels, batch_size, steps, hidden=128):
    """Name -> run: ``steps`` fit() steps fed by each pipeline of PIPELINES.

    A run must read more than one pass over the images, so that the first run
    completes the cache (a partly read cache is thrown away, with a warning).
    """
    if steps * batch_size <= len(png):
        raise ValueError(
            f"steps * batch_size ({steps * batch_size}) must exceed the number of "
            f"images ({len(png)}) so one run fills the cache; use fewer images."
        )
    runs = {}
    for name, options in PIPELINES.items():
        model = _compiled(hidden, jit_compile=False)
        dataset = image_pipeline(png, labels, batch_size, **options)
        runs[name] = dataset_run(model, dataset, steps)
    return runs


def gan_runs(images, steps, policies=("float32", "mixed_bfloat16"), jit_compile=True):
    """Name -> run: ``steps`` GAN steps under fit(), for each dtype policy.

    The GAN of chapter "A GAN, two ways" with its fixed recipe, built inside
    :func:`dtype_policy` so its layers compute in that policy.
    """
    runs = {}
    for policy in policies:
        with dtype_policy(policy):
            gan = build_gan(FIXED_RECIPE, jit_compile=jit_compile)
        dataset = image_dataset(images, FIXED_RECIPE.batch_size, repeat=True)
        runs[f"GAN step, {policy}"] = dataset_run(gan, dataset, steps)
    return runs


# ---------------------------------------------------------------- the machine


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


def matmul_flops(n=2048, dtype="float32", steps=3, rounds=3):
    """Measured FLOP/s of an n x n matmul (2 n**3 FLOPs), best of ``rounds``.

    The attainable peak: one big product keeps every core's vector units busy,
    with little else to do (chapter "Performance").
    """
    positive_int("n", n)
    a = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 2]), dtype)
    measurement = time_steps(lambda: tf.matmul(a, b), steps, rounds, name=dtype)
    return 2 * n**3 * measurement.steps_per_second


# ---------------------------------------------------------------- the table


def check_rows(headers, rows):
    """Raise a clear ValueError unless every row has one cell per header."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells, like the headers.")


def markdown_table(headers, rows):
    """A Markdown table from a header list and rows of cells (any values)."""
    check_rows(headers, rows)

    def cell(value):
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join(" --- " for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers, rows):
    """An HTML table from a header list and rows of cells (chapter "Performance").

    The book renders cell outputs as CommonMark, which has no tables.
    """
    check_rows(headers, rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def measurement_table(measurements, baseline, unit="samples/s", html=False):
    """A table of measurements: steps/s, samples/s and ratio to ``baseline``.

    ``baseline`` is a Measurement (or the name of one in ``measurements``), e.g.
    plain ``fit()``; its ratio is 1.00x. Markdown, or HTML with ``html=True``
    (chapter "Performance").
    """
    measurements = list(measurements)
    if isinstance(baseline, str):
        found = [m for m in measurements if m.name == baseline]
        if not found:
            raise ValueError(f"no measurement named {baseline!r} to compare with.")
        baseline = found[0]
    rows = [
        (
            m.name,
            f"{m.steps_per_second:,.1f}",
            f"{m.samples_per_second:,.0f}",
            f"{m.ratio(baseline):.2f}x",
            f"{m.spread:.2f}",
        )
        for m in measurements
    ]
    headers = ("run", "steps/s", unit, f"vs {baseline.name}", "median/best")
    return (html_table if html else markdown_table)(headers, rows)
