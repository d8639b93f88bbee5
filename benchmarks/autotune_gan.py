"""The autotuned GAN step against the plain reference, and against the matmul.

Measured in one run, on this machine:
(a) the GAN step in the configuration ``fitbook.gan.tune_gan`` chooses (measured
    now, not read from the cache; precision x XLA, then for the winner how
    the networks' convolutions compute: Keras' layers, the shift-add last
    convolution, matmul bias gradients, kernel gradients by phases, or any
    combination) over the
    plain keras.io-style reference GAN (float32, no XLA) of ``gan_steps.py``.
    Targets: >= 2.0x on a CPU with bfloat16 instructions, >= 1.0x anywhere;
(b) the FLOP/s the chosen step achieves over the measured matmul of the dtype
    it computes in (the best of TensorFlow's kernel and XLA). Target: >= 60 %.
    The matmuls take turns with the two GANs in the same timed rounds, so that
    a slow spell of the machine hits the step and its ceiling alike.

Both GANs read the same batches from ``fitbook.data.image_dataset``, which
switches tf.data's autotuning off: with it on, on a 2-core Zen 5 EPYC (CPU
family 26, avx512_bf16) from about half to all of the new iterators, run to
run, made every step of either GAN run at two thirds of its speed, both
worker threads idle a third of the time, for as long as the iterator lived.
``fit()`` makes a new iterator on every call, so each timed round (one call)
was a new draw, and rounds in a row could all be slow. Each model is built
from several seeds (starting weights) and its best round counts.

Run: PYTHONPATH=src .venv/bin/python benchmarks/autotune_gan.py
"""

import statistics

from _common import parser
from fitbook.data import image_dataset, load_fashion_mnist
from fitbook.gan import FIXED_RECIPE, build_gan, conv_name, tune_gan
from fitbook.performance_flops import gan_step_flops
from fitbook.performance_machine import describe_machine, matmul_ceiling, matmul_runs
from fitbook.reproducibility import set_seed
from fitbook.timing import dataset_run, time_runs
from gan_steps import build_reference


def main():
    options = parser(__doc__, steps=10, rounds=3)
    options.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                         help="starting weights to time both GANs from")
    args = options.parse_args()
    set_seed(0)
    machine = describe_machine()
    print(f"CPU: {machine['model']}; {machine['cpus']} CPUs; {machine['vector']}; "
          f"bfloat16 instructions: {machine['bf16_hardware']}")
    tuning = tune_gan(path=None)
    for name, rate in tuning.steps_per_second.items():
        print(f"  tuning: {name:<28} {rate:6.2f} steps/s")
    print(f"  not sound: {tuning.rejected or 'none'}")
    for name, rate in tuning.second_stage.items():
        print(f"  second stage (the winner against its variants): "
              f"{name:<40} {rate:6.2f} steps/s")
    chosen = tuning.chosen
    print(f"chosen: {chosen.name} (conv setting: {conv_name(chosen)})")

    (x_train, _), _ = load_fashion_mnist()
    batch = FIXED_RECIPE.batch_size
    dataset = image_dataset(x_train[:6400], batch, repeat=True)
    dtype = chosen.compute_dtype
    matmuls = matmul_runs([dtype], args.steps)  # TensorFlow's kernel and XLA
    ratios, shares = [], []
    for seed in args.seeds:
        set_seed(seed)
        ours = build_gan(FIXED_RECIPE, jit_compile=chosen.jit_compile,
                         precision=chosen.precision, conv=conv_name(chosen))
        models = {"autotuned GAN": ours, "reference GAN": build_reference()}
        runs = {name: dataset_run(m, dataset, args.steps) for name, m in models.items()}
        runs.update(matmuls)
        # warmed up, then alternating rounds: load hits all of them alike
        measured = time_runs(runs, args.steps, rounds=args.rounds, batch_size=batch)
        for name, m in measured.items():
            unit = "steps/s" if name in models else "products/s"
            print(f"seed {seed}: {name:<22} {m.steps_per_second:6.2f} {unit} (best of "
                  f"{args.rounds} rounds; median {m.median_steps_per_second:.2f})")
        ratios.append(measured["autotuned GAN"].steps_per_second
                      / measured["reference GAN"].steps_per_second)
        flops = gan_step_flops(ours.generator, ours.discriminator, batch)
        achieved = flops * measured["autotuned GAN"].steps_per_second
        ceiling = matmul_ceiling(measured, dtype)
        shares.append((achieved, ceiling))
        print(f"seed {seed}: GAN step {achieved / 1e9:.1f} GFLOP/s, {dtype} matmul "
              f"{ceiling / 1e9:.1f} GFLOP/s: {100 * achieved / ceiling:.1f} %")
    ratio = statistics.median(ratios)
    print(f"ratios per seed: {', '.join(f'{r:.2f}x' for r in ratios)}")
    target = 2.0 if machine["bf16_hardware"] else 1.0
    print(f"(a) autotuned / reference, median over seeds: {ratio:.2f}x "
          f"(target >= {target:.1f}x)")
    achieved, ceiling = median_share(shares)
    print(f"(b) chosen GAN step {achieved / 1e9:.1f} GFLOP/s / {dtype} matmul "
          f"{ceiling / 1e9:.1f} GFLOP/s = {100 * achieved / ceiling:.1f} %, median "
          "over seeds (target >= 60 %)")


def median_share(shares):
    """The (achieved, ceiling) pair of median ratio among ``shares``."""
    ordered = sorted(shares, key=lambda pair: pair[0] / pair[1])
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    main()
