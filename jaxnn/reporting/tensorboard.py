"""DIR/tensorboard, written without TensorFlow (docs/tensorboard.md): `main/` or `variant_<v>/`
at every evaluation, `summary/` and `hparams/member_0007/` at the end. No background thread: a
disk that refuses a write fails the evaluation that wrote, as one `WorkdirError`. A variant's
log, when it opens, keeps its events up to its checkpoint's step (as metrics.jsonl is cut back)
in one new event file and removes the end's runs: after a resume no (tag, step) is written twice.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np
from google.protobuf.message import DecodeError
from tensorboardX import summary as tbx_summary
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import masked_crc32c

from jaxnn import run_spec
from jaxnn.core import ensemble
from jaxnn.core.loop import Evaluation
from jaxnn.core.program import Program
from jaxnn.io import workdir
from jaxnn.nn import optimizers

SUMMARY_RUN = "summary"
HPARAMS_RUN = "hparams"
EVENTS_MARK = "tfevents"  # TensorBoard reads the files whose names hold it
_FILE_VERSION = "brain.Event:2"
_PARTIAL = ".events.partial"  # an event file being rewritten (no EVENTS_MARK: not read)


def member_tag(name: str, index: int) -> str:
    """The tag of one member's series: `val_loss/member_0007`."""
    return f"{name}/member_{index:04d}"


def member_session(index: int) -> str:
    """The HParams session (run directory under `hparams/`) of one member."""
    return f"member_{index:04d}"


class EventLog:
    """Writes one variant's TensorBoard run after every evaluation (process 0 only), cut back
    to `start_step` (the variant's checkpoint) when it opens."""

    def __init__(
        self,
        directory: Path,
        spec: run_spec.RunSpec,
        program: Program,
        members: list[ensemble.Member],
        *,
        start_step: int = 0,
    ):
        self._directory = Path(directory)
        self._indices = [m.index for m in members]
        aggregated = ("val_loss", f"val_{program.metric}")
        self._greater = {name: program.greater_is_better(name) for name in aggregated}
        self._base_rates = None
        self._pbt = spec.config.restarts.schedule == "pbt"
        if program.user_optimizer is None:  # a user's optimiser keeps its rate to itself
            self._base_rates = np.array(
                [m.hparams(spec)["learning_rate"] for m in members], np.float32
            )
            # The schedule counts optimiser updates: one per accumulate_steps batches.
            self._accumulate = program.accumulate_steps
            self._unit = optimizers.unit_schedule(
                program.optimizer_config, program.total_steps // self._accumulate
            )
        names = ["batch_loss"] + (["learning_rate"] if self._base_rates is not None else [])
        names += [
            f"{split}_{n}" for split in ("train", "val") for n in ("loss", *program.metric_names)
        ]
        with self._writing():
            self._file = _reopen(self._directory, start_step, _layout(names, aggregated))

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return workdir.writing("TensorBoard events in", self._directory)

    def __call__(self, evaluation: Evaluation) -> None:
        values = []
        # Members outside a schedule's batch (jaxnn.core.schedules) have no values to show.
        trained = evaluation.trained
        indices = [i for j, i in enumerate(self._indices) if trained is None or trained[j]]
        for name, per_member in evaluation.metrics.items():
            if name.startswith(("train_", "val_")) or name == "batch_loss":
                shown = per_member if trained is None else per_member[trained]
                values += _member_values(name, indices, shown)
        if self._base_rates is not None:
            # the rate of the evaluation's last step (optax counts steps from 0)
            unit = np.float32(self._unit(max(evaluation.step // self._accumulate - 1, 0)))
            base = self._base_rates
            if self._pbt:  # PBT (jaxnn.core.schedules) changes members' rates: the state's
                base = np.asarray(jax.device_get(evaluation.state.hparams["learning_rate"]))
            rates = base.astype(np.float32) * unit
            # a loss-driven schedule (reduce_on_plateau) keeps each member's factor in its state
            scale = optimizers.loss_scale(evaluation.state.opt_state)
            if scale is not None:
                rates = rates * np.asarray(jax.device_get(scale), np.float32)
            values += _member_values("learning_rate", self._indices, rates)
        diverged = np.asarray(jax.device_get(evaluation.state.diverged), bool)
        for name, greater in self._greater.items():
            kept = evaluation.metrics[name][~diverged]
            kept = kept[np.isfinite(kept)]
            if kept.size:
                best = kept.max() if greater else kept.min()
                values += [_scalar(f"{name}/best", best), _scalar(f"{name}/mean", kept.mean())]
        values.append(_scalar("members/diverged", diverged.sum()))
        with self._writing():
            _write(self._file, [Event(step=evaluation.step, summary=Summary(value=values))])

    def close(self) -> None:
        with contextlib.suppress(OSError):  # every event was flushed when it was written
            self._file.close()


def write_results(directory: Path, summary: Mapping[str, Any]) -> None:
    """The end's runs from summary.json: `summary/` (the selected member's and the ensemble's
    test metrics) and one HParams session per member under `hparams/`, replacing old ones.

    Raises:
      WorkdirError: the directory cannot be written.
    """
    directory = Path(directory)
    step = int(summary.get("steps", 0))
    with workdir.writing("TensorBoard events in", directory):
        _remove_results(directory)
        values = [_scalar(f"{k}/selected", v) for k, v in summary["best"].items()]
        values += [_scalar(f"{k}/ensemble", v) for k, v in summary["ensemble"].items()]
        if summary["best_member"] is not None:
            values.append(_scalar("selection/member", summary["best_member"]))
        _write_run(directory / SUMMARY_RUN, [Event(step=step, summary=Summary(value=values))])
        for member in summary["members"]:
            hparams = {"seed": member["seed"], **member.get("variant", {}), **member["hparams"]}
            hparams = {name: _hparam_value(value) for name, value in hparams.items()}
            final = {
                f"final/{k}": v
                for k, v in member.items()
                if k.startswith(("train_", "val_", "test_"))
            }
            final["final/diverged"] = float(member["diverged"])
            final["final/exploded"] = float(member.get("exploded", False))
            # tensorboardX's experiment summary is left out: TensorBoard then builds the
            # experiment from every session's values, each hparam with its whole domain.
            _, start, end = tbx_summary.hparams(hparams, final)
            metrics = Summary(value=[_scalar(k, v) for k, v in final.items()])
            _write_run(
                directory / HPARAMS_RUN / member_session(member["index"]),
                [Event(summary=start), Event(step=step, summary=metrics), Event(summary=end)],
            )


def _records(path: Path) -> Iterator[tuple[Event, bytes]]:
    """The events of one event file with their records as written, up to a torn or unreadable
    record (a write cut short)."""
    data = Path(path).read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        length, header_crc = struct.unpack("<QI", data[offset : offset + 12])
        end = offset + 12 + length + 4
        if header_crc != masked_crc32c(data[offset : offset + 8]) or end > len(data):
            return
        try:
            event = Event.FromString(data[offset + 12 : end - 4])
        except DecodeError:
            return
        yield event, data[offset:end]
        offset = end


def _reopen(run: Path, start_step: int, layout: Summary) -> BinaryIO:
    """The run's one event file, open for appending: the layout, then its evaluations up to
    `start_step` (each once, whichever old files held it, copied as written), nothing after."""
    run.mkdir(parents=True, exist_ok=True)
    _remove_results(run.parent)
    old = sorted(run.glob(f"*{EVENTS_MARK}*"))
    kept: dict[int, bytes] = {}
    for path in old:
        for event, record in _records(path):
            # An evaluation is one event at its step (>= 1); the layout is at step 0.
            if event.HasField("summary") and 0 < event.step <= start_step:
                kept.setdefault(event.step, record)
    name = _event_file_name()
    partial = run / _PARTIAL
    handle = open(partial, "wb")  # noqa: SIM115 (the log appends to it until it closes)
    try:
        _write(handle, [Event(file_version=_FILE_VERSION), Event(summary=layout)])
        handle.write(b"".join(kept[step] for step in sorted(kept)))
        handle.flush()
        partial.replace(run / name)  # the handle writes on into the renamed file
        for path in old:
            if path.name != name:
                path.unlink()
    except BaseException:
        handle.close()
        raise
    return handle


def _remove_results(directory: Path) -> None:
    for name in (SUMMARY_RUN, HPARAMS_RUN):
        if (directory / name).exists():
            shutil.rmtree(directory / name)


def _write_run(run: Path, events: list[Event]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with open(run / _event_file_name(), "wb") as handle:
        _write(handle, [Event(file_version=_FILE_VERSION), *events])


def _event_file_name() -> str:
    return f"events.out.{EVENTS_MARK}.{int(time.time()):010d}.{socket.gethostname()}"


def _write(handle: BinaryIO, events: list[Event]) -> None:
    """Appends events as TFRecords (length, its masked CRC-32C, data, its masked CRC-32C)."""
    records = []
    for event in events:
        if not event.wall_time:
            event.wall_time = time.time()
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        records += [header, struct.pack("<I", masked_crc32c(header))]
        records += [data, struct.pack("<I", masked_crc32c(data))]
    handle.write(b"".join(records))
    handle.flush()


def _scalar(tag: str, value: Any) -> Summary.Value:
    return Summary.Value(tag=tag, simple_value=float(value))


def _member_values(name: str, indices: list[int], values: np.ndarray) -> list[Summary.Value]:
    return [_scalar(member_tag(name, i), v) for i, v in zip(indices, values)]


def _hparam_value(value: Any) -> bool | int | float | str:
    """A swept value as the HParams plugin takes it (a tuple such as model.hidden as text)."""
    return value if isinstance(value, bool | int | float | str) else json.dumps(value)


def _layout(names: list[str], aggregated: tuple[str, ...]) -> Summary:
    """The custom-scalars layout: every member of a metric in one chart, and the aggregates."""
    every_member = {n: ["Multiline", [rf"^{n}/member_\d+$"]] for n in names}
    aggregates = {n: ["Multiline", [rf"^{n}/(best|mean)$"]] for n in aggregated}
    return tbx_summary.custom_scalars({"every member": every_member, "over members": aggregates})
