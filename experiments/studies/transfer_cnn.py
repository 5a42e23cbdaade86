"""Transfer with a convolutional body, beside the MLP's: pretrain, then learn from a few examples.

Command:
    python experiments/studies/transfer_cnn.py --workdir=runs/transfer_cnn

What it measures: a CNN body pretrained on MNIST-1D digits 0-4 (the `mnist1d/pretrain`
variant) taken to digits 5-9 with 5, 10, 25 and 50 examples per class, from scratch, by feature
extraction (the body frozen, a new head) and by fine-tuning (the body at a tenth of the head's
learning rate), in one table beside the MLP's. Measured at full size on the 2-core CPU (235 s
for both bodies on the idle machine; sources 95.0% (MLP) and 99.9% (CNN) on digits 0-4),
target test accuracy of the validation-selected member of 8 starts:

    per class   MLP scratch / features / fine-tune   CNN scratch / features / fine-tune
     5          0.347 / 0.481 / 0.408                0.483 / 0.609 / 0.621
    10          0.367 / 0.554 / 0.548                0.560 / 0.742 / 0.763
    25          0.440 / 0.657 / 0.639                0.613 / 0.805 / 0.868
    50          0.493 / 0.747 / 0.742                0.822 / 0.842 / 0.933

The convolutional body transfers better at every size: fine-tuning it beats its own scratch
runs by 11-26 points and the MLP's best transfer by 14-21 points.

It runs the transfer study of experiments/studies/transfer.py twice, with the MLP body
(WORKDIR/mlp) and with the convolutional one (WORKDIR/cnn, experiments/transfer.py's `,cnn`
configs); each run is a normal jaxnn run, and finished runs are reused. `--smoke` runs a tiny
version (5 examples per class) in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import transfer
from experiments.studies import cli
from experiments.studies import transfer as transfer_runs
from jaxnn.reporting import study_report

NAMES = {"mlp": "MLP", "cnn": "CNN"}
SMOKE_SIZES = (5,)


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    results = {
        body: transfer_runs.transfer_study(
            workdir / body,
            smoke=smoke,
            data_dir=data_dir,
            sizes=SMOKE_SIZES if smoke else transfer.SIZES,
            body=body,
            out=sys.stdout,  # each run's accuracy as it finishes: progress on a long study
        )
        for body in transfer.BODIES
    }
    sizes = sorted(results["mlp"])
    modes = transfer.MODES
    header = ["examples per class"] + [
        f"{NAMES[body]} {transfer_runs.MODE_NAMES[mode]}"
        for body in transfer.BODIES
        for mode in modes
    ]
    rows = [
        [size, *(results[body][size][mode] for body in transfer.BODIES for mode in modes)]
        for size in sizes
    ]
    series, styles = {}, {}
    for body in transfer.BODIES:
        for i, mode in enumerate(modes):
            label = f"{NAMES[body]} {transfer_runs.MODE_NAMES[mode]}"
            series[label] = (sizes, [results[body][s][mode] for s in sizes])
            styles[label] = {"color": f"C{i}", "ls": "-" if body == "cnn" else "--", "marker": "o"}
    plots = [
        study_report.lines(
            workdir / "plots" / "transfer_by_body.png",
            series,
            xlabel="training examples per target class",
            ylabel="target test accuracy",
            title="Transfer from MNIST-1D digits 0-4 to 5-9",
            logx=True,
            styles=styles,
        )
    ]
    numbers = {"results": {body: {str(s): r for s, r in results[body].items()} for body in results}}
    study_report.write_report(
        workdir,
        "Transfer with a convolutional body",
        [
            "Target test accuracy (classes 5-9 of MNIST-1D) of the validation-selected member, "
            "training from scratch, by feature extraction and by fine-tuning a body pretrained "
            "on classes 0-4 of the `mnist1d/pretrain` variant; the MLP's body beside the CNN's. "
            "Each body's own table: WORKDIR/mlp/results.md and WORKDIR/cnn/results.md.",
        ],
        [("Target test accuracy", header, rows)],
        plots,
        numbers,
    )
    return numbers


if __name__ == "__main__":
    cli.main(__doc__, run)
