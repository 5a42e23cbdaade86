"""Member schedules (`restarts.schedule`): successive halving, Hyperband and PBT in one program."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from forked_launch import forked_launch
from helpers import blobs, small_config

from jaxnn import runner
from jaxnn.config.schedule import Schedule
from jaxnn.core import ensemble, schedules
from jaxnn.core.schedules import driver
from jaxnn.errors import ConfigError
from jaxnn.reporting import metrics_log

SEARCH = "optimizer.learning_rate=loguniform(1e-3, 0.5)"
PBT_SEARCH = "optimizer.learning_rate=loguniform(1e-3, 0.5); model.dropout=uniform(0, 0.3)"


@pytest.fixture(scope="module")
def data():
    return blobs()


def _halving(**overrides):
    fields = {
        "restarts.num": 9,
        "restarts.search": SEARCH,
        "training.steps": 90,
        "restarts.schedule": "successive_halving",
        "restarts.first_rung_steps": 10,
    }
    return small_config(**(fields | overrides))


def _pbt(**overrides):
    fields = {
        "restarts.num": 8,
        "restarts.search": PBT_SEARCH,
        "training.steps": 60,
        "restarts.schedule": "pbt",
        "restarts.pbt_interval": 20,
    }
    return small_config(**(fields | overrides))


def _leaves_equal(a, b) -> bool:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b)
    )


def _assert_states_equal(a, b) -> None:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def halved(data):
    return ensemble.fit_ensemble(_halving(), data, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def unpruned(data):
    """The same search, every member to the end (schedule none)."""
    config = _halving(**{"restarts.schedule": "none", "restarts.first_rung_steps": 0})
    return ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))


# --- the plan ----------------------------------------------------------------------------------


def test_rungs_end_at_first_times_eta_powers_and_at_the_run_end():
    plan = schedules.plan_rungs(Schedule("successive_halving", first_rung_steps=10), 9, 200, 10)
    assert plan.ends == (10, 30, 90, 200)
    assert plan.prunes_at(30) == 1 and plan.prunes_at(200) is None and plan.prunes_at(20) is None


def test_hyperband_brackets_share_members_in_its_proportions():
    # P = 2 prunings: brackets s = 2, 1, 0 weigh ceil(3/3*9)=9, ceil(3/2*3)=5, ceil(3/1*1)=3.
    plan = schedules.plan_rungs(Schedule("hyperband", first_rung_steps=10), 17, 90, 10)
    assert np.bincount(plan.bracket).tolist() == [9, 5, 3]
    assert plan.starts == (0, 1, 2)
    # Other counts by the largest remainder, every bracket at least one member.
    share = schedules.plan_rungs(Schedule("hyperband", first_rung_steps=10), 14, 90, 10)
    assert np.bincount(share.bracket).tolist() == [7, 4, 3]
    four = schedules.plan_rungs(Schedule("hyperband", first_rung_steps=10), 4, 270, 10)
    assert np.bincount(four.bracket).tolist() == [1, 1, 1, 1]


def test_the_later_rungs_sizes_are_predicted_for_compiling_ahead():
    plan = schedules.plan_rungs(Schedule("hyperband", first_rung_steps=10), 14, 90, 10)
    live = np.ones(14, bool)
    # brackets 7, 4, 3: after rung 0 3 + 4 + 3, after rung 1 1 + 2 + 3
    assert schedules.predicted_sizes(plan, live, 3, 0) == [10, 6]
    live[3:7] = False  # resumed after rung 0: bracket 0 kept 3 of its 7
    assert schedules.predicted_sizes(plan, live, 3, 10) == [6]


def test_survivors_are_the_best_ceil_n_over_eta_per_bracket_ties_to_the_lower_index():
    plan = schedules.RungPlan((10, 30), np.array([0, 0, 0, 0, 1, 1, 1]), (0, 1))
    live = np.ones(7, bool)
    values = np.array([3.0, 1.0, 1.0, 0.5, 2.0, 1.0, np.inf])
    keep = schedules.survivors(plan, 0, live, values, 3)
    # Bracket 0 keeps ceil(4/3)=2 (members 3 and 1, the tie to the lower index); bracket 1
    # does not prune at rung 0.
    assert keep.tolist() == [False, True, False, True, True, True, True]


# --- halving -------------------------------------------------------------------------------------


def test_halving_keeps_exactly_the_members_a_hand_ranking_keeps(halved, data):
    first_rung = _halving(**{"restarts.schedule": "none", "restarts.first_rung_steps": 0})
    first_rung.training.steps = 10
    at_rung = ensemble.fit_ensemble(first_rung, data, jax.random.PRNGKey(0))
    scores = at_rung.validation_scores()  # best weights on validation, as selection does
    by_hand = sorted(np.argsort(scores, kind="stable")[: math.ceil(9 / 3)].tolist())
    steps = np.asarray(halved.state.step)
    assert sorted(np.flatnonzero(steps > 10).tolist()) == by_hand
    pruned = [row["member"] for row in halved.schedule["events"] if row["rung"] == 0]
    assert sorted(pruned) == sorted(set(range(9)) - set(by_hand))
    # A pruned member keeps what it had at its rung: its state is that of the run stopped there.
    for member in pruned:
        mine = ensemble.member_state(halved.state, member)
        alone = ensemble.member_state(at_rung.state, member)
        assert _leaves_equal(mine.params, alone.params)
        assert _leaves_equal(mine.best_params, alone.best_params)


def test_survivors_continue_bit_identically_to_the_same_members_never_pruned(halved, unpruned):
    steps = np.asarray(halved.state.step)
    finalists = np.flatnonzero(steps == 90)
    assert finalists.size == 1  # 9 -> 3 -> 1
    for member in np.flatnonzero(steps > 10):
        mine = ensemble.member_state(halved.state, member)
        never = ensemble.member_state(unpruned.state, member)
        if steps[member] == 90:
            _assert_states_equal(mine.params, never.params)
            _assert_states_equal(mine.opt_state, never.opt_state)
            _assert_states_equal(mine.best_params, never.best_params)


def test_each_rung_trains_only_its_survivors(halved):
    rungs = halved.schedule["rungs"]
    assert [r["members"] for r in rungs] == [9, 3, 1]
    assert [r["member_steps"] for r in rungs] == [90, 60, 60]


def test_compaction_never_compiles_a_size_twice(halved, data, monkeypatch):
    assert halved.schedule["sizes_compiled"] == [9, 3, 1]
    # PBT gathers the whole batch again after every exploit: always the one program.
    compiled = []
    original = driver._compile
    monkeypatch.setattr(
        driver,
        "_compile",
        lambda trainer, d, size, *a: compiled.append(size) or original(trainer, d, size, *a),
    )
    result = ensemble.fit_ensemble(
        _pbt(**{"restarts.pbt_interval": 10, "training.steps": 40}), data, jax.random.PRNGKey(0)
    )
    assert compiled == [8] and result.schedule["sizes_compiled"] == [8]
    assert {row["step"] for row in result.schedule["events"]} == {10, 20, 30}


@pytest.mark.parametrize("stop_at", [20, 30], ids=["mid-rung", "between-rungs"])
def test_halving_resumed_from_any_chunk_ends_exactly_as_uninterrupted(halved, data, stop_at):
    trainer = ensemble.make_trainer(_validated(_halving(), data), data, jax.random.PRNGKey(0))
    seen = []

    def stop() -> bool:
        return bool(seen) and seen[-1] == stop_at

    first = ensemble.train_members(
        trainer,
        data,
        jax.random.PRNGKey(0),
        on_eval=lambda e: seen.append(e.step),
        should_stop=stop,
    )
    assert first.steps_done == stop_at
    host = jax.device_get(first.state)  # as a checkpoint holds it
    second = ensemble.train_members(
        trainer, data, jax.random.PRNGKey(0), state=host, start_step=stop_at
    )
    _assert_states_equal(second.state, halved.state)
    events = first.schedule["events"] + second.schedule["events"]
    assert events == halved.schedule["events"]


@pytest.mark.slow
def test_hyperband_runs_its_brackets_in_one_launch(data):
    config = _halving(**{"restarts.schedule": "hyperband", "restarts.num": 14})
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    plan = schedules.plan_rungs(Schedule("hyperband", first_rung_steps=10), 14, 90, 10)
    # Weights 9, 5, 3 share 14 members as 7, 4, 3: 7 -> 3 -> 1; 4 -> (rung 1) 2; 3 never pruned.
    assert np.bincount(plan.bracket).tolist() == [7, 4, 3]
    steps = np.asarray(result.state.step)
    finalists = [int((steps[plan.bracket == b] == 90).sum()) for b in range(3)]
    assert finalists == [1, 2, 3]
    assert (steps[plan.bracket == 1] >= 30).all() and (steps[plan.bracket == 2] == 90).all()
    sizes = result.schedule["sizes_compiled"]
    assert len(set(sizes)) == len(sizes) and sizes[0] == 14


# --- PBT -----------------------------------------------------------------------------------------


def test_pbt_copy_gives_the_copied_members_exact_state_and_new_hparams(data):
    config = _pbt(**{"restarts.pbt_resample": 0.0})
    spec = _validated(config, data)
    trainer = ensemble.make_trainer(spec, data, jax.random.PRNGKey(0))
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    state = ensemble.train_members(trainer, data, jax.random.PRNGKey(0)).state  # trained
    schedule = schedules.run_schedule(spec, 8)
    ranges = schedules.hparam_ranges(spec)
    exploit = schedules.make_exploit(schedule, ranges, 8)
    values = jnp.arange(8, dtype=jnp.float32)[::-1]  # member 7 best, member 0 worst
    new, source, destination = exploit(state, values, jax.random.PRNGKey(3))
    source, destination = np.asarray(source), np.asarray(destination)
    assert sorted(destination.tolist()) == [0, 1] and set(source.tolist()) <= {6, 7}
    for src, dst in zip(source, destination):
        copied, original = ensemble.member_state(new, dst), ensemble.member_state(state, src)
        _assert_states_equal(copied.params, original.params)
        _assert_states_equal(copied.opt_state, original.opt_state)
        _assert_states_equal(copied.best_params, original.best_params)
        assert int(copied.step) == int(original.step)
        np.testing.assert_array_equal(copied.member_key, state.member_key[dst])  # its own
        for spec_range in ranges:
            before = float(original.hparams[spec_range.hparam])
            after = float(copied.hparams[spec_range.hparam])
            factors = [before * 0.8, before * 1.2]
            clipped = [min(max(f, spec_range.low), spec_range.high) for f in factors]
            assert any(math.isclose(after, c, rel_tol=1e-6) for c in clipped), (before, after)
    untouched = np.setdiff1d(np.arange(8), destination)
    for member in untouched:
        assert _leaves_equal(
            ensemble.member_state(new, member), ensemble.member_state(state, member)
        )


def test_pbt_changes_hparams_without_recompiling_and_records_lineage(data):
    result = ensemble.fit_ensemble(_pbt(), data, jax.random.PRNGKey(0))
    events = result.schedule["events"]
    assert {row["step"] for row in events} == {20, 40}
    assert all(len([r for r in events if r["step"] == s]) == 2 for s in (20, 40))
    final = np.asarray(result.state.hparams["learning_rate"])
    for row in events:
        if row["step"] == 40 and not any(
            r["step"] > 40 and r["member"] == row["member"] for r in events
        ):
            assert math.isclose(final[row["member"]], row["learning_rate"], rel_tol=1e-6)


@pytest.mark.parametrize("stop_at", [30, 40], ids=["mid-interval", "at-an-exploit"])
def test_pbt_resumed_from_any_chunk_ends_exactly_as_uninterrupted(data, stop_at):
    config = _pbt()
    reference = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    trainer = ensemble.make_trainer(_validated(config, data), data, jax.random.PRNGKey(0))
    seen = []
    first = ensemble.train_members(
        trainer,
        data,
        jax.random.PRNGKey(0),
        on_eval=lambda e: seen.append(e.step),
        should_stop=lambda: bool(seen) and seen[-1] == stop_at,
    )
    second = ensemble.train_members(
        trainer,
        data,
        jax.random.PRNGKey(0),
        state=jax.device_get(first.state),
        start_step=stop_at,
    )
    _assert_states_equal(second.state, reference.state)
    assert first.schedule["events"] + second.schedule["events"] == reference.schedule["events"]


# --- through jaxnn.run ---------------------------------------------------------------------------


class Interrupted(Exception):
    """Stands for the process being killed."""


def _run(config, workdir: Path, data, *, kill_at: int | None = None, monkeypatch=None):
    if kill_at is not None:
        original = metrics_log.Progress.__call__

        def progress_then_stop(self, evaluation):
            original(self, evaluation)
            if evaluation.step == kill_at:
                raise Interrupted

        monkeypatch.setattr(metrics_log.Progress, "__call__", progress_then_stop)
        with pytest.raises(Interrupted):
            runner.run(config, workdir, data=data, progress=False, out=io.StringIO())
        monkeypatch.undo()
        return None
    return runner.run(config, workdir, data=data, progress=False, out=io.StringIO())


def _without_launch(summary: dict) -> dict:
    summary = dict(summary)
    summary.pop("timing")
    return summary


@pytest.mark.parametrize(
    ("make", "kill_at"), [(_halving, 40), (_pbt, 40)], ids=["halving-mid-rung", "pbt-mid-interval"]
)
def test_a_killed_scheduled_run_resumes_to_the_same_files(
    make, kill_at, data, tmp_path, monkeypatch
):
    # Checkpoints at 20 and 40; killed before the save of 40, after the decisions of step 30
    # (a rung's end; a PBT exploit) were written: the resume from 20 cuts them back.
    overrides = {"checkpoint.every_steps": 20, "tensorboard.enabled": False}
    if make is _pbt:
        overrides["restarts.pbt_interval"] = 10
    config = make(**overrides)
    reference = _run(config, tmp_path / "reference", data)
    _run(config, tmp_path / "run", data, kill_at=kill_at, monkeypatch=monkeypatch)
    written = (tmp_path / "run" / "schedule.jsonl").read_text().splitlines()
    assert max(json.loads(line)["step"] for line in written) == 30  # past the checkpoint at 20
    resumed = _run(config, tmp_path / "run", data)
    assert _without_launch(resumed) == _without_launch(reference)
    for name in ("metrics.jsonl", "schedule.jsonl"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "reference" / name).read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all("schedule" in m for m in summary["members"])
    assert (tmp_path / "run" / "plots" / "schedule.png").is_file()
    if make is _halving:
        blocks = [m["schedule"] for m in summary["members"]]
        assert sorted(b["stopped_at"] for b in blocks) == [10] * 6 + [30] * 2 + [90]
        assert [b["rung"] for b in blocks if not b["pruned"]] == [2]
    else:
        lineages = [m["schedule"]["lineage"] for m in summary["members"]]
        assert sum(len(line) for line in lineages) == 10  # 2 members at steps 10, ..., 50
        assert (
            "Schedule: pbt every 10 steps, the bottom 25% of 8 members copy a top member and "
            "scale its values by 1 -/+ 0.2 (redrawn with probability 0.25): 10 copies."
        ) in (tmp_path / "run" / "report.md").read_text()


def test_the_report_states_the_schedule_and_the_ensemble_leaves_pruned_members_out(data, tmp_path):
    config = _halving(**{"restarts.schedule": "hyperband", "restarts.num": 14})
    result = _run(config, tmp_path / "run", data)
    blocks = [m["schedule"] for m in result["members"]]
    pruned = [b["pruned"] for b in blocks]
    assert [m["pruned"] for m in result["members"]] == pruned and sum(pruned) == 8
    kept = [m["index"] for m in result["members"] if not (m["pruned"] or m["diverged"])]
    assert result["ensemble_members"] == kept and result["num_pruned"] == 8
    report = (tmp_path / "run" / "report.md").read_text()
    member_steps = sum(b["stopped_at"] for b in blocks)
    assert (
        f"Schedule: hyperband with eta 3, rungs ending at steps 10, 30, 90, members per rung "
        f"14 -> 10 -> 6: {member_steps} member-steps, {member_steps / (14 * 90):.0%} of the "
        f"{14 * 90} of every member trained to step 90."
    ) in report
    assert "nor were pruned at a rung (8 pruned member(s) left out)" in report
    # The workdir's predictor averages the members summary.json's ensemble averaged.
    predictor = result.predictor()
    assert np.flatnonzero(predictor.in_ensemble).tolist() == kept
    by_hand = np.mean([result.predict_proba(data.x_test, member=i) for i in kept], axis=0)
    np.testing.assert_allclose(
        result.predict_proba(data.x_test, member="ensemble"), by_hand, rtol=1e-6
    )


def test_a_halving_result_predicts_as_an_ensemble_of_its_unpruned_members(halved):
    finalists = [i for i in range(9) if int(np.asarray(halved.state.step)[i]) == 90]
    assert np.flatnonzero(halved.predictor().in_ensemble).tolist() == finalists


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"restarts.schedule": "asha"}, "restarts.schedule: unknown 'asha'"),
        ({"restarts.schedule": "pbt", "restarts.search": ""}, "ranges of restarts.search"),
        ({"restarts.eta": 5}, "restarts.eta is read only by"),
        ({"restarts.schedule": "successive_halving", "restarts.num": 1}, "prunes members"),
        ({"restarts.schedule": "successive_halving", "restarts.eta": 1}, "restarts.eta"),
        (
            {"restarts.schedule": "pbt", "restarts.search": SEARCH, "restarts.pbt_fraction": 0.7},
            "restarts.pbt_fraction must be in (0, 0.5]",
        ),
        (
            {"restarts.schedule": "successive_halving", "restarts.first_rung_steps": 15},
            "must be a multiple of training.eval_every",
        ),
        (
            {"restarts.schedule": "successive_halving", "restarts.first_rung_steps": 90},
            "leaves no rung before",
        ),
    ],
)
def test_bad_schedules_are_one_line_config_errors_before_anything_is_written(
    overrides, fragment, data, tmp_path
):
    config = _halving(**{"restarts.schedule": "none", "restarts.first_rung_steps": 0} | overrides)
    with pytest.raises(ConfigError, match=None) as raised:
        runner.run(config, tmp_path / "run", data=data, progress=False, out=io.StringIO())
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_the_launcher_refuses_a_bad_schedule_with_exit_2(tmp_path, data_dir):
    result = forked_launch(
        [
            "--config=experiments/mnist1d_mlp.py:smoke",
            f"--workdir={tmp_path / 'run'}",
            "--config.restarts.schedule=hyperband",
            "--config.restarts.num=1",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
        ]
    )
    assert result.returncode == 2 and "restarts.schedule=hyperband prunes members" in result.stderr


def _validated(config, data):
    from jaxnn import front_end
    from jaxnn.nn.components import Components

    return front_end.resolve_call(config, data, jax.random.PRNGKey(0), Components()).single_program(
        "test"
    )
