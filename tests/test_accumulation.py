"""Gradient accumulation (`optimizer.accumulate_steps`, optax.MultiSteps): k batches of B make
one update equal to one batch of k * B, a short last batch of an epoch included, for the
built-in optimisers and a user's factory; bad values are one line."""

from __future__ import annotations

import json
import math
import shutil

import jax
import numpy as np
import optax
import pytest
from forked_launch import forked_launch
from helpers import blobs, small_config
from tensorboard.backend.event_processing import event_accumulator

import jaxnn
from jaxnn.core import loop
from jaxnn.errors import ConfigError
from jaxnn.reporting import tensorboard

# 433 examples leave 390 for training: batches of 100 end an epoch with a batch of 90, batches
# of 25 with 25, 25, 25 and 15, the same examples in the same order.
DATA_SIZE = 433
UPDATES = 12


def _params(batch_size: int, accumulate_steps: int, optimizer=None, updates=UPDATES, **overrides):
    config = small_config(
        **{
            "training.batch_size": batch_size,
            "optimizer.accumulate_steps": accumulate_steps,
            "training.steps": updates * accumulate_steps,
            "training.eval_every": updates * accumulate_steps,
            "training.keep": "last",
            **overrides,
        }
    )
    data = blobs(num_train=DATA_SIZE)
    assert data.num_train == 390
    result = loop.fit(config, data, jax.random.PRNGKey(0), optimizer=optimizer)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(result.state.params)]


CASES = [
    ({}, None),
    (
        {
            "optimizer.name": "adamw",
            "optimizer.schedule": "warmup_cosine",
            "optimizer.warmup_steps": 3,
            "optimizer.learning_rate": 0.01,
            "optimizer.weight_decay": 1e-3,
        },
        None,
    ),
    ({}, lambda hp: optax.adam(optax.cosine_decay_schedule(hp["learning_rate"], UPDATES))),
]
CASE_NAMES = ["momentum", "adamw_warmup_cosine", "user_factory"]


@pytest.mark.parametrize(("overrides", "optimizer"), CASES, ids=CASE_NAMES)
def test_four_batches_of_25_equal_one_batch_of_100(overrides, optimizer):
    accumulated = _params(25, 4, optimizer, **overrides)
    big = _params(100, 1, optimizer, **overrides)
    for got, want in zip(accumulated, big):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"optimizer.accumulate_steps": 0}, "optimizer.accumulate_steps must be an integer"),
        (
            {"optimizer.accumulate_steps": 4, "training.steps": 30},
            "not a multiple of optimizer.accumulate_steps=4",
        ),
    ],
)
def test_a_bad_accumulation_is_one_line(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        loop.fit(small_config(**overrides), blobs(), jax.random.PRNGKey(0))
    assert "\n" not in str(error.value)


def main() -> None:
    """The figure of docs/guide/batch_size.md: the largest parameter difference after 100
    updates, 4 x 25 against 100, and batches of 25 without accumulation against 100."""
    for name, (overrides, optimizer) in zip(CASE_NAMES, CASES):
        big = _params(100, 1, optimizer, updates=100, **overrides)
        for label, (batch, k) in (("4 x 25", (25, 4)), ("25 alone", (25, 1))):
            other = _params(batch, k, optimizer, updates=100, **overrides)
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(other, big))
            print(f"{name}: {label} vs 100, max abs parameter difference {diff:.3g}")


if __name__ == "__main__":
    main()


LAUNCH = ["--config=experiments/mnist1d_mlp.py:smoke"]


def test_the_launcher_refuses_zero(tmp_path, data_dir):
    refused = forked_launch(
        [
            *LAUNCH,
            f"--config.dataset.data_dir={data_dir}",
            f"--workdir={tmp_path / 'zero'}",
            "--config.optimizer.accumulate_steps=0",
        ]
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "jaxnn: error: optimizer.accumulate_steps must be an integer in [1, 1000000] (batches "
        "per optimiser update), got 0"
    ]
    assert not (tmp_path / "zero").exists()


@pytest.mark.slow  # a launch: the runs above and below accumulate in-process
def test_the_launcher_accumulates(tmp_path, data_dir):
    workdir = tmp_path / "four"
    done = forked_launch(
        [
            *LAUNCH,
            f"--config.dataset.data_dir={data_dir}",
            f"--workdir={workdir}",
            "--config.optimizer.accumulate_steps=4",
            "--noprogress",
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((workdir / "config.json").read_text())["optimizer"]["accumulate_steps"] == 4
    assert json.loads((workdir / "summary.json").read_text())["members"][0]["final_step"] == 40


def test_tensorboard_logs_the_rate_of_the_last_update(tmp_path):
    """A cosine schedule spans the run's updates, not its batches: 40 batches, 10 updates."""
    config = small_config(
        **{
            "optimizer.accumulate_steps": 4,
            "optimizer.schedule": "cosine",
            "training.steps": 40,
            "training.eval_every": 10,
            "dataset.name": "arrays",
        }
    )
    jaxnn.run(config, tmp_path / "run", data=blobs(), progress=False)
    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path / "run" / "tensorboard" / "main"),
        size_guidance={event_accumulator.SCALARS: 0},
    )
    accumulator.Reload()
    rates = accumulator.Scalars(tensorboard.member_tag("learning_rate", 0))
    assert [event.step for event in rates] == [10, 20, 30, 40]
    for event in rates:  # the rate of the last update made by the evaluation's step
        cosine = 0.5 * (1 + math.cos(math.pi * (event.step // 4 - 1) / 10))
        assert event.value == pytest.approx(0.05 * cosine, rel=1e-5, abs=1e-8)


def test_a_run_resumed_in_the_middle_of_an_update_ends_as_it_would_have(tmp_path):
    """The accumulated gradients and MultiSteps' counters are in the checkpoint: a run of 20
    batches resumed from its checkpoint at batch 10 (2 batches into an update of 4) ends with
    the same members."""
    config = small_config(
        **{
            "optimizer.accumulate_steps": 4,
            "training.steps": 20,
            "training.eval_every": 10,
            "restarts.num": 2,
            "dataset.name": "arrays",
            "checkpoint.keep": 5,
        }
    )
    data, workdir = blobs(), tmp_path / "run"
    straight = jaxnn.run(config, workdir, data=data, progress=False)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [10, 20]
    shutil.rmtree(workdir / "checkpoints" / "20")
    (workdir / "summary.json").unlink()
    resumed = jaxnn.run(config, workdir, data=data, progress=False)
    assert [m["val_loss"] for m in resumed["members"]] == [
        m["val_loss"] for m in straight["members"]
    ]
