"""The chapter "Performance" table on your machine: throughput and ratios to fit().

Run: .venv/bin/python benchmarks/performance_table.py [--steps N] [--batch-size B]

Prints, for the same classifier on Fashion-MNIST, the steps and samples per
second of fit(), fit() with steps_per_execution, fit() with XLA, a custom
train_step, the from-scratch loop (eager, tf.function, XLA) and fit() fed by
tf.data pipelines with and without cache()/prefetch(), each as a ratio to plain
fit(); then the GAN step in float32 and mixed_bfloat16, its FLOPs counted from
the layer shapes, the FLOP/s it achieves and the machine's peak.

On a GPU nothing changes: TensorFlow places the work on the GPU by itself (check
with ``tf.config.list_physical_devices("GPU")``). Expect larger batch sizes to
pay off (``--batch-size 1024``), XLA and mixed_bfloat16 to help more than on a
CPU (bfloat16 needs an Ampere or newer GPU), and the CPU peak lines to describe
the host, not the GPU. Compare ratios from one run only.
"""

import argparse

import fitbook  # noqa: F401  (quiet TensorFlow import first)
from fitbook.data import load_fashion_mnist
from fitbook.gan import FIXED_RECIPE, tune_gan
from fitbook.models import build_discriminator, build_generator
from fitbook.performance import (
    classifier_grid_runs,
    classifier_runs,
    dropout_runs,
    encode_png,
    pipeline_runs,
    to_uint8,
)
from fitbook.performance_flops import gan_step_flops
from fitbook.performance_machine import describe_machine, matmul_flops
from fitbook.reproducibility import set_seed
from fitbook.timing import measurement_table, time_runs
from fitbook.tuning import PLAIN


def main(argv=None):
    """Measure every row of the chapter's table and print it with its ratios."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--steps", type=int, default=64, help="steps per timed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per row")
    parser.add_argument("--gan-steps", type=int, default=8, help="GAN steps per run")
    parser.add_argument("--matmul-n", type=int, default=2048, help="matmul size")
    parser.add_argument("--skip-gan", action="store_true", help="classifier only")
    args = parser.parse_args(argv)
    set_seed(0)
    (x_train, y_train), _ = load_fashion_mnist()
    n = args.steps * args.batch_size
    x, y = x_train[:n], y_train[:n]

    machine = describe_machine()
    print(f"CPU: {machine['model']}, {machine['cpus']} logical CPUs, "
          f"{machine['vector']}, FMA: {machine['fma']}, "
          f"bf16 instructions: {machine['bf16_hardware']}")

    common = dict(steps=args.steps, rounds=args.rounds, batch_size=args.batch_size)
    rows = time_runs(classifier_runs(x, y, args.batch_size), **common)
    png = encode_png(to_uint8(x[: n // 2]))  # two passes per run: fills the cache
    pipelines = pipeline_runs(png, y[: n // 2], args.batch_size, args.steps)
    rows.update(time_runs(pipelines, **common))
    print(measurement_table(rows.values(), baseline="fit()"))
    dropout = time_runs(dropout_runs(x, y, args.batch_size), **common)
    print()
    print(measurement_table(dropout.values(), baseline="Dropout(0.0), function"))
    grid = time_runs(classifier_grid_runs(x, y, args.batch_size), **common)
    print()
    print(measurement_table(grid.values(), baseline=f"fit(), {PLAIN.name}"))
    if args.skip_gan:
        return

    batch = FIXED_RECIPE.batch_size
    tuning = tune_gan(steps=args.gan_steps, rounds=args.rounds, path=None)
    print()
    print(measurement_table(tuning.measurements.values(), baseline=PLAIN.name))
    print(f"autotuner's choice: {tuning.chosen.name}; not sound: "
          f"{tuning.rejected or 'none'}")
    flops = gan_step_flops(build_generator(), build_discriminator(), batch)
    achieved = flops * tuning.steps_per_second[PLAIN.name]
    chosen_rate = flops * tuning.steps_per_second[tuning.chosen.name]
    measured_peak = matmul_flops(args.matmul_n)
    print(f"\nGAN step: {flops / 1e9:.2f} GFLOP (batch {batch}); float32 achieves "
          f"{achieved / 1e9:.1f} GFLOP/s, the chosen configuration "
          f"{chosen_rate / 1e9:.1f}")
    print(f"float32 matmul {args.matmul_n}^2: {measured_peak / 1e9:.1f} GFLOP/s "
          f"-> float32 GAN step at {achieved / measured_peak:.0%} of it")
    for jit in (False, True):
        rate = matmul_flops(args.matmul_n, "bfloat16", jit_compile=jit)
        print(f"bfloat16 matmul, {'XLA' if jit else 'no XLA'}: "
              f"{rate / 1e9:.1f} GFLOP/s")
    peak = machine["peak"]
    if peak is None:
        print("CPU peak: unknown (no clock or vector width in /proc/cpuinfo)")
    else:
        print("(an upper bound: /proc/cpuinfo cannot tell 256-bit from 512-bit "
              "vector units)")
        print(f"CPU peak estimate: {peak.cores} cores x {peak.ghz:.2f} GHz x "
              f"{peak.flops_per_cycle} FLOP/cycle = {peak.flops / 1e9:.0f} GFLOP/s "
              f"-> GAN step at {achieved / peak.flops:.0%}, matmul at "
              f"{measured_peak / peak.flops:.0%}")


if __name__ == "__main__":
    main()
