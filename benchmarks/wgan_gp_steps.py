"""Generator steps per second: the WGAN-GP step vs the GAN step, and their ratio.

Both are fitbook models trained with fit() on the same Fashion-MNIST images,
each in its tuned configuration (--jit auto: XLA where it measured faster on
this machine; --jit on/off to force it); every update sees --batch-size real
images (the WGAN-GP's train_step splits critic_steps such batches).
fitbook.timing.time_runs warms each step up, then alternates rounds between the
two models, so background load hits both alike.
Run: .venv/bin/python benchmarks/wgan_gp_steps.py
"""

import argparse

import fitbook  # noqa: F401  (quiet TensorFlow import)
from fitbook import gan as G
from fitbook import wgan_gp as W
from fitbook.data import image_dataset, load_fashion_mnist
from fitbook.reproducibility import set_seed
from fitbook.timing import dataset_run, time_runs

JIT = {"auto": "auto", "on": True, "off": False}  # --jit -> jit_compile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--critic-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--jit", choices=sorted(JIT), default="auto",
                        help="XLA: auto (measured, the default), on or off")
    args = parser.parse_args()
    jit = JIT[args.jit]
    set_seed(0)
    (x_train, _), _ = load_fashion_mnist()
    x = x_train[:12800]
    models = {
        "GAN": (
            G.build_gan(G.FIXED_RECIPE, jit_compile=jit),
            image_dataset(x, args.batch_size, repeat=True),
        ),
        "WGAN-GP": (
            W.build_wgan_gp(critic_steps=args.critic_steps, jit_compile=jit),
            image_dataset(x, args.critic_steps * args.batch_size, repeat=True),
        ),
    }
    runs = {
        name: dataset_run(model, data, args.steps)
        for name, (model, data) in models.items()
    }
    measured = time_runs(runs, args.steps, rounds=args.rounds)  # takes turns
    medians = {
        name: 1 / m.median_steps_per_second for name, m in measured.items()
    }
    for name, s in medians.items():
        print(f"{name:<8} {1 / s:6.2f} generator steps/s  ({1000 * s:.0f} ms a step, "
              f"median of {args.rounds} rounds)")
    print(f"jit_compile: GAN {models['GAN'][0].jit_compile}, WGAN-GP "
          f"{models['WGAN-GP'][0].jit_compile} (asked: {args.jit}), "
          f"critic_steps: {args.critic_steps}, batch per update: {args.batch_size}")
    print(f"ratio WGAN-GP/GAN time per generator step: "
          f"{medians['WGAN-GP'] / medians['GAN']:.2f}")


if __name__ == "__main__":
    main()
