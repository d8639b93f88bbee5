"""Choose how to run a training step by measuring, on this machine (chapter
"Performance").

Which configuration trains fastest (float32 or ``mixed_bfloat16``, with or
without XLA, how many steps per call) depends on the processor, the libraries
and the model: on one CPU XLA doubles a step's speed, on another it halves it.
So nothing is assumed: :func:`autotune` times a few steps of every candidate
:class:`Config` with :func:`fitbook.timing.time_runs`, after a warm-up, and
returns the fastest one that is *sound*: its losses are finite and close to
those of the plain configuration (float32, no XLA, one step per call), which is
always a candidate, so the choice is never one that measured slower than it.
An option may instead be tried on the winner only, in a second stage
(``variants``: the GAN's shift-add convolution and matmul bias gradient), a
few candidates more.

:func:`cached_autotune` remembers the choice per machine and model in a JSON
file (:func:`cache_path`), so that chapters do not pay for tuning twice.
"""

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import platform
import random
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state  # Keras' global random state
from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

from fitbook.checks import positive_int
from fitbook.tf_noise import captured_stderr_fd, replay
from fitbook.timing import Measurement, finish, time_runs

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Keras dtype policies

AUTO = "auto"  # the value that asks for the tuned choice

CACHE_ENV = "FITBOOK_TUNING_CACHE"  # a file path, or "off" for no cache file


@dataclasses.dataclass(frozen=True)
class Config:
    """One way of running the same training step (chapter "Performance")."""

    precision: str = "float32"  # the Keras dtype policy the model is built under
    jit_compile: bool = False  # compile the step with XLA
    steps_per_execution: int = 1  # training steps per call of the compiled step
    shift_add_conv: bool = False  # one-filter conv as matmul + shifted adds
    matmul_bias_grad: bool = False  # transposed convs' bias gradient as a matmul
    phase_kernel_grads: bool = False  # 7x7-grid layers' kernel gradients by phases

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}."
            )
        if not isinstance(self.jit_compile, bool):
            raise ValueError(
                f"jit_compile must be True or False, got {self.jit_compile!r}."
            )
        positive_int("steps_per_execution", self.steps_per_execution)
        for field in ("shift_add_conv", "matmul_bias_grad", "phase_kernel_grads"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(
                    f"{field} must be True or False, got {getattr(self, field)!r}."
                )

    @property
    def name(self):
        """A short label, e.g. ``mixed_bfloat16, XLA``."""
        parts = [self.precision, "XLA" if self.jit_compile else "no XLA"]
        if self.steps_per_execution > 1:
            parts.append(f"steps_per_execution={self.steps_per_execution}")
        if self.shift_add_conv:
            parts.append("shift-add conv")
        if self.matmul_bias_grad:
            parts.append("matmul bias")  # gradient
        if self.phase_kernel_grads:
            parts.append("phase grads")  # kernel gradients by phases
        return ", ".join(parts)

    @property
    def compute_dtype(self):
        """The dtype the layers compute in: ``"bfloat16"`` under
        ``mixed_bfloat16``, ``"float16"`` under ``mixed_float16``."""
        return keras.DTypePolicy(self.precision).compute_dtype


PLAIN = Config()  # float32, no XLA, one step per call, Keras' Conv2D: the reference


def grid(precisions=("float32", "mixed_bfloat16"), jit_compile=(False, True),
         steps_per_execution=(1,), shift_add_conv=(False,),
         matmul_bias_grad=(False,), phase_kernel_grads=(False,)):
    """Every combination of the options as a list of Configs, ``PLAIN`` first
    when it is among them (:func:`autotune` needs it)."""
    configs = [
        Config(p, j, k, s, b, g)
        for p in precisions for j in jit_compile for k in steps_per_execution
        for s in shift_add_conv for b in matmul_bias_grad for g in phase_kernel_grads
    ]
    if not configs:
        raise ValueError("grid is empty: give at least one value of each option.")
    return sorted(set(configs), key=lambda c: (c != PLAIN, configs.index(c)))


def soundness(losses, reference, rtol=0.1, atol=0.05):
    """``None`` if ``losses`` (name -> number) are sound, else the reason why not.

    Sound: every loss is finite and within ``atol + rtol * |reference|`` of the
    same loss of ``reference``, the plain float32 run of the same steps from
    the same weights on the same batches.
    """
    for name, value in reference.items():
        if name not in losses:
            return f"no {name!r} among its losses {sorted(losses)}"
        value, got = float(value), float(losses[name])
        if not math.isfinite(got):
            return f"{name} is {got}"
        if abs(got - value) > atol + rtol * abs(value):
            return f"{name} {got:.4g} is too far from float32's {value:.4g}"
    return None


@dataclasses.dataclass(frozen=True)
class Tuning:
    """What :func:`autotune` chose, and the measurements that chose it."""

    chosen: Config
    steps_per_second: dict  # candidate name -> steps/s of its best timed round
    rejected: dict  # candidate name -> why it is not sound (it was not timed)
    losses: dict  # candidate name -> its losses after the warm-up steps
    steps: int  # timed steps per round
    cached: bool = False  # read from the cache file, not measured now
    measurements: dict = dataclasses.field(default_factory=dict, compare=False)
    # candidate name -> its timing.Measurement of the first stage's rounds
    second_stage: dict = dataclasses.field(default_factory=dict)
    # the first stage's winner and its variants -> steps/s, timed together
    # (steps_per_second holds the variants at the first stage's pace)

    def ratio(self, name):
        """Candidate ``name``'s speed over the plain configuration's."""
        return self.steps_per_second[name] / self.steps_per_second[PLAIN.name]

    def to_dict(self):
        """A JSON-ready record (provenance files and the cache)."""
        return {
            "chosen": dataclasses.asdict(self.chosen),
            "steps_per_second": {k: round(v, 4)
                                 for k, v in self.steps_per_second.items()},
            "rejected": dict(self.rejected),
            "losses": {k: {n: float(v) for n, v in d.items()}
                       for k, d in self.losses.items()},
            "steps": self.steps,
            "second_stage": {k: round(v, 4) for k, v in self.second_stage.items()},
            "measurements": {k: {"steps": m.steps, "seconds": list(m.seconds),
                                 "batch_size": m.batch_size}
                             for k, m in self.measurements.items()},
        }

    @classmethod
    def from_dict(cls, record, cached=True):
        """The Tuning that :meth:`to_dict` wrote (older records lack
        ``shift_add_conv``, ``matmul_bias_grad`` and ``phase_kernel_grads``,
        i.e. Keras' layers, ``second_stage`` and ``measurements``)."""
        measurements = {
            name: Measurement(name, m["steps"], tuple(m["seconds"]), m["batch_size"])
            for name, m in record.get("measurements", {}).items()}
        return cls(Config(**record["chosen"]), dict(record["steps_per_second"]),
                   dict(record["rejected"]), dict(record["losses"]),
                   record["steps"], cached, measurements=measurements,
                   second_stage=dict(record.get("second_stage", {})))


def autotune(make_run, candidates, steps, rounds=2, batch_size=1, rtol=0.1,
             atol=0.05, eligible=None, variants=None):
    """Time every sound candidate; return a :class:`Tuning` with the fastest.

    ``make_run(config)`` returns a run: a callable that performs ``steps``
    training steps of a model set up as ``config`` says and returns its losses
    (name -> number). Every model must start from the same weights and see the
    same batches. The first call of each run is its warm-up (tracing,
    compiling) and also its test: its losses are compared with those of
    ``candidates[0]``, which must be ``PLAIN``, by :func:`soundness`. Only the
    sound candidates are then timed, ``rounds`` alternating rounds each, by
    :func:`fitbook.timing.time_runs`; the best round counts. The fastest
    of those, among ``eligible`` ones if given (default: all), is chosen.

    ``variants`` (Config fields -> values, e.g. ``{"shift_add_conv": True}``)
    adds a second stage: each variant of the winner (the winner with one or
    more of those fields changed: every combination) is warmed up, tested the
    same way, and timed in alternating rounds *with the winner*; the fastest
    of them is chosen. A variant's
    ``steps_per_second`` is the winner's first-stage rate times their ratio in
    the second stage (both stages' raw rates: ``second_stage``; ``measurements``
    holds the first stage's). A switch tuned this way doubles the second stage,
    not the whole grid, on the assumption that the best setting of the other
    options does not depend on it.
    """
    candidates = list(candidates)
    if not candidates or candidates[0] != PLAIN:
        raise ValueError(
            f"the first candidate must be the plain configuration {PLAIN} (the "
            "reference for soundness and speed); use fitbook.tuning.grid()."
        )
    if len(set(candidates)) != len(candidates):
        raise ValueError("candidates hold the same Config twice.")
    positive_int("steps", steps)
    runs = {config.name: make_run(config) for config in candidates}
    losses = {name: finish(run()) for name, run in runs.items()}  # warm-up
    reference = losses[PLAIN.name]
    rejected = {
        name: reason for name, result in losses.items()
        if (reason := soundness(result, reference, rtol, atol)) is not None
    }
    if PLAIN.name in rejected:
        raise FloatingPointError(
            f"the plain float32 run itself is not sound ({rejected[PLAIN.name]}): "
            "fix the model or its data before tuning how to run it."
        )
    timed = time_runs({n: r for n, r in runs.items() if n not in rejected},
                      steps, rounds, warmup=0, batch_size=batch_size)
    rates = {name: m.steps_per_second for name, m in timed.items()}
    allowed = candidates if eligible is None else list(eligible)
    ranked = [c for c in allowed if c.name in rates]
    if not ranked:
        raise FloatingPointError(
            "no eligible candidate is sound: " + "; ".join(
                f"{c.name}: {rejected.get(c.name, 'not a candidate')}"
                for c in allowed)
        )
    chosen = max(ranked, key=lambda c: rates[c.name])
    tried = [dataclasses.replace(chosen, **changes)
             for changes in combinations(variants)]
    tried = [*dict.fromkeys(c for c in tried if c.name not in runs)]
    if not tried:
        return Tuning(chosen, rates, rejected, losses, steps, measurements=timed)
    runs.update({c.name: make_run(c) for c in tried})
    for config in tried:  # warm-up and test, as in the first stage
        losses[config.name] = finish(runs[config.name]())
        if (reason := soundness(losses[config.name], reference, rtol, atol)):
            rejected[config.name] = reason
    stage = [chosen] + [c for c in tried if c.name not in rejected]
    if len(stage) == 1:
        return Tuning(chosen, rates, rejected, losses, steps, measurements=timed)
    again = time_runs({c.name: runs[c.name] for c in stage}, steps, rounds,
                      warmup=0, batch_size=batch_size)
    second = {name: measured.steps_per_second for name, measured in again.items()}
    pace = rates[chosen.name] / second[chosen.name]  # the first stage's pace
    for config in stage[1:]:  # at that pace, so ratios to PLAIN stay comparable
        rates[config.name] = second[config.name] * pace
    chosen = max(stage, key=lambda c: second[c.name])
    return Tuning(chosen, rates, rejected, losses, steps, measurements=timed,
                  second_stage=second)


def combinations(variants):
    """Every non-empty subset of ``variants`` (field -> value), each a dict,
    single fields first."""
    items = sorted((variants or {}).items())
    return [dict(subset) for size in range(1, len(items) + 1)
            for subset in itertools.combinations(items, size)]


def restrict(candidates, precision=AUTO, jit_compile=AUTO):
    """``(candidates, eligible)``: the configurations that agree with the
    settings given explicitly (``"auto"`` leaves an option free), with every
    XLA choice for a ``precision`` not among ``candidates``; and the same list
    with ``PLAIN`` first, the reference even where it is not eligible."""
    options = {c.jit_compile for c in candidates} | {False}
    layers = {(c.shift_add_conv, c.matmul_bias_grad, c.phase_kernel_grads)
              for c in candidates}
    extra = [] if precision in (AUTO, *(c.precision for c in candidates)) else [
        Config(precision, j, shift_add_conv=s, matmul_bias_grad=b,
               phase_kernel_grads=g)
        for j in sorted(options) for s, b, g in sorted(layers)]
    eligible = [c for c in [*candidates, *extra]
                if precision in (AUTO, c.precision)
                and jit_compile in (AUTO, c.jit_compile)]
    if not eligible:
        raise ValueError(
            f"no candidate has precision={precision!r}, jit_compile={jit_compile!r}."
        )
    return [PLAIN] + [c for c in eligible if c != PLAIN], eligible


# ------------------------------------------------------------ the cache


def machine_key():
    """What a choice depends on besides the model: processor, its vector and
    bfloat16 flags, usable cores, GPUs, TensorFlow and Keras versions."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name", platform.processor())
    flags = set(fields.get("flags", fields.get("features", "")).split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma",
              "asimd", "bf16")
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return "; ".join([
        model, ",".join(f for f in wanted if f in flags),
        f"{len(os.sched_getaffinity(0))} cpus", f"gpus {gpus}",
        f"tf {tf.__version__}", f"keras {keras.__version__}",
    ])


def cache_path(environ=os.environ):
    """The cache file: ``$FITBOOK_TUNING_CACHE``, else
    ``~/.cache/fitbook/tuning.json``; ``None`` when the variable is ``off``."""
    path = environ.get(CACHE_ENV)
    if path == "off":
        return None
    if path:
        return Path(path)
    return Path.home() / ".cache" / "fitbook" / "tuning.json"


RECORD_FORMAT = "record 5"  # in every cache key: older records are measured again
# record 3: the GAN timed on data without tf.data autotuning, one model per contender
# record 4: ShiftAddConv2D with its written-out gradient (faster; same function)
# record 5: a third variant of the GAN's winner, phase kernel gradients


def cache_key(model, candidates, steps, eligible=None, variants=None):
    """The cache entry of one model (a name you choose) tuned over
    ``candidates`` (and ``variants`` of the winner) on this machine."""
    text = "|".join([model, machine_key(), str(steps), RECORD_FORMAT]
                    + [c.name for c in candidates]
                    + ["eligible"] + [c.name for c in eligible or ()]
                    + [f"{k}={v}" for k, v in sorted((variants or {}).items())])
    return f"{model}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


_MEMORY = {}  # cache key -> Tuning, for this process


def cached_autotune(model, make_run, candidates, steps, path=AUTO, **options):
    """:func:`autotune`, remembered per machine and model.

    ``model`` names what is tuned (e.g. ``"gan"``). The choice is kept for this
    process and in the JSON file ``path`` (default :func:`cache_path`; ``None``
    for none), keyed by the model, :func:`machine_key` and the candidates; a
    result read back has ``cached=True``. Delete the file to measure again.
    """
    candidates = list(candidates)
    key = cache_key(model, candidates, steps, options.get("eligible"),
                    options.get("variants"))
    path = cache_path() if path == AUTO else (Path(path) if path else None)
    memory_key = (key, str(path))
    if memory_key in _MEMORY:
        return _MEMORY[memory_key]
    records = {}
    if path is not None and path.is_file():
        with contextlib.suppress(ValueError, OSError):
            records = json.loads(path.read_text())
    if isinstance(records, dict) and key in records:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            tuning = Tuning.from_dict(records[key])
            _MEMORY[memory_key] = tuning
            return tuning
    tuning = autotune(make_run, candidates, steps, **options)
    _MEMORY[memory_key] = tuning
    if path is not None:
        records = records if isinstance(records, dict) else {}
        records[key] = tuning.to_dict()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(records, indent=2) + "\n")
            temporary.replace(path)
    return tuning


def quiet_autotune(model, make_run, candidates, steps, **options):
    """:func:`cached_autotune` for runs that build a new model per candidate:
    the caller's random state is kept (:func:`random_state_kept`), TensorFlow's
    retracing warnings are silenced, and its known harmless stderr notices are
    dropped (every other stderr line is printed after the tuning)."""
    lines, logger = [], tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # one new model per candidate: retracing is expected
    try:
        with random_state_kept(), captured_stderr_fd() as lines:
            return cached_autotune(model, make_run, candidates, steps, **options)
    finally:
        logger.setLevel(level)
        replay(lines)  # all but TensorFlow's known harmless notices


# ------------------------------------------------------------ global state


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


@contextlib.contextmanager
def random_state_kept():
    """Inside the block, build and train models freely: afterwards Python's,
    NumPy's and Keras' global random states are as before, so a tuning run does
    not change the weights of the models built after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    generator_state = None if generator is None else generator.state.numpy()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
        if generator is not None:
            generator.state.assign(generator_state)
