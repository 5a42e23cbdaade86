"""metrics.jsonl: one row per member, split and evaluation, written as a run goes (with its
progress bar)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxnn.core import ensemble, train
from jaxnn.core.program import Program
from jaxnn.io import atomic
from jaxnn.io.workdir import RunPaths


def metrics_records(
    step: int, metrics: Mapping[str, np.ndarray], member_indices: Sequence[int]
) -> list[dict[str, Any]]:
    """metrics.jsonl rows of one evaluation: one per member and split.

    Args:
      step: the global step of the evaluation.
      metrics: `train_*`, `val_*`, `batch_loss` -> float [num_members].
      member_indices: the member index of each row of the arrays.
    """
    records = []
    for row, member in enumerate(member_indices):
        for split in ("train", "val"):
            record: dict[str, Any] = {"step": int(step), "member": int(member), "split": split}
            for key, values in metrics.items():
                if key.startswith(f"{split}_"):
                    record[key.removeprefix(f"{split}_")] = float(values[row])
            if split == "train":
                record["batch_loss"] = float(metrics["batch_loss"][row])
            records.append(record)
    return records


class Progress:
    """Writes metrics.jsonl and drives the progress bar after every evaluation."""

    def __init__(
        self,
        paths: RunPaths,
        program: Program,
        members: list[ensemble.Member],
        *,
        show: bool,
        start_step: int = 0,
    ):
        self._paths = paths
        self._indices = [m.index for m in members]
        self._metric = program.metric
        self._bar = tqdm(
            total=program.total_steps,
            initial=start_step,
            unit="step",
            disable=not show,
            dynamic_ncols=True,
        )
        self._done = start_step

    def __call__(self, evaluation: train.Evaluation) -> None:
        atomic.append_jsonl(
            self._paths.metrics,
            metrics_records(evaluation.step, evaluation.metrics, self._indices),
        )
        val_loss = evaluation.metrics["val_loss"]
        best = (
            int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan)))
            if np.isfinite(val_loss).any()
            else 0
        )
        self._bar.update(evaluation.step - self._done)
        self._done = evaluation.step
        self._bar.set_postfix(
            loss=f"{np.nanmean(evaluation.metrics['batch_loss']):.4f}",
            val_loss=f"{val_loss[best]:.4f}",
            **{f"val_{self._metric}": f"{evaluation.metrics[f'val_{self._metric}'][best]:.4f}"},
        )

    def close(self) -> None:
        self._bar.close()
