"""Where a training step's time goes: the default model with and without augmentation, and without dilation.

Usage: python benchmarks/bench_step.py [--steps 100] [--json benchmarks/results/step.json]

In one process, each setting trains `--steps` steps of batch 128 on real MNIST training
images with Keras `fit` (Adam, op determinism on, as `edgemnist train` runs), after one
untimed pass that builds the graph; best of `--rounds` rounds, in seconds per 100 steps:
  augmented      the default: random rotations, shifts and elastic distortion in the tf.data pipeline
  plain          the same model on the images as they are
  undilated      the same model with every dilation rate 1 (no augmentation)
The second table times one 3x3 depthwise convolution with dilation 2, forward and
backward (batch 128, ms), as TensorFlow runs it (space-to-batch around a native depthwise
convolution) and two formulations of the same arithmetic: a grouped Conv2D with dilation,
and a 5x5 depthwise kernel with zeros between the taps. TensorFlow's CPU kernels differ
with the CPU's instruction set (some lack the dilated grouped Conv2D gradient): a form this
machine cannot run is recorded as "unsupported" with TensorFlow's reason, and the others
still run. Prints tables and writes JSON.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace


def fit_seconds_per_100(model_config, augment: bool, steps: int, rounds: int, batch_size: int = 128) -> float:
    from edgemnist import data
    from edgemnist._tensorflow import import_tensorflow, keras
    from edgemnist.data.augment import make_dataset
    from edgemnist.training.model import build_model

    tf, k = import_tensorflow(), keras()
    k.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    split = data.load_split("train", limit=steps * batch_size)
    ds = make_dataset(split, batch_size, shuffle=True, augment=augment, seed=0, one_hot=True)
    model = build_model("ds_cnn", model_config)
    model.compile(k.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds, epochs=1, verbose=0)  # builds the graph
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        best = min(best, time.perf_counter() - start)
    return best * 100 / steps


def depthwise_ms(height: int, channels: int, repeats: int) -> tuple:
    """Forward+backward ms of a dilated 3x3 depthwise convolution, three ways.

    Returns:
        ({form: ms or None}, {form: why TensorFlow could not run it on this CPU}).
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    x = tf.random.stateless_normal((128, height, height, channels), (0, 1))
    kernel = tf.Variable(tf.random.stateless_normal((3, 3, channels, 1), (0, 2)))

    def zero_filled_5x5():
        k = tf.reshape(tf.stack([kernel, tf.zeros_like(kernel)], axis=1), (6, 3, channels, 1))[:5]
        return tf.reshape(tf.stack([k, tf.zeros_like(k)], axis=2), (5, 6, channels, 1))[:, :5]

    forms = {
        "dilated_depthwise": lambda t: tf.nn.depthwise_conv2d(t, kernel, [1, 1, 1, 1], "SAME", dilations=[2, 2]),
        "grouped_conv2d": lambda t: tf.nn.conv2d(t, tf.reshape(kernel, (3, 3, 1, channels)), 1, "SAME", dilations=2),
        "zero_filled_5x5": lambda t: tf.nn.depthwise_conv2d(t, zero_filled_5x5(), [1, 1, 1, 1], "SAME"),
    }
    out, unsupported, reference = {}, {}, None
    for name, form in forms.items():
        @tf.function
        def step(t, form=form):
            with tf.GradientTape() as tape:
                tape.watch(t)
                loss = tf.reduce_sum(tf.square(form(t)))
            return tape.gradient(loss, [t, kernel])

        try:
            grads = step(x)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
            out[name] = None
            unsupported[name] = exc.message.strip().splitlines()[0][:200]
            continue
        if reference is None:
            reference = grads[0]
        elif float(tf.reduce_max(tf.abs(grads[0] - reference))) > 1e-3 * float(tf.reduce_max(tf.abs(reference))):
            raise RuntimeError(f"{name} does not compute the dilated depthwise convolution")
        start = time.perf_counter()
        for _ in range(repeats):
            step(x)
        out[name] = round((time.perf_counter() - start) / repeats * 1000, 2)
    return out, unsupported


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per setting (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting, best kept (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per depthwise form (default %(default)s)")
    parser.add_argument("--json", default="benchmarks/results/step.json", help="where to write the results")
    args = parser.parse_args(argv)

    from edgemnist.artifacts import atomic_write_json
    from edgemnist.runtime.machine import machine_info
    from edgemnist.training.model import ModelConfig

    default = ModelConfig()
    undilated = replace(default, dilation_rates=tuple(1 for _ in default.dilation_rates))
    steps = {
        "augmented": fit_seconds_per_100(default, True, args.steps, args.rounds),
        "plain": fit_seconds_per_100(default, False, args.steps, args.rounds),
        "undilated": fit_seconds_per_100(undilated, False, args.steps, args.rounds),
    }
    print(f"{'setting':<12}{'s / 100 steps':>15}")
    for name, seconds in steps.items():
        steps[name] = round(seconds, 3)
        print(f"{name:<12}{seconds:>15.2f}")
    layers, unsupported = {}, {}
    for h, c in ((14, 32), (7, 48)):
        layers[f"{h}x{h}x{c}"], why = depthwise_ms(h, c, args.repeats)
        unsupported.update(why)
    print(f"\n{'depthwise 3x3, dilation 2':<28}" + "".join(f"{name:>20}" for name in next(iter(layers.values()))))
    for shape, row in layers.items():
        print(f"{shape + ' fwd+bwd ms':<28}"
              + "".join(f"{'unsupported':>20}" if v is None else f"{v:>20.2f}" for v in row.values()))
    for name, why in unsupported.items():
        print(f"{name}: unsupported on this CPU ({why})")
    result = {"seconds_per_100_steps": steps, "batch_size": 128, "steps": args.steps, "rounds": args.rounds,
              "depthwise_forward_backward_ms": layers,
              "unsupported": unsupported, "machine": machine_info(),
              "command": "python benchmarks/bench_step.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
