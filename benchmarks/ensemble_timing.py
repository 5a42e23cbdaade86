"""Timing an ensemble's training: jaxnn's `fit_ensemble` and a torch.func ensemble of the same
network, batches and optimiser (SGD with momentum). Shared by the convolution benchmarks.

Imported after `jaxnn.parallel.cpu_devices.split_host_into_devices` (it imports JAX).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn.core import ensemble

TORCH_WARMUP_STEPS = 5


def time_fit_ensemble(
    config: ml_collections.ConfigDict, data: data_lib.Dataset, steps: int
) -> dict[str, Any]:
    """Seconds per training step of jaxnn's ensemble for a config of 3 * `steps` steps with
    eval_every = `steps`: one program of three chunks, timed between the evaluations that end
    chunks 1, 2 and 3 (the first chunk, which pays one-time costs, is left out, as torch's
    warm-up steps are). Each timed chunk includes one evaluation of every member on the
    training and validation splits, which the torch loop does not do: it counts against jaxnn."""
    assert config.training.steps == 3 * steps and config.training.eval_every == steps
    stamps: list[float] = []
    result = ensemble.fit_ensemble(
        config, data, jax.random.PRNGKey(0), on_eval=lambda _: stamps.append(time.perf_counter())
    )
    train_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # one chunk of `steps` steps
    members = config.restarts.num
    return {
        "members": members,
        "steps": steps,
        "train_s": train_s,
        "compile_s": result.compile_s,
        "s_per_step": train_s / steps,
        "s_per_member": train_s / members,
        "val_accuracy": float(np.mean(result.history[-1]["val_accuracy"])),
    }


def time_torch_func(
    build: Callable[[], Any],
    x: Any,
    y: Any,
    *,
    members: int,
    steps: int,
    batch: int,
    learning_rate: float,
    momentum: float,
) -> dict[str, Any]:
    """Seconds of `steps` steps of a torch.func ensemble of `members` networks from `build()`:
    parameters stacked with `stack_module_state`, `vmap(grad(functional_call))` over members
    (each its own shuffled batches of `batch` examples of x, y), momentum SGD by hand; after
    `TORCH_WARMUP_STEPS` untimed steps."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    num_train = x.shape[0]
    steps_per_epoch = math.ceil(num_train / batch)
    template = copy.deepcopy(build()).to("meta")

    def loss_fn(params, buffers, xb, yb):
        return F.cross_entropy(functional_call(template, (params, buffers), (xb,)), yb)

    grad_fn = vmap(grad(loss_fn))

    def train_all(seed: int, count: int) -> None:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        params, buffers = stack_module_state([build() for _ in range(members)])
        params = {name: value.detach() for name, value in params.items()}
        velocity = {name: torch.zeros_like(value) for name, value in params.items()}
        for step in range(count):
            within = step % steps_per_epoch
            if within == 0:
                order = torch.argsort(torch.rand(members, num_train, generator=generator), 1)
            idx = order[:, within * batch : (within + 1) * batch]
            grads = grad_fn(params, buffers, x[idx], y[idx])
            with torch.no_grad():
                for name, value in params.items():
                    velocity[name].mul_(momentum).add_(grads[name])
                    value.add_(velocity[name], alpha=-learning_rate)

    train_all(1, TORCH_WARMUP_STEPS)
    started = time.perf_counter()
    train_all(0, steps)
    train_s = time.perf_counter() - started
    return {
        "members": members,
        "steps": steps,
        "train_s": train_s,
        "s_per_step": train_s / steps,
        "s_per_member": train_s / members,
        "note": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
