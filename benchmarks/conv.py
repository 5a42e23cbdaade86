"""1-D CNN ensembles on CPU: im2col against lax.conv, and jaxnn against a torch.func ensemble.

A 1-D CNN on MNIST-1D (inputs [40] read as 40 positions of one channel): `--layers` conv layers
of `--channels` channels, kernel 5, 'same' padding, ReLU, then a linear head on the flattened
positions (40 * channels -> 10); SGD with momentum (lr 0.05, momentum 0.9), batch 100, a fixed
number of steps. Measured in this one process, each after its compilation / warm-up:

  1. jaxnn's cnn1d ensemble (`jaxnn.fit_ensemble`) with model.conv_impl=im2col and =lax, for
     each of `--members` (default 4 and 32): seconds per training step (`time_jaxnn`) and the
     lax / im2col ratio;
  2. a torch.func ensemble of the same shapes (nn.Conv1d layers stacked with
     `stack_module_state`, `vmap(grad(functional_call))`, momentum SGD by hand) with the
     largest member count: seconds per member against jaxnn's default (im2col on CPU).

    python benchmarks/conv.py [--smoke] [--steps N] [--members 4,32] [--impls im2col,lax]
        [--skip-torch] [--matmul-rates] [--data-dir DIR] [--out runs/bench/conv.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.parallel.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts.
split_host_into_devices(os.environ)

import jax
import ml_collections
import numpy as np
from bench_machine import torch_available
from ensemble_timing import time_fit_ensemble, time_torch_func

from jaxnn import data as data_lib
from jaxnn import front_end
from jaxnn.config import default_config

LEARNING_RATE, MOMENTUM, BATCH, KERNEL = 0.05, 0.9, 100, 5


def make_config(
    *,
    layers: int,
    channels: int,
    impl: str,
    members: int,
    steps: int,
    eval_every: int,
    data_dir: str,
    train_per_class: int,
) -> ml_collections.ConfigDict:
    """The benchmark's cnn1d config (validated)."""
    config = default_config()
    config.dataset.data_dir = data_dir
    config.dataset.train_per_class = train_per_class
    config.model.name = "cnn1d"
    config.model.channels = (channels,) * layers
    config.model.kernel_sizes = (KERNEL,)
    config.model.hidden = ()  # no dense layers between the convolutions and the head
    config.model.conv_impl = impl
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = LEARNING_RATE
    config.optimizer.momentum = MOMENTUM
    config.training.batch_size = BATCH
    config.training.steps = steps
    config.training.eval_every = eval_every
    config.restarts.num = members
    config.tensorboard.enabled = False
    front_end.resolve(config)
    return config


def time_jaxnn(data: data_lib.Dataset, *, steps: int, **settings) -> dict:
    """Seconds per training step of jaxnn's cnn1d ensemble (`time_fit_ensemble`)."""
    config = make_config(steps=3 * steps, eval_every=steps, **settings)
    return {"method": f"jaxnn cnn1d ({settings['impl']})", **time_fit_ensemble(config, data, steps)}


def matmul_rates(channels: int, length: int, repeats: int = 30) -> list[dict]:
    """GFLOP/s of the matmuls a conv layer's training step is made of (16 members batched on
    one device): the forward, patches @ kernel (also the shape of the input's gradient as
    jaxnn computes it, patches of dy @ the flipped kernel); the kernel's gradient,
    patches^T @ dy; and the input's gradient as the plain backward of patches @ kernel would
    compute it, dy @ kernel^T, which contracts only the output channels."""
    positions, width = BATCH * length, KERNEL * channels
    shapes = {
        "forward: patches @ kernel": (positions, width, channels),
        "kernel gradient: patches^T @ dy": (width, positions, channels),
        "plain input gradient: dy @ kernel^T": (positions, channels, width),
    }
    rates = []
    for name, (m, k, n) in shapes.items():
        a = jax.random.normal(jax.random.PRNGKey(0), (16, m, k))
        b = jax.random.normal(jax.random.PRNGKey(1), (16, k, n))
        product = jax.jit(lambda a, b: a @ b)
        product(a, b).block_until_ready()
        started = time.perf_counter()
        for _ in range(repeats):
            out = product(a, b)
        out.block_until_ready()
        seconds = (time.perf_counter() - started) / repeats
        rates.append(
            {"matmul": name, "shape": [16, m, k, n], "gflops": 32 * m * k * n / seconds / 1e9}
        )
        print(f"  {name:<38} 16 x [{m}, {k}] @ [{k}, {n}]  {rates[-1]['gflops']:6.1f} GFLOP/s")
    return rates


def torch_cnn(layers: int, channels: int, length: int, num_classes: int):
    from torch import nn

    modules, width = [], 1
    for _ in range(layers):
        modules += [nn.Conv1d(width, channels, KERNEL, padding="same"), nn.ReLU()]
        width = channels
    return nn.Sequential(*modules, nn.Flatten(), nn.Linear(channels * length, num_classes))


def time_torch(data: data_lib.Dataset, *, layers: int, channels: int, members: int, steps: int):
    """The torch.func ensemble of the same shapes, batches and optimiser."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(data.x_train, np.float32))[:, None, :]  # [N, 1, L]
    y = torch.from_numpy(np.asarray(data.y_train, np.int64))
    length = x.shape[-1]
    timed = time_torch_func(
        lambda: torch_cnn(layers, channels, length, data.num_outputs),
        x,
        y,
        members=members,
        steps=steps,
        batch=BATCH,
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
    )
    return {"method": "torch.func vmap over nn.Conv1d", **timed}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=250,
        help="steps per timed chunk (250: the eval_every of the experiments)",
    )
    parser.add_argument("--members", default="4,32")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="2 layers, 8 channels, 3 steps")
    parser.add_argument("--impls", default="im2col,lax", help="conv implementations to time")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument(
        "--matmul-rates", action="store_true", help="also time the step's matmul shapes alone"
    )
    parser.add_argument("--data-dir", default=str(Path(".data") / "tfds"))
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=100,
        help="training examples per class (a small split keeps jaxnn's evaluations short)",
    )
    parser.add_argument("--out", default="runs/bench/conv.json")
    args = parser.parse_args(argv)
    members = [int(m) for m in args.members.split(",")]
    impls = args.impls.split(",")
    layers, channels, steps = args.layers, args.channels, args.steps
    if args.smoke:
        layers, channels, steps, members = 2, 8, 3, [2, 4]

    dataset = default_config().dataset
    dataset.data_dir = args.data_dir
    dataset.train_per_class = args.train_per_class
    data = data_lib.load(dataset)
    shape = dict(layers=layers, channels=channels, steps=steps)
    print(f"cnn1d: {layers} conv layers of {channels} channels, kernel {KERNEL}, batch {BATCH}, "
          f"chunks of {steps} steps, {data.num_train} training examples; "
          f"{jax.device_count()} {jax.default_backend()} device(s)")  # fmt: skip

    rows = []
    for count in members:
        timed = {}
        for impl in impls:
            timed[impl] = time_jaxnn(
                data,
                impl=impl,
                members=count,
                data_dir=args.data_dir,
                train_per_class=args.train_per_class,
                **shape,
            )
            rows.append(timed[impl])
            print(f"  {timed[impl]['method']:<32} {count:>3} members  "
                  f"{timed[impl]['s_per_step'] * 1e3:8.1f} ms/step")  # fmt: skip
        if set(timed) == {"im2col", "lax"}:
            ratio = timed["lax"]["train_s"] / timed["im2col"]["train_s"]
            rows[-1]["lax_over_im2col"] = ratio
            print(f"  lax.conv / im2col, {count} members: {ratio:.1f}x")

    report: dict = {"shape": shape, "rows": rows}
    if args.matmul_rates:
        report["matmul_rates"] = matmul_rates(channels, data.x_train.shape[1])
    if not args.skip_torch and torch_available() and "im2col" in impls:
        count = max(members)
        peer = time_torch(data, members=count, **shape)
        rows.append(peer)
        ours = next(r for r in rows if r["members"] == count and "im2col" in r["method"])
        report["jaxnn_speedup_over_torch_func"] = peer["s_per_member"] / ours["s_per_member"]
        print(f"  {peer['method']:<32} {count:>3} members  {peer['s_per_step'] * 1e3:8.1f} ms/step")
        print(f"  jaxnn cnn1d (im2col) against torch.func, per model: "
              f"{report['jaxnn_speedup_over_torch_func']:.1f}x faster")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
