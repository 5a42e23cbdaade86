"""Image ensembles on CPU: jaxnn's cnn2d and resnet against torch.func vmap of the same network.

Two small fixed networks on the local MNIST subset (28x28x1 images; `--train-per-class`
examples of each digit): cnn2d, two 3x3 'same' conv layers of 32 and 64 channels, each followed
by ReLU and 2x2 max pooling, no normalisation, then the linear head (7 * 7 * 64 -> 10); resnet,
the CIFAR stem and stages (1, 1, 1) of standard basic blocks of widths (16, 32, 64) with
GroupNorm (BatchNorm would need torch.func's `replace_all_batch_norm_modules_`, which drops the
running statistics jaxnn keeps), global average pooling, the head. SGD with momentum (lr 0.05,
momentum 0.9), batch `--batch`, every member its own shuffled batches. Measured in this one
process, each after its compilation / warm-up, for each of `--members` (default 8 and 32):

  1. jaxnn's ensemble (`jaxnn.fit_ensemble`): seconds per step and per member, and for cnn2d
     both convolutions (model.conv_impl=im2col and =lax; the lax / im2col ratio);
  2. the torch.func ensemble of the same network (`torch_image_nets`: `stack_module_state`,
     `vmap(grad(functional_call))`, momentum SGD by hand): torch's seconds per member over
     jaxnn's (auto: im2col on CPU), the per-model ratio;
  3. each method's rate in GFLOP/s (3 x XLA's count of one member's forward pass per example)
     and its fraction of this machine's dense float32 matmul rate (the best of jax, numpy and
     torch at 1024 x 1024).

    python benchmarks/conv2d.py [--smoke] [--steps N] [--members 8,32] [--models cnn2d,resnet]
        [--impls im2col,lax] [--skip-torch] [--out runs/bench/conv2d.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.parallel.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts.
split_host_into_devices(os.environ)

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from bench_machine import machine_info, matmul_gflops, torch_available
from ensemble_timing import time_fit_ensemble, time_torch_func

from jaxnn import data as data_lib
from jaxnn import front_end
from jaxnn.config import default_config
from jaxnn.nn import family as family_lib
from jaxnn.nn import registry

LEARNING_RATE, MOMENTUM = 0.05, 0.9
NETWORKS = {
    "cnn2d": {
        "channels": (32, 64), "kernel_sizes": (3,), "strides": (1,), "padding": "same",
        "pool": "max", "pool_size": 2, "norm": "none", "hidden": (),
    },
    "resnet": {
        "stages": (1, 1, 1), "widths": (16, 32, 64), "stem": "cifar", "preact": False,
        "norm": "group",
    },
}  # fmt: skip
SMOKE_WIDTHS = {"cnn2d": {"channels": (4, 8)}, "resnet": {"widths": (4, 8, 8)}}
# The members' numeric hyperparameters, as the config's defaults state them.
HPARAMS = {"dropout": 0.0, "init_scale": 1.0, "negative_slope": 0.01}


def make_config(
    name: str, network: dict, *, impl: str, members: int, steps: int, batch: int, dataset: dict
) -> ml_collections.ConfigDict:
    """The benchmark's config for family `name` (validated): 3 chunks of `steps` steps."""
    config = default_config()
    config.dataset.update(dataset)
    config.model.name = name
    for field, value in network.items():
        config.model[field] = value
    config.model.conv_impl = impl
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = LEARNING_RATE
    config.optimizer.momentum = MOMENTUM
    config.training.batch_size = batch
    config.training.steps = 3 * steps
    config.training.eval_every = steps
    config.restarts.num = members
    config.tensorboard.enabled = False
    front_end.resolve(config)
    return config


def member_module(name: str, network: dict, num_outputs: int, impl: str = "auto"):
    """One jaxnn member's Module of family `name` with the fields `network`."""
    model_cfg = ml_collections.ConfigDict(registry.model_defaults())
    model_cfg.update({**network, "name": name, "conv_impl": impl})
    return registry.family(name).build(model_cfg, HPARAMS, num_outputs)


def forward_flops(name: str, network: dict, image_shape: tuple, num_outputs: int) -> float:
    """XLA's floating-point operation count of one member's forward pass on one image (with
    lax.conv, whose count is the convolution's own: 2 x multiply-adds)."""
    module = member_module(name, network, num_outputs, impl="lax")
    x = jnp.zeros((1, *image_shape), jnp.float32)
    variables = family_lib.init_model(module, jax.random.PRNGKey(0), x)
    compiled = jax.jit(lambda v, x: module.apply(v, x)).lower(variables, x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def time_torch(name: str, network: dict, data: data_lib.Dataset, **settings) -> dict:
    """The torch.func ensemble of the same network, batches and optimiser."""
    import torch
    import torch_image_nets

    x = torch_image_nets.as_torch_images(data.x_train)
    y = torch.from_numpy(np.asarray(data.y_train, np.int64))
    shape = data.x_train.shape[1:]
    timed = time_torch_func(
        lambda: torch_image_nets.build(name, network, shape, data.num_outputs),
        x,
        y,
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
        **settings,
    )
    return {"model": name, "method": "torch.func vmap", **timed}


def with_rate(row: dict, flops_per_example: float, batch: int, matmul: float) -> dict:
    """The row with its GFLOP/s (3 x forward per example per member-step) and its fraction of
    the machine's matmul rate."""
    gflops = 3 * flops_per_example * batch * row["members"] * row["steps"] / row["train_s"] / 1e9
    return {**row, "gflops": gflops, "fraction_of_matmul": gflops / matmul}


def time_model(name: str, network: dict, data, args, matmul: float, with_torch: bool) -> dict:
    """Every timing of family `name`: jaxnn per impl and member count, torch.func per member
    count, and the ratios."""
    flops = forward_flops(name, network, data.x_train.shape[1:], data.num_outputs)
    print(f"{name}: {network}; {flops / 1e6:.2f} MFLOP forward per image", flush=True)
    impls = args.impls.split(",") if name == "cnn2d" else ["auto"]
    dataset = {"name": args.dataset, "data_dir": args.data_dir}
    dataset["train_per_class"] = args.train_per_class
    rows, ratios = [], []
    for members in args.member_counts:
        timed = {}
        for impl in impls:
            config = make_config(name, network, impl=impl, members=members, steps=args.steps,
                                 batch=args.batch, dataset=dataset)  # fmt: skip
            row = {"model": name, "method": f"jaxnn ({impl})", "impl": impl}
            timed[impl] = with_rate({**row, **time_fit_ensemble(config, data, args.steps)},
                                    flops, args.batch, matmul)  # fmt: skip
            rows.append(timed[impl])
            print_row(rows[-1])
        ratio = {"model": name, "members": members}
        if {"im2col", "lax"} <= set(timed):
            ratio["lax_over_im2col"] = timed["lax"]["train_s"] / timed["im2col"]["train_s"]
        if with_torch:
            peer = time_torch(name, network, data, members=members, steps=args.steps,
                              batch=args.batch)  # fmt: skip
            rows.append(with_rate(peer, flops, args.batch, matmul))
            print_row(rows[-1])
            ours = timed["im2col" if "im2col" in timed else impls[0]]
            ratio["jaxnn_speedup_over_torch_func"] = peer["s_per_member"] / ours["s_per_member"]
        ratios.append(ratio)
    return {"forward_flops_per_example": flops, "rows": rows, "ratios": ratios}


def print_row(row: dict) -> None:
    print(f"  {row['method']:<18} {row['members']:>3} members  "
          f"{row['s_per_step'] * 1e3:8.1f} ms/step  {row['s_per_member'] * 1e3:8.1f} "
          f"ms/member  {row['gflops']:6.1f} GFLOP/s  "
          f"{row['fraction_of_matmul']:6.1%} of matmul", flush=True)  # fmt: skip


def print_ratios(ratios: list[dict]) -> None:
    for ratio in ratios:
        if "lax_over_im2col" in ratio:
            print(f"  lax.conv / im2col, {ratio['members']} members: "
                  f"{ratio['lax_over_im2col']:.2f}x")  # fmt: skip
        if "jaxnn_speedup_over_torch_func" in ratio:
            print(f"  torch.func / jaxnn per model, {ratio['members']} members: "
                  f"{ratio['jaxnn_speedup_over_torch_func']:.2f}x")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
    parser.add_argument("--members", default="8,32")
    parser.add_argument("--models", default="cnn2d,resnet")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--impls", default="im2col,lax", help="cnn2d's convolutions to time")
    parser.add_argument("--smoke", action="store_true",
                        help="narrow networks on 8x8 digits, 2 members, 2 steps")  # fmt: skip
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--dataset", default="mnist_subset")
    parser.add_argument("--data-dir", default=str(Path(".data") / "tfds"))
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--out", default="runs/bench/conv2d.json")
    args = parser.parse_args(argv)
    args.member_counts = [int(m) for m in args.members.split(",")]
    if args.smoke:
        args.steps, args.member_counts, args.batch = 2, [2], 8
        args.dataset, args.train_per_class = "digits_images", 5
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with_torch = not args.skip_torch and torch_available()
    data = data_lib.load(
        ml_collections.ConfigDict(
            {**default_config().dataset.to_dict(), "name": args.dataset,
             "data_dir": args.data_dir, "train_per_class": args.train_per_class}
        )
    )  # fmt: skip
    rates = matmul_gflops(5, with_torch=with_torch)
    matmul = max(rates.values())
    print(f"{args.dataset}: {data.num_train} training images {data.x_train.shape[1:]}, batch "
          f"{args.batch}, chunks of {args.steps} steps; {jax.device_count()} "
          f"{jax.default_backend()} device(s); matmul {matmul:.1f} GFLOP/s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in rates.items())})")  # fmt: skip
    report: dict = {"machine": machine_info(with_torch), "matmul_gflops": rates, "models": {}}
    report["settings"] = {k: v for k, v in vars(args).items() if k != "smoke"}
    for name in args.models.split(","):
        network = {**NETWORKS[name], **(SMOKE_WIDTHS[name] if args.smoke else {})}
        timed = time_model(name, network, data, args, matmul, with_torch)
        report["models"][name] = {"network": network, **timed}
        print_ratios(timed["ratios"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=list) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
