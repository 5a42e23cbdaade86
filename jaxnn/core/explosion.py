"""Exploded members: a finite training loss that grew far beyond where the member started.

A learning rate too large can blow a loss up from 2.3 to a finite 10^4: not diverged, yet
misleading to rank, average or plot. A member is *exploded* when its training loss at its last
weights exceeds `restarts.explode_factor` (0: off) times that at its initial weights, and is
then left out like a diverged one (`jaxnn.reporting.summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxnn.core import ensemble, train
from jaxnn.core.program import Program
from jaxnn.data import Dataset


def start_losses(
    trainer: ensemble.Trainer,
    dataset: Dataset,
    key: Any,
    pretrained: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """float64 [num_members]: each member's training-split loss at its initial weights, made
    again from the member keys (so a resumed run gets the values of the run that started it)."""
    initial = ensemble.init_members(trainer, key, pretrained)
    metrics, _ = ensemble.evaluate_members(
        initial, trainer.program, dataset.x_train, dataset.y_train, group_size=trainer.group_size
    )
    return metrics["loss"]


def last_losses(
    state: train.TrainState, program: Program, dataset: Dataset, *, group_size: int = 0
) -> np.ndarray:
    """float64 [num_members]: each member's training-split loss at its last weights."""
    last = state.replace(best_params=state.params, best_model_state=state.model_state)
    metrics, _ = ensemble.evaluate_members(
        last, program, dataset.x_train, dataset.y_train, group_size=group_size
    )
    return metrics["loss"]


def exploded(start: np.ndarray, last: np.ndarray, factor: float) -> np.ndarray:
    """bool [num_members]: a finite last loss above `factor` times the start (factor 0: none)."""
    if factor <= 0:
        return np.zeros(np.shape(last), bool)
    return np.isfinite(last) & (last > factor * np.asarray(start))
