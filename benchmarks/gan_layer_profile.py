"""The GAN's layers one by one: forward + backward time and share of the total.

Every layer of the generator (batch 64 noise vectors) and of the discriminator
(batch 128 images, real and fake, as in its update), in float32 and
mixed_bfloat16, with the generator's last convolution computed by Keras' Conv2D
and by ``fitbook.models.ShiftAddConv2D`` (same weights, same input). All layers
of both precisions take turns in the same rounds (``fitbook.timing.time_runs``),
so a burst of load hits them alike; the best round counts. The share is of the
sum over the layers with Keras' Conv2D.

Run: PYTHONPATH=src .venv/bin/python benchmarks/gan_layer_profile.py
"""

from _common import parser
from fitbook.performance import gan_layer_profile
from fitbook.performance_machine import describe_machine
from fitbook.reproducibility import set_seed


def main():
    args = parser(__doc__, steps=5, rounds=3).parse_args()
    set_seed(0)
    machine = describe_machine()
    print(f"CPU: {machine['model']}; {machine['cpus']} CPUs; {machine['vector']}; "
          f"bfloat16 instructions: {machine['bf16_hardware']}")
    profile, shapes = gan_layer_profile(steps=args.steps, rounds=args.rounds)
    for policy, seconds in profile.items():
        keras_total = sum(t for n, t in seconds.items() if "ShiftAdd" not in n)
        print(f"\n{policy}: total {1000 * keras_total:.1f} ms (Keras' Conv2D)")
        for name, t in seconds.items():
            shape = shapes.get(name, "same")
            print(f"  {name:<26} {str(shape):<16} {1000 * t:8.2f} ms "
                  f"{100 * t / keras_total:5.1f} %")
        conv = next(t for n, t in seconds.items() if n.endswith(" Conv2D")
                    and n.startswith("G"))
        shifted = next(t for n, t in seconds.items() if "ShiftAdd" in n)
        print(f"  last layer, Conv2D / shift-add time: {conv / shifted:.2f}x")


if __name__ == "__main__":
    main()
