"""metrics.jsonl: one row per member, split and evaluation, written as a run goes (with its
progress bar)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from jaxnn.core import ensemble, loop
from jaxnn.core.program import Program
from jaxnn.io import atomic
from jaxnn.io.workdir import RunPaths


def metrics_records(
    step: int, metrics: Mapping[str, np.ndarray], member_indices: Sequence[int]
) -> list[dict[str, Any]]:
    """metrics.jsonl rows of one evaluation at global `step`, one per member and split, from
    `train_*`, `val_*`, `batch_loss` -> float [num_members] (rows of `member_indices`)."""
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


# The bar on a terminal: member-steps done and to do, elapsed < ETA, then the figures of
# `Progress.figures` (the rate among them: the one summary.json's timing gives).
BAR_FORMAT = (
    "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} member-steps [{elapsed}<{remaining}{postfix}]"
)
PLAIN_LINES = 10  # where the output is not a terminal: a plain line every tenth of the run


class Progress:
    """Writes metrics.jsonl and reports progress after every evaluation: on a terminal, a bar of
    member-steps (steps times members); elsewhere (a log file, a pipe) plain lines, without
    terminal control characters."""

    def __init__(
        self,
        paths: RunPaths,
        program: Program,
        members: list[ensemble.Member],
        *,
        show: bool,
        start_step: int = 0,
        stream: TextIO | None = None,
    ):
        self._paths = paths
        self._indices = [m.index for m in members]
        self._metric = program.metric
        self._stream = sys.stderr if stream is None else stream
        self._total_steps = program.total_steps
        self._start_step = self._done = start_step
        isatty = getattr(self._stream, "isatty", None)  # not every stream has one
        self._plain = show and not (isatty and isatty())
        self._next_line = start_step
        num = len(members)
        self._bar = tqdm(
            total=program.total_steps * num,
            initial=start_step * num,
            unit="member-step",
            unit_scale=True,
            bar_format=BAR_FORMAT,
            file=self._stream,
            disable=not show or self._plain,
            dynamic_ncols=True,
        )

    def __call__(self, evaluation: loop.Evaluation) -> None:
        atomic.append_jsonl(
            self._paths.metrics,
            metrics_records(evaluation.step, evaluation.metrics, self._indices),
        )
        figures = self.figures(evaluation)
        self._bar.update((evaluation.step - self._done) * len(self._indices))
        self._done = evaluation.step
        self._bar.set_postfix(figures)
        if self._plain and (evaluation.step >= self._next_line or self._done >= self._total_steps):
            print(self._plain_line(figures, evaluation.elapsed_s), file=self._stream, flush=True)
            self._next_line = evaluation.step + max(1, self._total_steps // PLAIN_LINES)

    def figures(self, evaluation: loop.Evaluation) -> dict[str, str]:
        """What the progress shows after an evaluation: the median member's mean batch loss over
        the chunk, the validation loss and metric of the member with the lowest validation loss,
        and summary.json's `member_steps_per_s` (wall time since training started)."""
        metrics = evaluation.metrics
        val_loss = np.where(np.isfinite(metrics["val_loss"]), metrics["val_loss"], np.nan)
        best = int(np.nanargmin(val_loss)) if np.isfinite(val_loss).any() else 0
        batch_losses = metrics["batch_loss"][np.isfinite(metrics["batch_loss"])]
        median = f"{np.median(batch_losses):.4f}" if batch_losses.size else "-"
        member_steps = evaluation.member_steps
        if member_steps is None:
            member_steps = (evaluation.step - self._start_step) * len(self._indices)
        rate = member_steps / evaluation.elapsed_s if evaluation.elapsed_s > 0 else 0.0
        return {
            "step": f"{evaluation.step}/{self._total_steps}",
            "member-steps/s": tqdm.format_sizeof(rate),
            "median batch_loss": median,
            f"best val_loss (member {self._indices[best]})": f"{metrics['val_loss'][best]:.4f}",
            f"its val_{self._metric}": f"{metrics[f'val_{self._metric}'][best]:.4f}",
        }

    def _plain_line(self, figures: Mapping[str, str], elapsed_s: float) -> str:
        """`jaxnn: step 200/400 (50%), ETA 0:00:12, member-steps/s 1.2k, median batch_loss ...`."""
        done = self._done - self._start_step
        per_step = elapsed_s / done if done > 0 else 0.0
        remaining = (self._total_steps - self._done) * per_step
        eta = tqdm.format_interval(remaining) if per_step > 0 else "?"
        others = ", ".join(f"{k} {v}" for k, v in figures.items() if k != "step")
        return (
            f"jaxnn: step {figures['step']} ({100 * self._done // max(1, self._total_steps)}%), "
            f"ETA {eta}, {others}"
        )

    def close(self) -> None:
        self._bar.close()
