"""Architecture and inductive bias: MLP, CNN and GRU on MNIST-1D and on its permuted version.

Command:
    python experiments/studies/inductive_bias.py --workdir=runs/inductive_bias

Finding it reproduces (the MNIST-1D paper's table: CNN 94% -> 56%, GRU 91% -> 57%, MLP 68% ->
68% when one fixed random permutation reorders the 40 positions): the convolutional and the
recurrent nets, whose weights assume that neighbouring positions belong together, lose much of
their accuracy on the permuted data, while the MLP, which sees the positions as an unordered
vector, keeps its accuracy. Measured at full size (the launch configs' steps: MLP 8000 with
early stopping, CNN 6000, GRU 4000; about 6 minutes for the six cells on the idle 2-core
CPU), standard -> permuted test accuracy of the validation-selected member (ensemble average
in brackets):

    MLP  0.742 (0.765) -> 0.748 (0.757)   paper 0.68 -> 0.68
    CNN  0.977 (0.975) -> 0.621 (0.657)   paper 0.94 -> 0.56
    GRU  0.957 (0.966) -> 0.486 (0.499)   paper 0.91 -> 0.57

The CNN loses 36 points and the GRU 47; the MLP none: the paper's pattern.

Its base config is experiments/inductive_bias.py (`MODEL,DATA`): the launch configs
experiments/mnist1d_mlp.py, experiments/mnist1d_cnn.py and experiments/mnist1d_gru.py with
augmentation off (a shift means nothing once the positions are permuted, and the paper's models
were trained without it) and two random starts; the permuted data set is
`dataset.permute_seed=1`. `--smoke` runs a tiny version in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import inductive_bias as cell_config
from experiments.studies import cli
from jaxnn import data as data_lib
from jaxnn.core import ensemble
from jaxnn.reporting import study_report

NAMES = {"mlp": "MLP", "cnn": "CNN", "gru": "GRU"}
PAPER = {"mlp": (0.68, 0.68), "cnn": (0.94, 0.56), "gru": (0.91, 0.57)}


def _config(model: str, dataset: str, *, smoke: bool, data_dir: str):
    config = cell_config.get_config(f"{model},{dataset}" + (",smoke" if smoke else ""))
    config.dataset.data_dir = data_dir
    return config


def test_accuracy(config: Any) -> dict[str, float]:
    """Test accuracy of the member selected by validation loss and of the ensemble average."""
    data = data_lib.load(config.dataset)
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    val, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
    test, predictions = ensemble.evaluate_members(
        result.state, result.program, data.x_test, data.y_test
    )
    selected = int(np.nanargmin(val["loss"]))
    included = np.isfinite(val["loss"])
    averaged = ensemble.ensemble_metrics(predictions, data.y_test, result.program, included)
    return {
        "selected": float(test["accuracy"][selected]),
        "ensemble": float(averaged["test_accuracy"]),
        "train_s": float(result.train_s),
    }


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    numbers: dict[str, Any] = {"permute_seed": cell_config.PERMUTE_SEED, "models": {}}
    rows = []
    for model in cell_config.MODELS:
        name = NAMES[model]
        entry = {
            dataset: test_accuracy(_config(model, dataset, smoke=smoke, data_dir=data_dir))
            for dataset in cell_config.DATA
        }
        entry["drop"] = entry["standard"]["selected"] - entry["permuted"]["selected"]
        numbers["models"][name] = entry
        rows.append(
            [
                name,
                entry["standard"]["selected"],
                entry["permuted"]["selected"],
                entry["drop"],
                entry["standard"]["ensemble"],
                entry["permuted"]["ensemble"],
                f"{PAPER[model][0]:.2f} / {PAPER[model][1]:.2f}",
            ]
        )
    plots = [_bars(workdir / "plots" / "accuracy_by_model.png", numbers["models"])]
    study_report.write_report(
        workdir,
        "Architecture and inductive bias",
        [
            f"Each model trains {cell_config.NUM_STARTS} random starts on MNIST-1D and on "
            "MNIST-1D with one fixed permutation of its 40 positions "
            f"(dataset.permute_seed={cell_config.PERMUTE_SEED}), "
            "without augmentation; test accuracy of the member selected by validation loss, and "
            "of the ensemble average.",
        ],
        [
            (
                "Test accuracy",
                [
                    "model",
                    "standard",
                    "permuted",
                    "drop",
                    "ensemble standard",
                    "ensemble permuted",
                    "paper (standard / permuted)",
                ],
                rows,
            )
        ],
        plots,
        numbers,
    )
    return numbers


def _bars(path: Path, models: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    positions = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for offset, dataset in ((-0.2, "standard"), (0.2, "permuted")):
        values = [models[name][dataset]["selected"] for name in names]
        ax.bar(positions + offset, values, width=0.4, label=f"{dataset} positions")
    ax.set_xticks(positions, names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (validation-selected member)")
    ax.set_title("MNIST-1D: standard against permuted positions")
    ax.legend()
    return study_report.save(fig, path)


if __name__ == "__main__":
    cli.main(__doc__, run)
