"""Each row of the bad-input table (docs/reliability.md) exits 2 with one line, changing nothing."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TABLE_DOC = REPO / "docs" / "reliability.md"
DEFAULT_CONFIG = "--config=experiments/mnist1d_mlp.py:smoke"


def _table_rows() -> list[tuple[str, str]]:
    """(arguments, fragment of the message) of each row under the doc's "Bad input" heading."""
    text = TABLE_DOC.read_text()
    section = re.split(r"^#+ Bad input$", text, maxsplit=1, flags=re.MULTILINE)[1]
    section = section.split("\n#", 1)[0]
    return re.findall(r"^\| `(.+?)` \| `(.+?)` \|$", section, flags=re.MULTILINE)


ROWS = _table_rows()


def test_the_bad_input_table_has_at_least_30_rows():
    assert len(ROWS) >= 30


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


def command_line(arguments: str, workdir: Path, data_dir: str) -> list[str]:
    """The full launch command of a table row."""
    args = shlex.split(arguments)
    if not any(a.startswith("--config=") for a in args):
        args.insert(0, DEFAULT_CONFIG)
    if not any(a.startswith("--workdir=") for a in args):
        args.append(f"--workdir={workdir}")
    args = [a for a in args if a != "--workdir=(none)"]
    return [
        sys.executable,
        "launch.py",
        *args,
        f"--config.dataset.data_dir={data_dir}",
        "--noprogress",
    ]


@pytest.mark.parametrize(("arguments", "fragment"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    arguments, fragment, tmp_path, data_dir
):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("a researcher's file that must survive\n")
    before = _snapshot(tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        command_line(arguments, workdir, data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("jaxnn: error: ")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before
