"""The course studies' shared command line, and the base config and data a study starts from.

A study is `experiments/studies/NAME.py`, run from any directory as

    python experiments/studies/NAME.py --workdir=DIR [--smoke] [--data_dir=PATH]

Its base config is `get_config` of the launch config `experiments/NAME.py` (the file that
`python launch.py --config=experiments/NAME.py` runs). Every study reaches it the same way:
its first lines put the repository on `sys.path` and import the launch config as the module
`experiments.NAME`, and this module as `experiments.studies.cli`. A study writes DIR/report.md,
DIR/numbers.json and DIR/plots/*.png through `jaxnn.reporting.study_report`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxnn import data as data_lib


def main(
    doc: str, run: Callable[..., Mapping[str, Any]], argv: Sequence[str] | None = None
) -> Mapping[str, Any]:
    """Parses `--workdir`, `--smoke`, `--data_dir` and calls `run(workdir, smoke=, data_dir=)`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where report.md and plots/ go")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long version (tests)")
    parser.add_argument(
        "--data_dir", default="", help="TFDS data_dir (default ~/tensorflow_datasets)"
    )
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    (workdir / "plots").mkdir(parents=True, exist_ok=True)
    numbers = run(workdir, smoke=args.smoke, data_dir=args.data_dir)
    print(f"wrote {workdir / 'report.md'}")
    return numbers


def study_data(
    get_config: Callable[[str | None], ml_collections.ConfigDict], *, smoke: bool, data_dir: str
) -> tuple[ml_collections.ConfigDict, data_lib.Dataset]:
    """A study's base config (its `smoke` variant when asked) with `data_dir`, and its data."""
    config = get_config("smoke" if smoke else None)
    config.dataset.data_dir = data_dir
    return config, data_lib.load(config.dataset)
