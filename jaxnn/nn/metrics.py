"""Evaluation metrics: the built-in ones of each task and the registry users add to."""

from __future__ import annotations


def metric_for_task(task: str) -> str:
    """The headline metric of a task: accuracy for classification, R2 for regression."""
    return "accuracy" if task == "classification" else "r2"
