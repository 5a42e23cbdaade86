"""The README's Python API snippet runs as a script, as a user would save and run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_python_api_snippet_runs_as_a_script(tmp_path, data_dir):
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    # The tests' prepared data; nothing else of the snippet changes.
    code = code.replace(
        "config.restarts.num = 4",
        f"config.restarts.num = 4\nconfig.dataset.data_dir = {data_dir!r}",
    )
    script = tmp_path / "api.py"
    script.write_text(code)
    # jaxnn.run keeps a cache set through JAX: the script's own, never the user's.
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test_accuracy" in done.stdout and "(5, 10)" in done.stdout
    assert (tmp_path / "runs" / "api" / "best" / "metadata").exists()
