"""The same search trial by trial: Optuna's successive-halving pruner over a PyTorch MLP.

The comparison of issue 26: the search `search.py` runs in one jaxnn program (successive
halving, eta=3), here as Optuna users run it. Optuna draws the points with its scrambled
Halton sampler (`QMCSampler`) over the same ranges; each trial trains the same MLP in PyTorch
eager (40-100-100-10, ReLU, He-normal kernels, zero biases, dropout after each hidden layer,
SGD with momentum 0.9 and decoupled weight decay as jaxnn's `momentum` applies it, a cosine
schedule to 0 over the maximum budget, batch 100), reports its validation loss every
`eval_every` steps and is stopped by `SuccessiveHalvingPruner(min_resource=first_rung,
reduction_factor=3)`. A trial's value is its best validation loss; its test accuracy is that
of its best-validation weights (as jaxnn selects). After every trial the study's best trial
(by value) gives the accuracy the search has reached: the figure is the wall time until it
first reaches the test accuracy jaxnn's halving run selected.

torch (pinned in the `bench` extra) and optuna are imported here only.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np

from jaxnn import data as data_lib


def _model(width: tuple[int, ...], dropout: float):
    from torch import nn

    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(width[:-1]):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(), nn.Dropout(dropout)]
    head = nn.Linear(width[-2], width[-1])
    nn.init.kaiming_normal_(head.weight, nonlinearity="relu")
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)


def _tensors(data: data_lib.Dataset) -> dict[str, Any]:
    import torch

    return {
        name: torch.from_numpy(np.ascontiguousarray(array))
        for name, array in (
            ("x_train", data.x_train),
            ("y_train", data.y_train.astype(np.int64)),
            ("x_val", data.x_val),
            ("y_val", data.y_val.astype(np.int64)),
            ("x_test", data.x_test),
            ("y_test", data.y_test.astype(np.int64)),
        )
    }


def _objective(tensors: dict[str, Any], size: Any, width: tuple[int, ...]):
    import optuna
    import torch
    import torch.nn.functional as F

    num_train = len(tensors["x_train"])
    batch = 100
    per_epoch = math.ceil(num_train / batch)

    def accuracy(model, x, y) -> float:
        return float((model(x).argmax(-1) == y).float().mean())

    def objective(trial: optuna.Trial) -> float:
        rate = trial.suggest_float("learning_rate", 1e-3, 0.5, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        torch.manual_seed(trial.number)
        generator = torch.Generator().manual_seed(trial.number)
        model = _model(width, dropout)
        optimizer = torch.optim.SGD(model.parameters(), lr=rate, momentum=0.9)
        best_loss = math.inf
        for step in range(size.steps):
            within = step % per_epoch
            if within == 0:
                order = torch.randperm(num_train, generator=generator)
            idx = order[within * batch : (within + 1) * batch]
            current = rate * 0.5 * (1 + math.cos(math.pi * step / size.steps))
            for group in optimizer.param_groups:
                group["lr"] = current
            model.train()
            loss = F.cross_entropy(model(tensors["x_train"][idx]), tensors["y_train"][idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # decoupled: p -= lr * (momentum + decay * p), as optax's
                for parameter in model.parameters():
                    parameter.mul_(1 - current * decay)
            optimizer.step()
            if (step + 1) % size.eval_every:
                continue
            model.eval()
            with torch.no_grad():
                val_loss = float(F.cross_entropy(model(tensors["x_val"]), tensors["y_val"]))
            if not math.isfinite(val_loss):
                raise optuna.TrialPruned()
            if val_loss < best_loss:  # the test accuracy of the best-validation weights
                best_loss = val_loss
                with torch.no_grad():
                    test = accuracy(model, tensors["x_test"], tensors["y_test"])
                trial.set_user_attr("test_accuracy", test)
            trial.report(val_loss, step + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best_loss

    return objective


def run(data: data_lib.Dataset, size: Any, target_accuracy: float) -> dict[str, Any]:
    """The Optuna study of `size.members` trials; the wall time to reach `target_accuracy`.

    Returns:
      trials, steps trained, wall time of the whole study, the best trial's test accuracy,
      and `seconds_to_target` (None when the study never reached it).
    """
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    width = (int(np.prod(data.x_train.shape[1:])), 100, 100, int(data.y_train.max()) + 1)
    tensors = _tensors(data)
    sampler = optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=0)
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=size.first_rung, reduction_factor=3
    )
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    objective = _objective(tensors, size, width)
    reached: list[tuple[float, float]] = []
    started = time.perf_counter()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        del trial
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            best = study.best_trial.user_attrs.get("test_accuracy", 0.0)
            reached.append((time.perf_counter() - started, best))

    study.optimize(objective, n_trials=size.members, callbacks=[after_trial])
    wall = time.perf_counter() - started
    steps = sum(max(t.intermediate_values, default=0) for t in study.trials)
    first = next((s for s, acc in reached if acc >= target_accuracy), None)
    return {
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "torch_threads": torch.get_num_threads(),
        "trials": len(study.trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "member_steps": int(steps),
        "wall_s": wall,
        "test_accuracy": reached[-1][1] if reached else None,
        "target_accuracy": target_accuracy,
        "seconds_to_target": first,
    }
