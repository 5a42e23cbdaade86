"""DIR/tensorboard: TensorBoard's own readers find every evaluation of metrics.jsonl, the end's
test metrics and one HParams session per member; a resumed run ends with the events of an
uninterrupted one; a directory that cannot be written is one error, the checkpoints intact."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from helpers import shared_dir, tensorboard_events
from tensorboard import context
from tensorboard.backend.event_processing import (
    data_provider,
    event_accumulator,
    plugin_event_multiplexer,
)
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

from jaxnn import front_end, runner
from jaxnn.config import default_config
from jaxnn.errors import ConfigError, WorkdirError
from jaxnn.reporting import tensorboard

RATES = (0.05, 0.1)


class Interrupted(Exception):
    """Stands for the process being killed."""


def _config(data_dir: str, **overrides):
    """4 members (2 starts x 2 learning rates) under a cosine schedule, 6 evaluations."""
    config = default_config()
    config.dataset.data_dir = data_dir
    config.model.hidden = (16,)
    config.training.batch_size = 100
    config.training.steps = 60
    config.training.eval_every = 10
    config.optimizer.schedule = "cosine"
    config.restarts.num = 2
    config.restarts.sweep = f"optimizer.learning_rate=[{RATES[0]}, {RATES[1]}]"
    config.checkpoint.every_steps = 20
    for field, value in overrides.items():
        section, leaf = field.split(".")
        config[section][leaf] = value
    return config


def _launch(config, workdir: Path) -> str:
    out = io.StringIO()
    runner.run(config, workdir, progress=False, out=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """The run never interrupted."""
    build = lambda d: _launch(_config(data_dir), d / "run")
    return shared_dir(tmp_path_factory, "tensorboard_reference", build) / "run"


def _scalars(run: Path) -> dict[str, list[tuple[int, np.float32]]]:
    accumulator = event_accumulator.EventAccumulator(
        str(run), size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    return {
        tag: [(e.step, np.float32(e.value)) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_every_evaluation_of_every_member_is_in_tensorboard_as_in_metrics_jsonl(reference):
    seen = _scalars(reference / "tensorboard" / "main")
    rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    expected: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ("step", "member", "split"):
                name = key if key == "batch_loss" else f"{row['split']}_{key}"
                tag = tensorboard.member_tag(name, row["member"])
                expected.setdefault(tag, []).append((row["step"], np.float32(value)))
    assert len(expected) == 4 * 5  # train/val loss and accuracy, batch_loss
    assert {tag: seen[tag] for tag in expected} == expected
    steps = list(range(10, 61, 10))
    for member in range(4):  # member v*2 + s trains with rate v, cosine-annealed over 60 steps
        rate = RATES[member // 2]
        rates = seen[tensorboard.member_tag("learning_rate", member)]
        assert [step for step, _ in rates] == steps
        for step, value in rates:  # the rate of the evaluation's last step, in float32
            cosine = 0.5 * (1 + math.cos(math.pi * (step - 1) / 60))
            assert value == pytest.approx(rate * cosine, rel=1e-5, abs=1e-8)
    for step_index, step in enumerate(steps):
        val_losses = [
            expected[tensorboard.member_tag("val_loss", m)][step_index][1] for m in range(4)
        ]
        assert seen["val_loss/best"][step_index] == (step, min(val_losses))
        assert seen["val_loss/mean"][step_index][1] == pytest.approx(np.mean(val_losses))
        assert seen["members/diverged"][step_index] == (step, 0.0)


def test_the_end_writes_the_test_metrics_and_one_hparams_session_per_member(reference):
    summary = json.loads((reference / "summary.json").read_text())
    final = {tag: points for tag, points in _scalars(reference / "tensorboard" / "summary").items()}
    expected = {f"{k}/selected": v for k, v in summary["best"].items()}
    expected |= {f"{k}/ensemble": v for k, v in summary["ensemble"].items()}
    expected["selection/member"] = summary["best_member"]
    assert final == {tag: [(60, np.float32(value))] for tag, value in expected.items()}
    # What TensorBoard's HParams dashboard lists: one session per member, its values, its metrics.
    logdir = str(reference / "tensorboard")
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=logdir, data_provider=provider, multiplexer=multiplexer)
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_SUCCESS]
    )
    groups = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    sessions = {g.sessions[0].name: g for g in groups.session_groups}
    assert sorted(sessions) == [f"hparams/{tensorboard.member_session(m)}" for m in range(4)]
    for member in summary["members"]:
        group = sessions[f"hparams/{tensorboard.member_session(member['index'])}"]
        hparams = {name: value.number_value for name, value in group.hparams.items()}
        assert hparams == {"seed": member["seed"], **member["hparams"]}
        metrics = {m.name.tag: m.value for m in group.metric_values}
        assert metrics["final/val_loss"] == pytest.approx(member["val_loss"])
        assert metrics["final/test_accuracy"] == pytest.approx(member["test_accuracy"])


def _interrupt_after(step: int) -> Callable:
    original = tensorboard.EventLog.__call__

    def log_then_stop(self, evaluation):
        original(self, evaluation)  # the events of this evaluation are written ...
        if evaluation.step == step:
            raise Interrupted  # ... but its checkpoint is not

    return log_then_stop


def test_a_resumed_run_ends_with_the_events_of_an_uninterrupted_one(reference, tmp_path, data_dir):
    workdir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensorboard.EventLog, "__call__", _interrupt_after(50))
        with pytest.raises(Interrupted):
            _launch(_config(data_dir), workdir)
    main = workdir / "tensorboard" / "main"
    assert 50 in {step for _, _, step, _ in tensorboard_events(workdir / "tensorboard")["scalars"]}
    # The old file beside its rewrite: what a launch killed while cutting the run back leaves.
    (written,) = main.glob("*tfevents*")
    shutil.copy(written, main / "events.out.tfevents.0000000001.leftover")
    assert "(step 40)" in _launch(_config(data_dir), workdir)
    events = tensorboard_events(workdir / "tensorboard")
    keys = [(run, tag, step) for run, tag, step, _ in events["scalars"]]
    assert len(keys) == len(set(keys))  # no (tag, step) twice
    assert len(list(main.glob("*tfevents*"))) == 1
    expected = tensorboard_events(reference / "tensorboard")
    assert sorted(events["scalars"]) == sorted(expected["scalars"])
    assert events["sessions"] == expected["sessions"]


def test_tensorboard_enabled_false_writes_no_tensorboard_directory(tmp_path, data_dir):
    config = _config(data_dir, **{"tensorboard.enabled": False, "training.steps": 20})
    _launch(config, tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").is_file()
    assert not (tmp_path / "run" / "tensorboard").exists()
    config.tensorboard = ml_collections.ConfigDict({"enabled": "no"})  # type-safe fields aside
    with pytest.raises(ConfigError, match=r"tensorboard\.enabled must be True or False, got 'no'"):
        front_end.resolve(config)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_a_tensorboard_directory_that_cannot_be_written_is_one_error_checkpoints_intact(
    reference, tmp_path, data_dir
):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    blocked = workdir / "tensorboard" / "main"
    shutil.rmtree(blocked)
    blocked.write_text("a file where the run's events go")
    before = _snapshot(workdir / "checkpoints")
    longer = _config(data_dir, **{"training.steps": 80})
    with pytest.raises(
        WorkdirError,
        match=rf"cannot write TensorBoard events in {re.escape(str(blocked))}: .*checkpoints are intact",
    ) as raised:
        _launch(longer, workdir)
    assert "\n" not in str(raised.value)
    assert _snapshot(workdir / "checkpoints") == before
    blocked.unlink()
    assert "(step 60)" in _launch(longer, workdir)  # launched again, the run finishes
    assert json.loads((workdir / "summary.json").read_text())["steps"] == 80
