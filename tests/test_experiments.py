"""Each experiment's smoke argument launches end to end and writes the workdir contract; every
launch config and study says its command (tests/test_docs.py checks what the docs cite)."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest
from forked_launch import forked_launch
from helpers import tiered

REPO = Path(__file__).resolve().parent.parent
LAUNCH_CONFIGS = sorted((REPO / "experiments").glob("*.py"))
STUDIES = sorted(
    path
    for path in (REPO / "experiments" / "studies").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)
SMOKES = [
    "experiments/mnist1d_mlp.py:smoke",
    "experiments/digits_mlp.py:smoke",
    "experiments/regression.py:diabetes,smoke",
    "experiments/random_restarts.py:smoke",
    "experiments/transfer.py:source,smoke",
    "experiments/activations.py:smoke",  # a structural sweep: two programs, one summary
    "experiments/random_search.py:smoke",  # a Halton search with reduce_on_plateau
    "experiments/mnist1d_cnn.py:smoke",  # cnn1d with random shifts
    "experiments/mnist1d_gru.py:smoke",
    "experiments/mnist1d_resmlp.py:smoke",
    "experiments/digits_cnn.py:smoke",  # cnn2d on the digits as 8x8x1 images
    "experiments/mnist_resnet.py:smoke",  # resnet on the real MNIST subset, with crops
]

AT_CHANCE_AT_SMOKE_SIZE = {
    "experiments/activations.py:smoke",
    "experiments/mnist1d_cnn.py:smoke",
    "experiments/mnist1d_gru.py:smoke",
}


def launch(config: str, workdir: Path, data_dir: str, *extra: str) -> subprocess.CompletedProcess:
    """Runs `python launch.py` as a user would (forked: tests/forked_launch.py)."""
    return forked_launch(
        [
            f"--config={config}",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
            *extra,
        ],
        timeout=300,
    )


# The slow tier launches the rest: the same contract, for the regression data sets (trained
# in-process by tests/test_predict.py), the image experiments (their families train in
# tests/test_image_families.py), the random search (tests/test_search.py), the model
# families (each trains in tests/test_families.py and tests/test_family_runs.py), the transfer
# source (run in-process by tests/test_transfer.py) and a structural sweep (launched by
# tests/test_run_files.py).
FAST_SMOKES = {
    "experiments/mnist1d_mlp.py:smoke",
    "experiments/digits_mlp.py:smoke",
    "experiments/regression.py:friedman1,smoke",
    "experiments/random_restarts.py:smoke",
}


@pytest.mark.parametrize("config", tiered(SMOKES, FAST_SMOKES))
def test_smoke_launch_writes_the_workdir_contract(config, tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = launch(config, workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.json", "metrics.jsonl", "summary.json", "report.md"):
        assert (workdir / name).is_file(), name
    summary = json.loads((workdir / "summary.json").read_text())
    for key in (
        "dataset",
        "members",
        "best_member",
        "selected_by",
        "best",
        "ensemble",
        "restart_stats",
        "timing",
    ):
        assert key in summary, key
    task = summary["dataset"]["task"]
    # Better than a guess: above chance (balanced classes), or than predicting the mean target;
    # some smoke budgets are too short to leave chance (measured 0.10-0.14 of 10 classes).
    if task == "classification" and config not in AT_CHANCE_AT_SMOKE_SIZE:
        chance = 1 / summary["dataset"]["num_classes"]
        assert summary["ensemble"]["test_accuracy"] > chance + 0.05, summary["ensemble"]
    elif task == "regression":
        assert summary["best"]["test_r2"] > 0.1, summary["best"]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val"}
    assert {r["member"] for r in records} == {m["index"] for m in summary["members"]}
    # The ranking table and the model table reach the user.
    assert "rank" in result.stdout and "total" in result.stdout
    if task == "regression":
        assert "linear_least_squares" in summary["baselines"]
        assert (workdir / "plots" / "predictions.png").is_file()
    variants = {json.dumps(m.get("variant", {}), sort_keys=True) for m in summary["members"]}
    if "activations" in config:
        assert len(variants) == 2 and (workdir / "diagnostics.jsonl").is_file()
    if "random_search" in config:  # every member's drawn values, and the figure of them
        assert set(summary["search"]["ranges"]) == set(summary["members"][0]["hparams"])
        assert len({m["hparams"]["optimizer.learning_rate"] for m in summary["members"]}) == 4
        assert (workdir / "plots" / "search.png").is_file()
    config_json = json.loads((workdir / "config.json").read_text())
    assert config_json["dataset"]["data_dir"] == data_dir


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.parametrize("path", LAUNCH_CONFIGS, ids=lambda path: path.name)
def test_each_launch_config_docstring_gives_its_launch_command(path):
    assert "def get_config(" in path.read_text()
    assert f"python launch.py --config=experiments/{path.name}" in _docstring(path)


def test_every_study_has_a_launch_config_and_gives_its_command():
    assert {path.name for path in STUDIES} >= {"activations.py", "transfer.py"}
    for path in STUDIES:
        assert (REPO / "experiments" / path.name).is_file(), f"{path.name} has no launch config"
        assert f"python experiments/studies/{path.name} --workdir=" in _docstring(path), path
