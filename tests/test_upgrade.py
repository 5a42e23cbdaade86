"""A run written before fields were added to the schema resumes, reloads and transfers: its
recorded config is upgraded to the current schema (the new fields take their defaults)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_dir

import jaxnn
from jaxnn.config import schema


def _config(data_dir: str, steps: int = 20):
    config = jaxnn.default_config()
    config.dataset.data_dir = data_dir
    config.model.hidden = (8,)
    config.training.steps = steps
    config.training.eval_every = 10
    config.restarts.num = 2
    return config


@pytest.fixture(scope="module")
def written(tmp_path_factory, data_dir) -> Path:
    """A finished run, written by the current version."""
    return (
        shared_dir(
            tmp_path_factory,
            "upgrade_written",
            lambda d: jaxnn.run(_config(data_dir), d / "run", progress=False, out=io.StringIO()),
        )
        / "run"
    )


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


def _with_new_fields(monkeypatch) -> None:
    """The schema as a later version has it: a field added to a section, and a new section."""
    original = schema.default_config

    def later_default_config():
        config = original()
        config.training.new_option = 0
        config.later = {"enabled": False}
        return config

    for module in list(sys.modules.values()):
        if getattr(module, "default_config", None) is original:
            monkeypatch.setattr(module, "default_config", later_default_config)


def _rows(workdir: Path) -> int:
    return len((workdir / "metrics.jsonl").read_text().splitlines())


def test_a_run_written_before_fields_were_added_resumes_reloads_and_transfers(
    written, tmp_path, data_dir, monkeypatch
):
    workdir = _copy(written, tmp_path)
    _with_new_fields(monkeypatch)
    assert "new_option" in jaxnn.default_config().training
    x = np.zeros((3, 40), np.float32)
    before = jaxnn.load_predictor(workdir).predict(x)

    summary = jaxnn.run(_config(data_dir, steps=30), workdir, progress=False, out=io.StringIO())
    assert {m["final_step"] for m in summary["members"]} == {30}
    assert json.loads((workdir / "config.json").read_text())["training"]["new_option"] == 0

    assert jaxnn.load_predictor(workdir).predict(x).shape == before.shape
    assert jaxnn.load_model(workdir).config.later.enabled is False

    target = _config(data_dir)
    target.init_from.workdir = str(workdir)
    transferred = jaxnn.run(target, tmp_path / "target", progress=False, out=io.StringIO())
    assert {m["final_step"] for m in transferred["members"]} == {20}


def test_a_config_json_lacking_current_fields_resumes(written, tmp_path, data_dir):
    workdir = _copy(written, tmp_path)
    record = json.loads((workdir / "config.json").read_text())
    for section, field in [
        ("model", "dtype"),
        ("optimizer", "ema_decay"),
        ("optimizer", "accumulate_steps"),
        ("restarts", "explode_factor"),
        ("restarts", "schedule"),
    ]:
        del record[section][field]
    del record["compilation_cache"]
    (workdir / "config.json").write_text(json.dumps(record))
    rows = _rows(workdir)

    summary = jaxnn.run(_config(data_dir, steps=30), workdir, progress=False, out=io.StringIO())
    assert {m["final_step"] for m in summary["members"]} == {30}
    assert _rows(workdir) == rows + 2 * 2  # members x splits at step 30
    assert jaxnn.load_predictor(workdir).best_member == summary["best_member"]
