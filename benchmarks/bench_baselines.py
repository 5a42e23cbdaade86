"""The baselines jaxnn's ensemble is timed against: scikit-learn and PyTorch restarts.

Each trains the benchmark recipe (`bench_records.Recipe`) for `Settings.steps` steps per member
and returns a `bench_records.Timing`; torch and sklearn are imported only when a baseline runs.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings

import numpy as np
from bench_records import Recipe, Settings, Timing

from jaxnn import data as data_lib

TORCH_WARMUP_STEPS = 20


def sklearn_restarts(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(b) scikit-learn MLPClassifier restarts: whole epochs, time rescaled to the steps."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    steps_per_epoch = math.ceil(data.num_train / recipe.batch_size)
    epochs = max(1, round(settings.steps / steps_per_epoch))
    member_s, accuracies = [], []
    for index in range(settings.baseline_members):
        classifier = MLPClassifier(
            hidden_layer_sizes=recipe.layer_sizes[1:-1],
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=recipe.batch_size,
            learning_rate="constant",
            learning_rate_init=recipe.learning_rate,
            momentum=recipe.momentum,
            nesterovs_momentum=False,
            max_iter=epochs,
            shuffle=True,
            tol=0.0,
            n_iter_no_change=epochs + 1,  # never stops early
            random_state=index,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, as intended
            started = time.perf_counter()
            classifier.fit(data.x_train, data.y_train)
            member_s.append(time.perf_counter() - started)
        accuracies.append(classifier.score(data.x_test, data.y_test))
    return Timing.one_after_another(
        key="sklearn_mlp",
        method="scikit-learn MLPClassifier",
        steps=epochs * steps_per_epoch,
        target_steps=settings.steps,
        member_s=member_s,
        accuracies=accuracies,
        note=f"{epochs} epochs x {steps_per_epoch} steps, time rescaled to {settings.steps} steps; "
        "sklearn's own (Glorot) init",
    )


def torch_mlp(layer_sizes: tuple[int, ...]):
    """An nn.Sequential MLP with ReLU, He-normal kernels and zero biases."""
    from torch import nn

    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(layer_sizes):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def torch_arrays(data: data_lib.Dataset):
    """(x_train, y_train, x_test, y_test) as torch tensors (labels int64)."""
    import torch

    arrays = (data.x_train, data.y_train.astype(np.int64), data.x_test, data.y_test)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def torch_eager(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(c) PyTorch eager: one nn.Sequential and torch.optim.SGD per member, trained in turn."""
    import torch
    import torch.nn.functional as F

    x, y, x_test, y_test = torch_arrays(data)
    num_train, batch_size = len(x), recipe.batch_size
    steps_per_epoch = math.ceil(num_train / batch_size)

    def train_member(seed: int, steps: int):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = torch_mlp(recipe.layer_sizes)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum
        )
        for step in range(steps):
            within = step % steps_per_epoch
            if within == 0:  # a fresh order every epoch
                order = torch.randperm(num_train, generator=generator)
            idx = order[within * batch_size : (within + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return model

    train_member(10_000, TORCH_WARMUP_STEPS)  # warm-up: allocator, kernels, thread pool
    member_s, accuracies = [], []
    for index in range(settings.baseline_members):
        started = time.perf_counter()
        model = train_member(index, settings.steps)
        member_s.append(time.perf_counter() - started)
        with torch.no_grad():
            accuracies.append(float((model(x_test).argmax(-1) == y_test).float().mean()))
    return Timing.one_after_another(
        key="torch_eager",
        method="PyTorch eager, one after another",
        steps=settings.steps,
        target_steps=settings.steps,
        member_s=member_s,
        accuracies=accuracies,
        note=f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    )


def torch_vmap(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(c) torch.func: K stacked members, vmap(grad(functional_call)), momentum SGD by hand."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    x, y, x_test, y_test = torch_arrays(data)
    num_train, num_members, batch_size = len(x), settings.members, recipe.batch_size
    steps_per_epoch = math.ceil(num_train / batch_size)
    template = copy.deepcopy(torch_mlp(recipe.layer_sizes)).to("meta")

    def loss_fn(params, buffers, xb, yb):
        return F.cross_entropy(functional_call(template, (params, buffers), (xb,)), yb)

    grad_fn = vmap(grad(loss_fn))

    def train_all(seed: int, steps: int):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        params, buffers = stack_module_state(
            [torch_mlp(recipe.layer_sizes) for _ in range(num_members)]
        )
        params = {name: value.detach() for name, value in params.items()}
        velocity = {name: torch.zeros_like(value) for name, value in params.items()}
        for step in range(steps):
            within = step % steps_per_epoch
            if within == 0:  # a fresh order per member every epoch
                order = torch.argsort(torch.rand(num_members, num_train, generator=generator), 1)
            idx = order[:, within * batch_size : (within + 1) * batch_size]  # [K, B]
            grads = grad_fn(params, buffers, x[idx], y[idx])
            with torch.no_grad():
                for name, value in params.items():
                    velocity[name].mul_(recipe.momentum).add_(grads[name])
                    value.add_(velocity[name], alpha=-recipe.learning_rate)
        return params, buffers

    train_all(10_000, TORCH_WARMUP_STEPS)  # warm-up
    started = time.perf_counter()
    params, buffers = train_all(0, settings.steps)
    train_s = time.perf_counter() - started
    with torch.no_grad():
        outputs = vmap(lambda p, b: functional_call(template, (p, b), (x_test,)))(params, buffers)
        accuracy = float((outputs.argmax(-1) == y_test).float().mean())
    return Timing(
        key="torch_vmap",
        method="PyTorch torch.func vmap",
        members=num_members,
        steps=settings.steps,
        target_steps=settings.steps,
        train_s=train_s,
        test_accuracy=accuracy,
        note=f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    )
