"""Each course study's smoke version runs end to end and writes its report, numbers and plots."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
STUDIES = REPO / "experiments" / "studies"


def _load(name: str):
    """experiments/studies/NAME.py as a module (it puts the repository on sys.path itself)."""
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass (a flax Module) in it looks its module up
    spec.loader.exec_module(module)
    return module


def _outputs(workdir: Path) -> dict:
    assert (workdir / "report.md").read_text().count("|") > 4
    plots = sorted(p.name for p in (workdir / "plots").glob("*.png"))
    assert plots, "a study writes its figures"
    return json.loads((workdir / "numbers.json").read_text())


def _run(name: str, tmp_path: Path, data_dir: str) -> dict:
    """The study's smoke version in this process, through its command line."""
    workdir = tmp_path / name
    study = _load(name)
    study.cli.main(
        study.__doc__, study.run, [f"--workdir={workdir}", "--smoke", f"--data_dir={data_dir}"]
    )
    return _outputs(workdir)


def _run_as_a_user(name: str, tmp_path: Path, data_dir: str) -> dict:
    """`python experiments/studies/NAME.py --workdir=... --smoke` from another directory."""
    workdir = tmp_path / name
    done = subprocess.run(
        [
            sys.executable,
            str(STUDIES / f"{name}.py"),
            f"--workdir={workdir}",
            "--smoke",
            f"--data_dir={data_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {workdir / 'report.md'}" in done.stdout
    return _outputs(workdir)


@pytest.mark.slow
def test_activations_smoke(tmp_path, data_dir):
    numbers = _run("activations", tmp_path, data_dir)
    assert numbers["sigmoid_small_normal_ratio"] > 1.0
    rows = {(v["activation"], v["init"]): v for v in numbers["variants"]}
    assert rows[("sigmoid", "normal")]["dead_fraction_final"] is None  # n/a, not 0
    assert rows[("relu", "normal")]["saturated_fraction_final"] is None
    assert rows[("relu", "normal")]["dead_fraction_final"] is not None
    assert (tmp_path / "activations" / "diagnostics.jsonl").exists()


@pytest.mark.slow
def test_momentum_smoke(tmp_path, data_dir):
    numbers = _run("momentum", tmp_path, data_dir)
    rates = numbers["learning_rates"]
    assert set(rates) == {"0.01", "0.1"}
    # At one learning rate, momentum 0.9 takes steps up to 10 times longer along a steady
    # gradient: in the same short budget it gets further than plain SGD, at both rates, and
    # reaches SGD's final loss before the end.
    for rate in rates.values():
        final = rate["final_val_loss"]
        assert set(final) == {"sgd", "momentum 0.9", "nesterov 0.9"}
        assert final["momentum 0.9"] < final["sgd"] and final["nesterov 0.9"] < final["sgd"]
        assert rate["steps_to_sgd_final"]["momentum 0.9"] < numbers["steps"]


@pytest.mark.slow
def test_local_minima_smoke(tmp_path, data_dir):
    numbers = _run("local_minima", tmp_path, data_dir)
    assert len(numbers["expected_best_of_k"]) == 4
    assert numbers["val_loss_spread"] > 0
    assert len(numbers["barriers"]) == 6
    assert numbers["expected_best_of_k"][-1] == pytest.approx(numbers["val_loss_min"])


def test_learning_rate_smoke(tmp_path, data_dir):
    numbers = _run("learning_rate", tmp_path, data_dir)
    assert numbers["diverged_rates"] == [30.0]  # a diverging rate is reported, not a crash
    constant = numbers["final_val_loss"]["constant"]
    # 10 classes: predicting them uniformly has cross-entropy ln 10. A rate of 1e-4 barely moves
    # in 40 steps and stays above it; 0.1 gets below it, so it is the best constant rate.
    assert constant["0.0001"] > np.log(10) > constant["0.1"]
    assert numbers["best_constant_rate"] == 0.1
    # A cosine schedule only takes smaller steps than the constant rate: in a short run it ends
    # behind it.
    at_best = numbers["schedules_at_best_rate"]
    assert at_best["constant"] < at_best["cosine"]


def test_dropout_smoke_from_the_command_line_in_another_directory(tmp_path, data_dir):
    numbers = _run_as_a_user("dropout", tmp_path, data_dir)
    assert set(numbers["rates"]) == {"0.0", "0.5"}
    assert numbers["num_train"] < 200


@pytest.mark.slow
def test_losses_smoke(tmp_path, data_dir):
    numbers = _run("losses", tmp_path, data_dir)
    accuracy = numbers["classification_test_accuracy"]
    assert set(accuracy) == {"cross_entropy", "mse"}
    # MNIST-1D's 10 balanced classes: chance is 0.1; both losses learn above it.
    assert accuracy["cross_entropy"] > 0.15 and accuracy["mse"] > 0.1
    assert set(numbers["regression_test_rmse"]) == {"mse", "huber"}
    assert numbers["regression_outliers"] > 0
    # Huber's loss grows linearly beyond delta, so the corrupted targets pull it less than the
    # squared error: on the clean test split it predicts better.
    rmse, r2 = numbers["regression_test_rmse"], numbers["regression_test_r2"]
    assert rmse["huber"]["outliers"] < rmse["mse"]["outliers"]
    assert r2["huber"]["outliers"] > r2["mse"]["outliers"] > 0


@pytest.mark.slow
def test_batch_size_smoke(tmp_path, data_dir):
    numbers = _run("batch_size", tmp_path, data_dir)
    runs = numbers["runs"]
    full = numbers["num_train"]
    assert runs["equal epochs, batch 1"]["steps"] == full * numbers["epochs"]
    assert runs[f"equal epochs, batch {full}"]["steps"] == numbers["epochs"]
    assert runs[f"equal steps, batch {full}"]["steps"] == numbers["steps"]


@pytest.mark.slow
def test_batchnorm_digits_smoke(tmp_path, data_dir):
    # Its launches, its reload and its kill run in child processes of their own.
    numbers = _run("batchnorm_digits", tmp_path, data_dir)
    reload = numbers["reload"]
    assert len(reload["members"]) == 8
    for member in reload["members"]:
        assert member["reloaded_correct"] == member["run_correct"]
    assert reload["reloaded_export_test_accuracy"] == reload["reloaded_best_test_accuracy"]
    for statistics in reload["batch_stats_in_best"].values():
        assert statistics["var"]["max_abs_change"] > 1e-3
    assert numbers["kill"]["resumed_from"]
    resume = numbers["resume"]
    assert resume["metrics_jsonl_identical"] and resume["val_loss_identical"]
    assert resume["final_checkpoint_identical"] and all(resume["best_identical"].values())
