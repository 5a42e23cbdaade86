"""A run's results as pandas DataFrames, for a researcher's own analysis (pandas is optional:
`pip install jaxnn[pandas]`). Each takes a workdir (its summary.json and metrics.jsonl), a run's
summary (what `jaxnn.run` returns), or what `fit_ensemble` / `fit_variants` return.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn.core import ensemble, variants
from jaxnn.errors import JaxnnError
from jaxnn.io import atomic, run_files
from jaxnn.io import workdir as workdir_lib
from jaxnn.reporting import summary as summary_lib


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise JaxnnError(
            "DataFrames need pandas, which is not installed: pip install 'jaxnn[pandas]'"
        ) from error
    return pandas


def _summary_of(source: Any) -> Mapping[str, Any]:
    """The summary of a workdir, a summary, an EnsembleResult or VariantRuns."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser() / run_files.SUMMARY
        if not path.is_file():
            raise JaxnnError(f"{path.parent} holds no finished run ({path.name} is missing)")
        return json.loads(path.read_text())
    if isinstance(source, Mapping):
        return source
    if isinstance(source, ensemble.EnsembleResult):
        return summary_lib.summarize(source, source.config, source.data)[0]
    if isinstance(source, variants.VariantRuns):
        first = source[0].result
        config = getattr(source, "config", first.config)
        return summary_lib.summarize_runs(source, config, first.data)[0]
    raise TypeError(
        "expected a workdir, a summary, or what fit_ensemble / fit_variants return, got "
        f"{type(source).__name__}"
    )


def members_frame(source: Any) -> Any:
    """One row per member: index, seed, variant fields, the swept values (one column per field),
    diverged, steps, train/val/test loss and metrics, and `selected` (the selected member).
    JaxnnError without pandas, or for a workdir that holds no finished run."""
    pandas = _pandas()
    summary = _summary_of(source)
    rows = []
    for member in summary["members"]:
        row = {"index": member["index"], "seed": member["seed"]}
        row |= {f"variant.{k}": v for k, v in member.get("variant", {}).items()}
        row |= dict(member.get("hparams", {}))
        row |= {k: v for k, v in member.items() if k not in ("index", "seed", "variant", "hparams")}
        row["selected"] = member["index"] == summary.get("best_member")
        rows.append(row)
    return pandas.DataFrame(rows).set_index("index")


def history_frame(source: Any) -> Any:
    """One row per (step, member) evaluation, from metrics.jsonl or a result's history:
    batch_loss, train_loss, val_loss, train_/val_ metrics. JaxnnError without pandas, or for a
    workdir that holds no metrics.jsonl."""
    pandas = _pandas()
    if isinstance(source, str | Path):
        rows = _rows_of_metrics(Path(source).expanduser() / run_files.METRICS)
    elif isinstance(source, Mapping) and hasattr(source, "workdir"):
        rows = _rows_of_metrics(Path(source.workdir) / run_files.METRICS)
    elif isinstance(source, ensemble.EnsembleResult):
        rows = _rows_of_history(source.history, [m.index for m in source.members])
    elif isinstance(source, variants.VariantRuns):
        rows = []
        for run in source:
            rows += _rows_of_history(run.result.history, run.global_indices)
    else:
        raise TypeError(
            "expected a workdir, what jaxnn.run returns, or what fit_ensemble / fit_variants "
            f"return, got {type(source).__name__}"
        )
    frame = pandas.DataFrame(rows)
    return frame.sort_values(["step", "member"], kind="stable").reset_index(drop=True)


def _rows_of_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise JaxnnError(f"{path.parent} holds no {path.name}: no evaluation was logged there")
    members = sorted({row["member"] for row in atomic.read_jsonl(path)})
    return _rows_of_history(workdir_lib.history_from_metrics(path, members), members)


def _rows_of_history(
    history: Sequence[Mapping[str, np.ndarray]], members: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for entry in history:
        step = int(np.asarray(entry["step"]).reshape(-1)[0])
        for position, member in enumerate(members):
            row = {
                name: float(np.asarray(v)[position]) for name, v in entry.items() if name != "step"
            }
            rows.append({"step": step, "member": int(member), **row})
    return rows
