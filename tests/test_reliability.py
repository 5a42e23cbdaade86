"""The reliability mechanisms from Python: every entry point validates like the launcher, the
integer ranges, the run-file readers, a torn metrics row resumed bit-identical, data rebuilt.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from forked_launch import forked_launch
from helpers import blobs, small_config

import jaxnn
from jaxnn import data as data_lib
from jaxnn import runner
from jaxnn.config import fields, schema
from jaxnn.errors import ConfigError, DataError, JaxnnError, WorkdirError
from jaxnn.io import run_readers, workdir
from jaxnn.nn import registry

REPO = Path(__file__).resolve().parent.parent
KEY = jax.random.PRNGKey(0)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 3))
LABELS = np.arange(60) % 3


def _regression() -> data_lib.Dataset:
    return jaxnn.from_arrays(X[:50], X[:50].sum(1), X[50:], X[50:].sum(1), task="regression")


# (what, call, error type, fragment of the one-line message)
API_CASES = [
    ("fit_ensemble restarts.num 0", lambda: jaxnn.fit_ensemble(small_config(**{"restarts.num": 0}), blobs(), KEY), ConfigError, "restarts.num must be an integer in [1,"),
    ("fit_ensemble restarts.num -3", lambda: jaxnn.fit_ensemble(small_config(**{"restarts.num": -3}), blobs(), KEY), ConfigError, "restarts.num"),
    ("fit_ensemble an int key", lambda: jaxnn.fit_ensemble(small_config(), blobs(), 0), ConfigError, "key must be a JAX random key"),
    ("fit an int key", lambda: jaxnn.fit(small_config(), blobs(), 7), ConfigError, "key must be a JAX random key"),
    ("fit_variants a float key", lambda: jaxnn.fit_variants(small_config(), blobs(), np.zeros(2)), ConfigError, "key must be a JAX random key"),
    ("fit a batch of keys", lambda: jaxnn.fit(small_config(), blobs(), jax.random.split(KEY, 3)), ConfigError, "key must be a JAX random key"),
    ("fit_ensemble batch larger than train", lambda: jaxnn.fit_ensemble(small_config(**{"training.batch_size": 10000}), blobs(), KEY), ConfigError, "larger than the training split"),
    ("fit_ensemble swept dropout 1.5", lambda: jaxnn.fit_ensemble(small_config(), blobs(), KEY, sweep={"model.dropout": [0.0, 1.5]}), ConfigError, "model.dropout must be in [0, 1)"),
    ("fit_ensemble cross-entropy on regression", lambda: jaxnn.fit_ensemble(small_config(), _regression(), KEY), ConfigError, "needs a classification data set"),
    ("fit seed 2**64", lambda: jaxnn.fit(small_config(seed=2**64), blobs(), KEY), ConfigError, "seed must be an integer in [0, 4294967295]"),
    ("fit a dict config", lambda: jaxnn.fit(small_config().to_dict(), blobs(), KEY), ConfigError, "config must be an ml_collections.ConfigDict"),
    ("fit a config lacking fields", lambda: jaxnn.fit(ml_collections.ConfigDict({"seed": 0}), blobs(), KEY), ConfigError, "config has no field "),
    ("fit arrays as data", lambda: jaxnn.fit(small_config(), (X, LABELS), KEY), DataError, "data must be a jaxnn.Dataset"),
    ("fit_variants restarts.num 0", lambda: jaxnn.fit_variants(small_config(**{"restarts.num": 0}), blobs(), KEY), ConfigError, "restarts.num"),
    ("from_arrays a single class", lambda: jaxnn.from_arrays(X, LABELS * 0, X[:9], LABELS[:9] * 0, task="classification"), DataError, "single class"),
    ("from_arrays ragged rows", lambda: jaxnn.from_arrays([[1.0, 2.0], [3.0]] * 10, [0, 1] * 10, [[1.0, 2.0]], [0], task="classification"), DataError, "ragged"),
    ("from_arrays zero-width features", lambda: jaxnn.from_arrays(np.zeros((60, 0)), LABELS, np.zeros((9, 0)), LABELS[:9], task="classification"), DataError, "no features"),
    ("from_arrays zero-width targets", lambda: jaxnn.from_arrays(X, np.zeros((60, 0)), X[:9], np.zeros((9, 0)), task="regression"), DataError, "no targets"),
    ("from_arrays split_seed -1", lambda: jaxnn.from_arrays(X, LABELS, X[:9], LABELS[:9], task="classification", split_seed=-1), ConfigError, "split_seed must be an integer in [0, 4294967295]"),
    ("from_arrays split_seed 1.5", lambda: jaxnn.from_arrays(X, LABELS, X[:9], LABELS[:9], task="classification", split_seed=1.5), ConfigError, "split_seed must be an integer"),
    ("from_arrays train_per_class -2", lambda: jaxnn.from_arrays(X, LABELS, X[:9], LABELS[:9], task="classification", train_per_class=-2), ConfigError, "train_per_class must be an integer"),
    ("from_arrays standardize 'no'", lambda: jaxnn.from_arrays(X, LABELS, X[:9], LABELS[:9], task="classification", standardize="no"), ConfigError, "standardize must be True or False"),
    ("from_arrays features 1e300 unstandardized", lambda: jaxnn.from_arrays(X * 1e300, LABELS, X[:9], LABELS[:9], task="classification", standardize=False), DataError, "pass standardize=True"),
    ("from_arrays features 1e30 unstandardized", lambda: jaxnn.from_arrays(X * 1e30, LABELS, X[:9], LABELS[:9], task="classification", standardize=False), DataError, "in magnitude"),
    ("from_arrays targets near 1e200", lambda: jaxnn.from_arrays(X, 1e200 + X[:, 0] * 1e199, X[:9], 1e200 + X[:9, 0], task="regression"), DataError, "in magnitude"),
    ("fit_ensemble a searched shift as long as the input", lambda: jaxnn.fit_ensemble(small_config(**{"restarts.search": "augment.shift=uniform(6, 6)", "restarts.num": 2}), blobs(), KEY), ConfigError, "augment.shift=6 is not smaller than the input length 6"),
    ("fit a config with a search", lambda: jaxnn.fit(small_config(**{"restarts.search": "optimizer.learning_rate=loguniform(0.01, 0.1)", "restarts.num": 4}), blobs(), KEY), ConfigError, "jaxnn.fit trains one model, but restarts.search draws optimizer.learning_rate"),
    ("fit a config with a numeric sweep", lambda: jaxnn.fit(small_config(**{"restarts.sweep": "optimizer.learning_rate=[0.01, 0.1]"}), blobs(), KEY), ConfigError, "restarts.sweep varies optimizer.learning_rate: use jaxnn.fit_ensemble"),
    ("run arrays and a csv name", lambda: jaxnn.run(small_config(**{"dataset.name": "csv:tests/files/blobs.csv"}), "unused", data=blobs()), ConfigError, "names a data file too: train on one of them"),
    ("run a dict config", lambda: jaxnn.run(small_config().to_dict(), "unused"), ConfigError, "config must be an ml_collections.ConfigDict"),
    ("run workdir None", lambda: jaxnn.run(small_config(), None), ConfigError, "--workdir is required"),
    ("run workdir 3", lambda: jaxnn.run(small_config(), 3), ConfigError, "workdir must be a path"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "call", "error", "fragment"), API_CASES, ids=[c[0] for c in API_CASES]
)
def test_the_python_api_refuses_with_one_line(what, call, error, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert fragment in message and "\n" not in message, message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_integer_field_of_the_schema_has_a_range():
    config = schema.default_config()
    # the model's integer fields have theirs in their families' specs
    model_ranges = [spec.rule for spec in registry.model_fields_by_name().values()]
    entries = [
        *fields.INTEGER_FIELDS,
        *(r for r in model_ranges if isinstance(r, fields.IntegerField)),
    ]
    ranged = {entry.field for entry in entries}

    def integers(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                yield from integers(value, f"{prefix}{key}.")
            elif isinstance(value, int) and not isinstance(value, bool):
                yield f"{prefix}{key}"

    assert set(integers(config)) <= ranged
    for entry in entries:
        assert entry.problem([entry.low] if entry.each else entry.low) is None
        assert entry.problem([entry.high + 1] if entry.each else entry.high + 1) is not None
        assert entry.problem([entry.low - 1] if entry.each else entry.low - 1) is not None


@pytest.mark.parametrize(
    "path",
    [
        "~nosuchuser_jaxnn/run",
        "/tmp/" + "x" * 300 + "/run",
        "/tmp/" + "y" * 200 + "/" * 0 + ("/z" * 2100),
    ],
)
def test_unusable_workdir_paths_are_one_line(path):
    with pytest.raises(ConfigError) as raised:
        workdir.check_workdir(path)
    assert "\n" not in str(raised.value)


def test_the_summary_reader_refuses_what_jaxnn_never_writes(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"steps": 1e999}')
    with pytest.raises(WorkdirError, match=r"Infinity|must be an integer"):
        run_readers.read_summary(path)
    path.write_text(json.dumps({"steps": 10, "dataset": {"num_train": 5}, "best_member": 0}))
    with pytest.raises(WorkdirError, match="lacks the field 'selected_by'; pass --overwrite"):
        run_readers.read_summary(path)


def test_a_torn_last_line_is_dropped_and_only_that(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 10, "member": 0, "split": s, "loss": 1.0} for s in ("train", "val")]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + '{"step": 20, "member": 0, "spl')
    read = run_readers.read_appended(path)
    assert read.torn and read.rows == rows and read.evaluated() == {0: {10}}
    path.write_text(text + '{"step": 20}\n')  # whole but malformed: damage, not a tear
    with pytest.raises(WorkdirError, match="line 3 is not a row jaxnn writes"):
        run_readers.read_appended(path)


def _launch(workdir: Path, data_dir: str, *extra: str) -> subprocess.CompletedProcess:
    """`python launch.py` at smoke size, forked (tests/forked_launch.py)."""
    return forked_launch(
        [
            "--config=experiments/mnist1d_mlp.py:smoke",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
            *extra,
        ],
        timeout=600,
    )


def test_a_torn_metrics_row_is_computed_again_and_the_run_ends_bit_identical(tmp_path, data_dir):
    reference, torn = tmp_path / "reference", tmp_path / "torn"
    assert _launch(reference, data_dir).returncode == 0
    shutil.copytree(reference, torn)
    # A run killed after its last checkpoint, its last metrics row torn.
    (torn / "summary.json").unlink()
    (torn / "report.md").unlink()
    text = (torn / "metrics.jsonl").read_text()
    (torn / "metrics.jsonl").write_text(text[:-30])
    relaunch = _launch(torn, data_dir)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert "lacks its rows" in relaunch.stdout and "(step 20)" in relaunch.stdout
    assert (torn / "metrics.jsonl").read_text() == text
    summaries = [json.loads((d / "summary.json").read_text()) for d in (reference, torn)]
    for summary in summaries:
        summary.pop("timing")
    assert summaries[0] == summaries[1]


def test_a_damaged_prepared_data_set_is_named_and_rebuilt(tmp_path, data_dir, dataset_config):
    data_lib.load(dataset_config("digits"))  # prepared in the shared data_dir first
    copy = tmp_path / "data"
    shutil.copytree(Path(data_dir) / "digits", copy / "digits")
    config = dataset_config("digits", data_dir=str(copy))
    expected = data_lib.load(config)
    prepared = data_lib.builders.prepared_dir("digits", str(copy))
    for record_file in prepared.glob("*train.array_record*"):
        record_file.write_bytes(bytes(record_file.stat().st_size))
    with pytest.raises(DataError, match=f"prepared in {prepared} cannot be read") as raised:
        data_lib.load(config)
    assert "--config.dataset.rebuild=True" in str(raised.value)
    config.rebuild = True
    rebuilt = data_lib.load(config)
    np.testing.assert_array_equal(rebuilt.x_train, expected.x_train)
    np.testing.assert_array_equal(rebuilt.y_test, expected.y_test)


def test_a_workdir_with_a_damaged_file_is_refused_before_anything_is_deleted(tmp_path, data_dir):
    config = small_config()
    config.dataset.data_dir = data_dir
    config.training.steps = 20
    run_dir = tmp_path / "run"
    runner.run(config, run_dir, progress=False, out=io.StringIO())
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"member": 0}\n')
    before = {p.name for p in run_dir.iterdir()}
    config.training.steps = 40
    with pytest.raises(JaxnnError, match=r"metrics\.jsonl is damaged"):
        runner.run(config, run_dir, progress=False, out=io.StringIO())
    assert {p.name for p in run_dir.iterdir()} == before


def test_a_feature_whose_square_overflows_is_kept_not_standardised_to_zeros():
    """Finite float64 features near 1e300: their spread overflows a plain std (inf, which made
    the feature all zeros); it is computed on the rescaled column, so the feature is kept."""
    x = X.copy()
    x[:, 1] *= 1e300
    data = jaxnn.from_arrays(x[:50], LABELS[:50], x[50:], LABELS[50:], task="classification")
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, rtol=1e-5)
    plain = jaxnn.from_arrays(X[:50], LABELS[:50], X[50:], LABELS[50:], task="classification")
    np.testing.assert_allclose(data.x_train[:, 1], plain.x_train[:, 1], rtol=1e-5, atol=1e-6)


def test_a_search_too_large_to_draw_is_refused_before_a_point_is_drawn(monkeypatch):
    """The points' memory is checked against the machine's in constant time, before drawing."""
    from jaxnn.config import search

    monkeypatch.setattr(search, "machine_bytes", lambda: 2**20)
    drawn = []
    monkeypatch.setattr(search, "unit_points", lambda *args: drawn.append(args))
    config = small_config(**{"restarts.search": "model.dropout=uniform(0, 0.5)"})
    config.restarts.num = 10**6
    with pytest.raises(ConfigError, match=r"restarts.num=1000000 points of restarts.search"):
        jaxnn.validate(config)
    assert drawn == []


@pytest.mark.slow
def test_a_run_with_home_unwritable_prints_only_jaxnns_own_line(tmp_path, data_dir):
    """matplotlib's two absl-format warnings about its config directory (it falls back on a
    temporary one, which is all a run's plots need) are held back; jaxnn's own line stays."""
    (tmp_path / "a_file").write_text("HOME lies under a plain file: nothing can be made there\n")
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--config=experiments/mnist1d_mlp.py:smoke",
            f"--workdir={tmp_path / 'run'}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path / "a_file" / "home")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("jaxnn: warning: ") for line in lines), result.stderr[-3000:]


_BAD_VALUES = {
    fields.Choice: "nonsense",
    fields.Flag: "yes",
    fields.Finite: -1.0,
    fields.Text: 3,
    fields.MemberName: "first",
}


@pytest.mark.parametrize("rule", fields.OTHER_FIELDS, ids=lambda rule: rule.field)
def test_every_field_rule_is_enforced_with_its_one_line(rule):
    """Each single-field rule of `FIELD_RULES` (beyond the integer ranges above) refuses a bad
    value of its field in one line, its own, before anything is built."""
    config = schema.default_config()
    *parents, leaf = rule.field.split(".")
    section = config
    for part in parents:
        section = section[part]
    bad = _BAD_VALUES[type(rule)]
    with section.ignore_type():
        section[leaf] = bad
    with pytest.raises(ConfigError) as raised:
        jaxnn.validate(config)
    assert str(raised.value) == rule.problem(bad)
    assert rule.field in str(raised.value) and "\n" not in str(raised.value)
