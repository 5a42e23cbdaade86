"""The whole transfer study: pretrain once, then every target size and mode; a table and a plot.

Command:
    python experiments/studies/transfer.py --workdir=runs/transfer [--smoke] [--data_dir=DIR]
        [--body=cnn]

Finding it reproduces (docs/transfer.md has the table): with 25 examples per target class
both transfer modes beat training from scratch by >= 10 points of target test accuracy, and
the better one beats scratch by >= 15 points with 50 per class. Measured (2 CPU cores, 2.5 to
4.5 minutes): scratch / feature extraction / fine-tuning 45.6 / 63.1 / 60.2% with 25 examples
per class, 49.5 / 68.4 / 68.6% with 50.

Its configs come from the launch config experiments/transfer.py: `source` into WORKDIR/source,
then `target,N,MODE` for N in (5, 10, 25, 50) and MODE in (scratch, feature_extraction,
finetune) into WORKDIR/target_N_MODE, each a normal jaxnn run (resumable, with its own
summary.json). Finished runs of the same config are reused, so an interrupted study continues
where it stopped. Writes WORKDIR/results.md (target test accuracy of the validation-selected
member), results.json, transfer.png (accuracy against examples per class, one line per mode)
and study.log (the runs' own output). `--smoke` shrinks everything to seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import matplotlib
import ml_collections

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import transfer
from jaxnn import runner
from jaxnn.errors import JaxnnError
from jaxnn.io import atomic, workdir
from jaxnn.reporting import tables

MODE_NAMES = {
    "scratch": "scratch",
    "feature_extraction": "feature extraction",
    "finetune": "fine-tuning",
}


def _run_once(
    config: ml_collections.ConfigDict, directory: Path, *, overwrite: bool, log: TextIO
) -> dict[str, Any]:
    """The summary of `config` in `directory`: a finished run of the same config is reused."""
    paths = workdir.RunPaths(directory)
    if not overwrite and paths.summary.exists() and paths.config.exists():
        old = json.loads(paths.config.read_text())
        if workdir.first_config_difference(old, json.loads(config.to_json())) is None:
            return json.loads(paths.summary.read_text())
    print(f"\n=== {directory}", file=log, flush=True)
    return runner.run(config, directory, overwrite=overwrite, progress=False, out=log)


def results_rows(
    results: dict[int, dict[str, float]], counts: dict[str, int], modes: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per size, test accuracy (%) per mode and gain over scratch."""
    header = ["examples per class", "train examples"] + [MODE_NAMES[m] for m in modes]
    header += [f"{MODE_NAMES[m]} - scratch" for m in modes if m != "scratch"]
    rows = []
    for size, accuracy in sorted(results.items()):
        row = [str(size), str(size * counts["num_classes"])]
        row += [f"{100 * accuracy[m]:.1f}" for m in modes]
        row += [
            f"{100 * (accuracy[m] - accuracy['scratch']):+.1f}" for m in modes if m != "scratch"
        ]
        rows.append(row)
    return header, rows


def results_table(
    results: dict[int, dict[str, float]],
    counts: dict[str, int],
    modes: Sequence[str],
    data_name: str = "MNIST-1D",
) -> str:
    """The markdown table of `results_rows`, after a sentence on what was measured."""
    header, rows = results_rows(results, counts, modes)
    note = (
        f"Target test accuracy (%) of the validation-selected member of {counts['members']} "
        f"random starts; {counts['num_val']} validation and {counts['num_test']} test examples "
        f"(classes 5-9 of {data_name}); pretrained on {counts['source_train']} examples of classes "
        f"0-4 (source test accuracy {100 * counts['source_test_accuracy']:.1f}%)."
    )
    return note + "\n\n" + tables.markdown_table(header, rows) + "\n"


def plot_results(
    results: dict[int, dict[str, float]],
    modes: Sequence[str],
    path: Path,
    data_name: str = "MNIST-1D",
) -> str:
    """Target test accuracy against examples per class, one line per mode."""
    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for mode in modes:
        ax.plot(sizes, [100 * results[s][mode] for s in sizes], marker="o", label=MODE_NAMES[mode])
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("training examples per target class")
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title(f"Transfer from {data_name} digits 0-4 to 5-9")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def transfer_study(
    root: str | Path,
    *,
    smoke: bool = False,
    data_dir: str = "",
    sizes: Sequence[int] | None = None,
    overwrite: bool = False,
    out: TextIO = sys.stdout,
    body: str = "mlp",
    get_config: Callable[[str], ml_collections.ConfigDict] | None = None,
    data_name: str = "MNIST-1D",
) -> dict[int, dict[str, float]]:
    """Runs the study into `root` and returns {size: {mode: target test accuracy}}.

    `body` is `mlp` or `cnn` (experiments/transfer.py's `,cnn` configs); `get_config`, another
    launch config's of the same arguments (`source` and `target,N,MODE`, `,smoke`), in place of
    experiments/transfer.py's, on the data set `data_name` (the table's and plot's words)."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    suffix = (",cnn" if body == "cnn" else "") + (",smoke" if smoke else "")
    get_config = get_config or transfer.get_config
    sizes = tuple(sizes or (transfer.SIZES[:2] if smoke else transfer.SIZES))
    modes = transfer.MODES
    with open(root / "study.log", "a") as log:
        source_config = get_config("source" + suffix)
        source_config.dataset.data_dir = data_dir
        source = _run_once(source_config, root / "source", overwrite=overwrite, log=log)
        print(f"source: test accuracy {source['best']['test_accuracy']:.4f}", file=out, flush=True)
        results: dict[int, dict[str, float]] = {}
        for size in sizes:
            for mode in modes:
                config = get_config(f"target,{size},{mode}{suffix}")
                config.dataset.data_dir = data_dir
                if mode != "scratch":
                    config.init_from.workdir = str(root / "source")
                name = f"target_{size}_{mode}"
                summary = _run_once(config, root / name, overwrite=overwrite, log=log)
                accuracy = summary["best"]["test_accuracy"]
                results.setdefault(size, {})[mode] = accuracy
                print(f"{name}: test accuracy {accuracy:.4f}", file=out, flush=True)
    counts = {
        "num_classes": summary["dataset"]["num_classes"],
        "num_val": summary["dataset"]["num_val"],
        "num_test": summary["dataset"]["num_test"],
        "members": len(summary["members"]),
        "source_train": source["dataset"]["num_train"],
        "source_test_accuracy": source["best"]["test_accuracy"],
    }
    table = results_table(results, counts, modes, data_name)
    atomic.write_text_atomic(root / "results.md", "# Transfer study\n\n" + table)
    atomic.write_json_atomic(root / "results.json", {"results": results, "counts": counts})
    plot_results(results, modes, root / "transfer.png", data_name)
    print(table, file=out)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="directory of the study's runs")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long version")
    parser.add_argument("--data_dir", default="", help="TFDS data directory ('' = default)")
    parser.add_argument("--overwrite", action="store_true", help="redo finished runs")
    parser.add_argument("--body", choices=transfer.BODIES, default="mlp", help="the network's body")
    args = parser.parse_args(argv)
    try:
        transfer_study(
            args.workdir,
            smoke=args.smoke,
            data_dir=args.data_dir,
            overwrite=args.overwrite,
            body=args.body,
        )
    except JaxnnError as error:
        print(f"jaxnn: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
