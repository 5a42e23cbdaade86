"""What a study reads from a trainer's evaluation history: metric curves, first hits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def history_array(
    history: Sequence[Mapping[str, np.ndarray]], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Steps [E] and metric `name` [E, num_members] from an evaluation history."""
    steps = np.array([float(h["step"][0]) for h in history])
    return steps, np.stack([h[name] for h in history])


def first_step_reaching(steps: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """The first evaluated step at which `values` <= target (None if never)."""
    hits = np.flatnonzero(np.asarray(values) <= target)
    return float(steps[hits[0]]) if hits.size else None
