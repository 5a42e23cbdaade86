"""A user's own CNN with BatchNorm and Dropout on the 8x8 digits, through `jaxnn.run`.

Command:
    python experiments/studies/batchnorm_digits.py --workdir=runs/batchnorm_digits

What it does (every training and every reload in a process of its own, as a user's would be):

1. trains `DigitsCNN` below, 4 random starts x 2 learning rates of
   experiments/batchnorm_digits.py, into DIR/run: `jaxnn.run(config, DIR/run,
   model=DigitsCNN())`. The model is Flax as its docs write it: `nn.BatchNorm(
   use_running_average=not train)` and `nn.Dropout(rate, deterministic=not train)`;
2. reloads DIR/run in a new process: `jaxnn.load_predictor(DIR/run, model=DigitsCNN())` and its
   `best/` score the raw test images, and each member's score is compared with summary.json's
   test accuracy; the BatchNorm statistics of DIR/run/best are compared with their initial
   values (mean 0, variance 1);
3. launches the same run again into DIR/killed, kills it with SIGKILL once its second checkpoint
   is on disk and an evaluation past it is written, launches it again to the end and compares
   it with DIR/run: metrics.jsonl, every member's val_loss in summary.json, the final checkpoint
   (the running statistics included) and every tree of best/.

Finding it reproduces: the selected member classifies the same test images right after the
reload as during the run (every member does), the running statistics in best/ have moved far
from 0 and 1, and the killed and resumed run is bit for bit the uninterrupted one.
`--smoke` runs a tiny version in about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
import jaxnn
from experiments import batchnorm_digits
from experiments.studies import cli
from jaxnn.data.builders import source as builders
from jaxnn.io import checkpoint, export
from jaxnn.reporting import study_report


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions over the 8x8 image, each with BatchNorm and ReLU; Dropout; a head."""

    dropout: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape((x.shape[0], 8, 8, 1))  # digits' 64 pixels, row by row: the 8x8 image
        x = nn.Conv(16, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        x = nn.Conv(32, (3, 3), strides=(2, 2))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(10, name="head")(x)


def _config(data_dir: str, smoke: bool):
    config = batchnorm_digits.get_config("smoke" if smoke else None)
    config.dataset.data_dir = data_dir
    return config


# --- What the child processes do ------------------------------------------------------------


def train(workdir: str, data_dir: str, smoke: str) -> None:
    """Trains (or resumes) the run into `workdir`."""
    jaxnn.run(_config(data_dir, smoke == "1"), workdir, model=DigitsCNN(), progress=False)


def check(workdir: str, data_dir: str, smoke: str) -> None:
    """Reloads a finished run and prints what it reproduces, as JSON."""
    root = Path(workdir)
    summary = json.loads((root / "summary.json").read_text())
    # The test split as the builder stores it (raw pixels 0..16): what the run was scored on.
    raw = builders.read(_config(data_dir, smoke == "1").dataset.name, data_dir)
    x_test, y_test = raw.x_test, raw.y_test
    every_member = jaxnn.load_predictor(root, model=DigitsCNN())
    exported = jaxnn.load_predictor(root / "best", model=DigitsCNN())
    count = len(y_test)
    members = []
    for row in summary["members"]:
        score = every_member.score(x_test, y_test, member=row["index"])
        members.append(
            {
                "member": row["index"],
                "learning_rate": row["hparams"]["optimizer.learning_rate"],
                "run_correct": round(row["test_accuracy"] * count),
                "reloaded_correct": round(score * count),
                "run_test_accuracy": row["test_accuracy"],
                "reloaded_test_accuracy": score,
            }
        )
    stats = export.read_best(root, "model_state")["batch_stats"]
    initial = DigitsCNN().init(jax.random.PRNGKey(0), np.zeros((1, 64), np.float32))
    moved = {}
    for layer, values in stats.items():
        start = initial["batch_stats"][layer]
        moved[layer] = {
            name: {
                "max_abs_change": float(np.max(np.abs(values[name] - np.asarray(start[name])))),
                "mean": float(np.mean(values[name])),
                "initial_mean": float(np.mean(start[name])),
            }
            for name in ("mean", "var")
        }
    print(
        json.dumps(
            {
                "test_examples": count,
                "best_member": summary["best_member"],
                "run_best_test_accuracy": summary["best"]["test_accuracy"],
                "reloaded_best_test_accuracy": every_member.score(x_test, y_test),
                "reloaded_export_test_accuracy": exported.score(x_test, y_test),
                "members": members,
                "batch_stats_in_best": moved,
            }
        )
    )


CHILD_COMMANDS = {"train": train, "check": check}


# --- The study -------------------------------------------------------------------------------


def _child(command: str, workdir: Path, data_dir: str, smoke: bool, log: Path):
    args = [sys.executable, __file__, command, str(workdir), data_dir, "1" if smoke else "0"]
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(args, stdout=out, stderr=err, env={**os.environ})


def _wait(process: subprocess.Popen, log: Path) -> str:
    if process.wait() != 0:
        raise RuntimeError(f"{log} failed:\n{log.with_suffix('.err').read_text()[-3000:]}")
    return log.with_suffix(".out").read_text()


def _rows(workdir: Path) -> int:
    try:
        return (workdir / "metrics.jsonl").read_text().count("\n")
    except FileNotFoundError:
        return 0


def _kill_after_second_checkpoint(
    workdir: Path, data_dir: str, smoke: bool, config: Any, log: Path
) -> int:
    """Launches the run and SIGKILLs it once its second checkpoint is on disk and the rows of
    the evaluation after it are written; returns the step of that checkpoint."""
    every, members = config.checkpoint.every_steps, 4 * 2
    second = 2 * every
    rows_after = 2 * members * (second // config.training.eval_every + 1)
    process = _child("train", workdir, data_dir, smoke, log)
    while process.poll() is None:
        if (workdir / "checkpoints" / str(second)).is_dir() and _rows(workdir) >= rows_after:
            process.send_signal(signal.SIGKILL)
            if process.wait() != -signal.SIGKILL:
                break
            return second
        time.sleep(0.001)
    raise RuntimeError(f"the launch ended before the kill:\n{log.with_suffix('.err').read_text()}")


def _final_state(workdir: Path) -> dict:
    return checkpoint.last_state_fields(workdir / "checkpoints")


def _same_trees(a: Any, b: Any) -> bool:
    left, right = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(left, right, strict=True)
    )


def _compare(killed: Path, reference: Path) -> dict[str, Any]:
    summaries = [json.loads((d / "summary.json").read_text()) for d in (killed, reference)]
    val_losses = [[m["val_loss"] for m in s["members"]] for s in summaries]
    return {
        "metrics_jsonl_identical": (killed / "metrics.jsonl").read_bytes()
        == (reference / "metrics.jsonl").read_bytes(),
        "val_loss_identical": val_losses[0] == val_losses[1],
        "val_loss": val_losses[1],
        "summary_identical_but_timing": {k: v for k, v in summaries[0].items() if k != "timing"}
        == {k: v for k, v in summaries[1].items() if k != "timing"},
        "final_checkpoint_identical": _same_trees(_final_state(killed), _final_state(reference)),
        "best_identical": {
            item: _same_trees(export.read_best(killed, item), export.read_best(reference, item))
            for item in export.BEST_TREES
        },
    }


def _curves(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean validation accuracy of the 4 starts of each learning rate, by step."""
    summary = json.loads((workdir / "summary.json").read_text())
    rate_of = {m["index"]: m["hparams"]["optimizer.learning_rate"] for m in summary["members"]}
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    series = {}
    for rate in sorted(set(rate_of.values())):
        by_step: dict[int, list[float]] = {}
        for row in rows:
            if row["split"] == "val" and rate_of[row["member"]] == rate:
                by_step.setdefault(row["step"], []).append(row["accuracy"])
        steps = np.array(sorted(by_step))
        series[f"learning rate {rate:g}"] = (steps, np.array([np.mean(by_step[s]) for s in steps]))
    return series


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    config = _config(data_dir, smoke)
    reference, killed = workdir / "run", workdir / "killed"
    started = time.perf_counter()
    _wait(_child("train", reference, data_dir, smoke, workdir / "train"), workdir / "train")
    train_s = time.perf_counter() - started
    reloaded = json.loads(
        _wait(_child("check", reference, data_dir, smoke, workdir / "check"), workdir / "check")
    )
    kill_step = _kill_after_second_checkpoint(killed, data_dir, smoke, config, workdir / "killed")
    resumed = _wait(
        _child("train", killed, data_dir, smoke, workdir / "resume"), workdir / "resume"
    )
    comparison = _compare(killed, reference)
    numbers = {
        "train_s": train_s,
        "reload": reloaded,
        "kill": {"checkpoint_step": kill_step, "resumed_from": f"(step {kill_step})" in resumed},
        "resume": comparison,
    }
    plots = [
        study_report.lines(
            workdir / "plots" / "val_accuracy.png",
            _curves(reference),
            xlabel="training step",
            ylabel="validation accuracy (mean of 4 starts)",
            title="A user's CNN with BatchNorm on the 8x8 digits",
        )
    ]
    member_rows = [
        [m["member"], m["learning_rate"], m["run_test_accuracy"], m["reloaded_test_accuracy"]]
        for m in reloaded["members"]
    ]
    stats_rows = [
        [layer, name, entry["initial_mean"], entry["mean"], entry["max_abs_change"]]
        for layer, values in reloaded["batch_stats_in_best"].items()
        for name, entry in values.items()
    ]
    resume_rows = [[k, v] for k, v in comparison.items() if k != "val_loss"]
    study_report.write_report(
        workdir,
        "A user's CNN with BatchNorm on the 8x8 digits",
        [
            f"{len(reloaded['members'])} members (4 random starts x 2 learning rates), "
            f"{config.training.epochs} epochs of batches of {config.training.batch_size}; "
            f"selected member {reloaded['best_member']}: test accuracy "
            f"{reloaded['run_best_test_accuracy']:.4f} in the run, "
            f"{reloaded['reloaded_best_test_accuracy']:.4f} reloaded in a new process "
            f"({reloaded['reloaded_export_test_accuracy']:.4f} from best/).",
            f"Killed with SIGKILL after checkpoint {kill_step}, launched again to the end.",
        ],
        [
            (
                "Test accuracy, in the run and reloaded",
                ["member", "lr", "run", "reloaded"],
                member_rows,
            ),
            (
                "BatchNorm statistics in best/",
                ["layer", "statistic", "initial mean", "mean in best/", "max |change|"],
                stats_rows,
            ),
            ("Killed and resumed vs uninterrupted", ["what", "identical"], resume_rows),
        ],
        plots,
        numbers,
    )
    return numbers


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILD_COMMANDS:
        CHILD_COMMANDS[sys.argv[1]](*sys.argv[2:])
    else:
        cli.main(__doc__, run)
