"""Predictions on raw inputs: the Predictor of fit / fit_ensemble / fit_variants / run, reloaded
in a new process, labels encoded like scikit-learn, own arrays end to end, npz / csv files,
results as DataFrames, and the bad input of each."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from forked_launch import forked_launch
from helpers import small_config

import jaxnn
from jaxnn import data as data_lib
from jaxnn.core import ensemble
from jaxnn.data import fingerprint
from jaxnn.errors import CheckpointError, ConfigError, DataError, JaxnnError
from jaxnn.io import export
from jaxnn.predict.predictor import Predictor
from jaxnn.reporting import summary as summary_lib

REPO = Path(__file__).resolve().parent.parent
LABELS = np.array(["setosa", "versicolor", "virginica"])


def raw_problem(seed: int = 0, num: int = 150, labels=LABELS):
    """Raw (unstandardised, offset and scaled) features of three blobs with string labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 5)) * 3
    y = rng.integers(0, 3, size=num)
    x = (centres[y] + rng.normal(size=(num, 5))) * [1, 10, 100, 0.1, 5] + [0, 50, -300, 2, 7]
    return x, np.asarray(labels)[y]


def raw_regression(seed: int = 0, num: int = 120):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, 4)) * [1, 5, 20, 0.5] + 10
    y = x @ np.array([2.0, -0.5, 0.1, 3.0]) + 100 + rng.normal(size=num)
    return x, y


@pytest.fixture(scope="module")
def classification():
    x, y = raw_problem()
    data = jaxnn.from_arrays(x[:110], y[:110], x[110:], y[110:], task="classification")
    result = jaxnn.fit_ensemble(small_config(**{"restarts.num": 3}), data, jax.random.PRNGKey(0))
    return data, result, x[110:], y[110:]


@pytest.fixture(scope="module")
def regression():
    x, y = raw_regression()
    data = jaxnn.from_arrays(x[:90], y[:90], x[90:], y[90:], task="regression")
    config = small_config(**{"restarts.num": 2, "loss": "mse", "training.steps": 60})
    result = jaxnn.fit_ensemble(config, data, jax.random.PRNGKey(0))
    return data, result, x[90:], y[90:]


# --- labels like scikit-learn ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        ([1, 2, 3], [1, 2, 3]),
        ([0, 1, 9], [0, 1, 9]),
        ([-4, 7, 2], [-4, 2, 7]),
        (["cat", "ant", "dog"], ["ant", "cat", "dog"]),
        ([2.0, 5.0, 3.0], [2, 3, 5]),
        ([True, False, True], [False, True]),
    ],
)
def test_labels_are_encoded_in_sorted_order_and_kept(labels, classes):
    x, _ = raw_problem(num=60)
    y = np.asarray(labels)[np.arange(60) % len(labels)]
    data = jaxnn.from_arrays(x[:40], y[:40], x[40:], y[40:], task="classification")
    assert data.num_classes == len(classes) == data.num_outputs
    assert data.classes.tolist() == classes
    np.testing.assert_array_equal(data.classes[data.y_test], y[40:])
    train_idx, _ = data_lib.validation_split(40, 0.1, 0)
    np.testing.assert_array_equal(data.classes[data.y_train], y[:40][train_idx])


def test_a_class_subset_is_named_by_its_labels_in_the_given_order():
    x, y = raw_problem(num=90)
    data = jaxnn.from_arrays(
        x[:60], y[:60], x[60:], y[60:], task="classification", classes=("virginica", "setosa")
    )
    assert data.classes.tolist() == ["virginica", "setosa"]
    keep = np.isin(y[60:], ["virginica", "setosa"])
    np.testing.assert_array_equal(data.classes[data.y_test], y[60:][keep])
    with pytest.raises(ConfigError, match="'daisy', which is not a label of the arrays"):
        jaxnn.from_arrays(x, y, x, y, task="classification", classes=("daisy", "setosa"))


# --- the predictor of a result --------------------------------------------------------------


def test_predictions_on_raw_inputs_are_those_of_the_standardised_test_split(classification):
    data, result, x_test, y_test = classification
    predictor = result.predictor()
    assert predictor is result.predictor()  # built once
    assert predictor.classes_.tolist() == LABELS.tolist()
    assert predictor.num_members == 3 and predictor.n_features_in_ == 5
    _, probabilities = ensemble.evaluate_members(
        result.state, result.program, data.x_test, data.y_test
    )
    best = predictor.best_member
    np.testing.assert_allclose(predictor.predict_proba(x_test), probabilities[best], atol=1e-6)
    np.testing.assert_allclose(
        predictor.predict_proba(x_test, member=1), probabilities[1], atol=1e-6
    )
    np.testing.assert_allclose(
        result.predict_proba(x_test, member="ensemble"), probabilities.mean(axis=0), atol=1e-6
    )
    labels = result.predict(x_test)
    assert labels.dtype.kind == "U"
    np.testing.assert_array_equal(labels, LABELS[np.argmax(probabilities[best], axis=1)])
    assert result.score(x_test, y_test) == pytest.approx(np.mean(labels == y_test))


def test_the_best_member_is_the_one_the_summary_selects(classification):
    data, result, _, _ = classification
    summary, _ = summary_lib.summarize(result, result.config, data)
    assert result.predictor().best_member == summary["best_member"]


def test_evaluate_gives_every_metric_of_the_run(classification):
    data, result, x_test, y_test = classification
    metrics, _ = ensemble.evaluate_members(result.state, result.program, data.x_test, data.y_test)
    for member in range(3):
        evaluated = result.evaluate(x_test, y_test, member=member)
        assert set(evaluated) == {"loss", "accuracy"}
        assert evaluated["loss"] == pytest.approx(metrics["loss"][member], rel=1e-5)
        assert evaluated["accuracy"] == pytest.approx(metrics["accuracy"][member])
    ensemble_metrics = result.evaluate(x_test, y_test, member="ensemble")
    assert ensemble_metrics["accuracy"] == pytest.approx(
        result.score(x_test, y_test, member="ensemble")
    )


def test_diverged_members_are_left_out_of_the_ensemble(classification):
    _, result, x_test, _ = classification
    predictor = result.predictor()
    diverged = np.array([False, True, False])
    masked = Predictor(
        predictor.groups,
        preprocessing=predictor.preprocessing,
        diverged=diverged,
        best_member=0,
        config=predictor.config,
    )
    expected = (
        predictor.predict_proba(x_test, member=0) + predictor.predict_proba(x_test, member=2)
    ) / 2
    np.testing.assert_allclose(masked.predict_proba(x_test, member="ensemble"), expected)


def test_batches_give_the_same_predictions_as_one_call(classification):
    _, result, x_test, _ = classification
    predictor = result.predictor()
    small = Predictor(
        predictor.groups,
        preprocessing=predictor.preprocessing,
        diverged=predictor.diverged,
        best_member=predictor.best_member,
        config=predictor.config,
        batch_size=7,
    )
    x = np.concatenate([x_test] * 3)
    np.testing.assert_allclose(
        small.predict_proba(x, member="ensemble"),
        predictor.predict_proba(x, member="ensemble"),
        atol=1e-6,
    )


def test_regression_predictions_are_in_target_units(regression):
    data, result, x_test, y_test = regression
    from sklearn.metrics import r2_score

    _, outputs = ensemble.evaluate_members(result.state, result.program, data.x_test, data.y_test)
    best = result.predictor().best_member
    expected = outputs[best][:, 0] * data.target_std[0] + data.target_mean[0]
    predictions = result.predict(x_test)
    assert predictions.shape == (len(x_test),)
    np.testing.assert_allclose(predictions, expected, rtol=1e-4)
    assert result.score(x_test, y_test) == pytest.approx(r2_score(y_test, predictions), abs=1e-4)
    assert result.predictor().classes_ is None
    assert set(result.evaluate(x_test, y_test)) == {"loss", "r2", "rmse"}


def test_fit_and_fit_variants_predict_too(classification):
    data, _, x_test, y_test = classification
    single = jaxnn.fit(small_config(), data, jax.random.PRNGKey(3))
    assert single.predictor().num_members == 1
    assert single.predict(x_test).shape == (len(x_test),)
    runs = jaxnn.fit_variants(
        small_config(), data, jax.random.PRNGKey(0), sweep={"model.hidden": [(8,), (16, 16)]}
    )
    predictor = runs.predictor()
    assert predictor.num_members == 2 and len(predictor.params) == 2
    np.testing.assert_allclose(
        predictor.predict_proba(x_test, member=1),
        runs[1].result.predict_proba(x_test, member=0),
        atol=1e-6,
    )
    assert 0 <= runs.score(x_test, y_test, member="ensemble") <= 1


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda p, x, y: p.predict(x[:, :4]), DataError, r"shape \(40, 4\) but the model takes"),
        (lambda p, x, y: p.predict(x[0]), DataError, "but the model takes x"),
        (lambda p, x, y: p.predict(np.where(x > 50, np.nan, x)), DataError, "NaN or infinite"),
        (lambda p, x, y: p.predict(x * np.inf), DataError, "NaN or infinite"),
        (lambda p, x, y: p.predict(x.astype(str)), DataError, "real numbers"),
        (
            lambda p, x, y: p.score(x, np.where(y == "setosa", "daisy", y)),
            DataError,
            "label 'daisy', which is not a class the model knows",
        ),
        (lambda p, x, y: p.score(x, y[:3]), DataError, "x has 40 rows but y has 3"),
        (lambda p, x, y: p.predict(x, member=3), ConfigError, "member=3 is out of range"),
        (lambda p, x, y: p.predict(x, member=-1), ConfigError, "member=-1 is out of range"),
        (lambda p, x, y: p.predict(x, member="worst"), ConfigError, "member must be"),
        (lambda p, x, y: p.predict_proba(x * 1e300), DataError, "in magnitude as the model sees"),
        (lambda p, x, y: p.predict(x + 1e300), DataError, "on the scale of the training data"),
        (lambda p, x, y: p.score(x, 3), DataError, "one label or target per row of x"),
        (lambda p, x, y: p.score(3, y), DataError, r"x has shape \(\) but the model takes"),
    ],
)
def test_bad_input_to_a_predictor_is_one_line(classification, call, error, message):
    _, result, x_test, y_test = classification
    with pytest.raises(error, match=message) as info:
        call(result.predictor(), x_test, y_test)
    assert "\n" not in str(info.value)


def test_a_regressor_scored_on_strings_is_one_line(regression):
    _, result, x_test, y_test = regression
    with pytest.raises(DataError, match="y must hold real numbers") as info:
        result.predictor().score(x_test, y_test.astype(str))
    assert "\n" not in str(info.value)


def test_predict_proba_on_a_regressor_is_refused(regression):
    _, result, x_test, _ = regression
    with pytest.raises(ConfigError, match="predict_proba needs a classification model"):
        result.predict_proba(x_test)


# --- own arrays end to end, reloaded in a new process ---------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def arrays_run(tmp_path_factory):
    x, y = raw_problem(seed=1)
    data = jaxnn.from_arrays(x[:110], y[:110], x[110:], y[110:], task="classification", name="iris")
    workdir = tmp_path_factory.mktemp("arrays") / "run"
    config = small_config(**{"restarts.num": 2, "tensorboard.enabled": False})
    summary = jaxnn.run(config, workdir, data=data, progress=False)
    return config, data, workdir, summary, x[110:], y[110:]


def test_run_takes_own_arrays_and_records_them(arrays_run):
    _, data, workdir, summary, x_test, y_test = arrays_run
    for name in ("best", "checkpoints", "summary.json", "report.md", "plots", "data.json"):
        assert (workdir / name).exists(), name
    assert json.loads((workdir / "config.json").read_text())["dataset"]["name"] == "arrays:iris"
    recorded = json.loads((workdir / "data.json").read_text())
    assert recorded == fingerprint.fingerprint(data)
    metadata = export.best_metadata(workdir)
    assert metadata["config"]["dataset"]["name"] == "arrays:iris"
    assert metadata["data"]["sha256"] == recorded["sha256"]
    assert summary["dataset"]["name"] == "iris"
    assert summary.score(x_test, y_test) == pytest.approx(summary["best"]["test_accuracy"])


def test_a_reloaded_predictor_predicts_identically_in_a_new_process(arrays_run, tmp_path):
    _, _, workdir, summary, x_test, _ = arrays_run
    np.save(tmp_path / "x.npy", x_test)
    script = textwrap.dedent(
        f"""
        import numpy as np, jaxnn
        x = np.load({str(tmp_path / "x.npy")!r})
        for name, path in (("workdir", {str(workdir)!r}), ("best", {str(workdir / "best")!r})):
            predictor = jaxnn.load_predictor(path)
            np.save({str(tmp_path)!r} + f"/{{name}}_proba.npy", predictor.predict_proba(x))
            np.save({str(tmp_path)!r} + f"/{{name}}_labels.npy", predictor.predict(x))
        predictor = jaxnn.load_predictor({str(workdir)!r})
        np.save({str(tmp_path)!r} + "/ensemble.npy", predictor.predict_proba(x, member="ensemble"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    here = summary.predictor()
    for name in ("workdir", "best"):
        np.testing.assert_array_equal(
            np.load(tmp_path / f"{name}_proba.npy"), here.predict_proba(x_test)
        )
        np.testing.assert_array_equal(
            np.load(tmp_path / f"{name}_labels.npy"), here.predict(x_test)
        )
    np.testing.assert_array_equal(
        np.load(tmp_path / "ensemble.npy"), here.predict_proba(x_test, member="ensemble")
    )


def test_a_relaunch_with_other_arrays_is_refused_and_changes_nothing(arrays_run):
    config, data, workdir, summary, _, _ = arrays_run
    before = _snapshot(workdir)
    x, y = raw_problem(seed=2)
    other = jaxnn.from_arrays(
        x[:110], y[:110], x[110:], y[110:], task="classification", name="iris"
    )
    with pytest.raises(DataError, match=r"holds a run of other data: .*other values") as info:
        jaxnn.run(config, workdir, data=other, progress=False)
    assert "\n" not in str(info.value)
    fewer = jaxnn.from_arrays(
        x[:100], y[:100], x[110:], y[110:], task="classification", name="iris"
    )
    with pytest.raises(DataError, match=r"x_train is \[99, 5\] float32 there but \[90, 5\]"):
        jaxnn.run(config, workdir, data=fewer, progress=False)
    assert _snapshot(workdir) == before
    again = jaxnn.run(config, workdir, data=data, progress=False)
    assert again["best_member"] == summary["best_member"]
    assert _snapshot(workdir) == before


def test_a_run_of_arrays_cannot_be_relaunched_without_them(arrays_run):
    config, _, workdir, _, _, _ = arrays_run
    names_arrays = small_config(**{"restarts.num": 2, "tensorboard.enabled": False})
    names_arrays.dataset.name = "arrays:iris"
    with pytest.raises(DataError, match="names arrays given from Python"):
        jaxnn.run(names_arrays, workdir.parent / "elsewhere", progress=False)
    with pytest.raises(ConfigError, match="data must be a jaxnn Dataset"):
        jaxnn.run(config, workdir, data=(1, 2), progress=False)


def test_load_predictor_of_nothing_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="holds no jaxnn run"):
        jaxnn.load_predictor(tmp_path)


# --- npz and csv files ----------------------------------------------------------------------


def _file_config(name: str, **fields):
    config = jaxnn.default_config().dataset
    config.name = name
    for field, value in fields.items():
        config[field] = value
    return config


def test_an_npz_with_its_own_test_split_keeps_it(tmp_path):
    x, y = raw_problem(num=80)
    np.savez(
        tmp_path / "d.npz", x_train=x[:60], label_train=y[:60], x_test=x[60:], label_test=y[60:]
    )
    data = jaxnn.load_dataset(_file_config(f"npz:{tmp_path / 'd.npz'}", target="label"))
    expected = jaxnn.from_arrays(x[:60], y[:60], x[60:], y[60:], task="classification")
    np.testing.assert_array_equal(data.x_test, expected.x_test)
    np.testing.assert_array_equal(data.classes, LABELS)


def test_an_npz_file_takes_the_permuted_positions_of_permute_seed(tmp_path):
    x, y = raw_problem(num=80)
    np.savez(tmp_path / "d.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    plain = jaxnn.load_dataset(_file_config(f"npz:{tmp_path / 'd.npz'}"))
    permuted = jaxnn.load_dataset(_file_config(f"npz:{tmp_path / 'd.npz'}", permute_seed=5))
    order = jaxnn.data.dataset.position_permutation(x.shape[1], 5)
    assert (order != np.arange(x.shape[1])).any()
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(
            getattr(permuted, f"x_{split}"), getattr(plain, f"x_{split}")[:, order], atol=1e-6
        )


def test_a_file_without_a_test_split_has_one_carved(tmp_path):
    x, y = raw_regression(num=100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = jaxnn.load_dataset(_file_config(f"npz:{tmp_path / 'd.npz'}", test_fraction=0.25))
    assert data.task == "regression" and data.num_test == 25 and data.num_train + data.num_val == 75
    test_rows = {row.tobytes() for row in data.x_test}
    assert not any(row.tobytes() in test_rows for row in data.x_train)
    again = jaxnn.load_dataset(_file_config(f"npz:{tmp_path / 'd.npz'}", test_fraction=0.25))
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_a_csv_names_its_target_column(tmp_path):
    x, y = raw_problem(num=50)
    lines = ["a,species,b,c,d,e"] + [
        f"{r[0]},{label},{r[1]},{r[2]},{r[3]},{r[4]}" for r, label in zip(x, y)
    ]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    data = jaxnn.load_dataset(_file_config(f"csv:{tmp_path / 'd.csv'}", target="species"))
    assert data.task == "classification" and data.classes.tolist() == LABELS.tolist()
    assert data.feature_names == ("a", "b", "c", "d", "e")
    assert data.num_train + data.num_val + data.num_test == 50


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        (None, {}, "no file"),
        (b"not a zip", {}, "it is not a zip archive"),
        ("arrays x and label", {}, "lacks the target 'y'"),
    ],
)
def test_bad_npz_files_are_one_line(tmp_path, content, fields, message):
    path = tmp_path / "d.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content:
        np.savez(path, x=np.zeros((4, 2)), label=np.arange(4))
    with pytest.raises(DataError, match=message) as info:
        jaxnn.load_dataset(_file_config(f"npz:{path}", **fields))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "fields", "message"),
    [
        ("a,b,y\n1,2,0\n3,4\n", {}, "is ragged: line 3 has 2 fields but the header has 3"),
        ("a,b,y\n1,2,0\n3,4,1\n", {"target": "label"}, "has no target column 'label'"),
        (
            "a,b,y\n1,red,0\n3,4,1\n",
            {},
            "line 2, feature column 'b' holds 'red', not a finite number",
        ),
        ("a,b,y\n", {}, "needs a header row and at least one row"),
    ],
)
def test_bad_csv_files_are_one_line(tmp_path, text, fields, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        jaxnn.load_dataset(_file_config(f"csv:{path}", **fields))
    assert "\n" not in str(info.value)


# --- DataFrames -----------------------------------------------------------------------------


def test_members_and_history_as_dataframes(arrays_run, classification):
    pandas = pytest.importorskip("pandas")
    _, _, workdir, summary, _, _ = arrays_run
    members = jaxnn.members_frame(workdir)
    assert isinstance(members, pandas.DataFrame) and list(members.index) == [0, 1]
    assert members["selected"].tolist() == [i == summary["best_member"] for i in (0, 1)]
    assert members["val_loss"].tolist() == [m["val_loss"] for m in summary["members"]]
    history = summary.history_frame()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["split"] == "val"]
    assert len(history) == len(val)
    assert history["val_loss"].tolist() == [
        r["loss"] for r in sorted(val, key=lambda r: (r["step"], r["member"]))
    ]
    _, result, _, _ = classification
    frame = jaxnn.members_frame(result)
    assert len(frame) == 3 and frame["selected"].sum() == 1
    assert len(jaxnn.history_frame(result)) == 3 * len(result.history)


def test_dataframes_without_pandas_say_how_to_install_it(arrays_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(JaxnnError, match=r"pip install 'jaxnn\[pandas\]'"):
        jaxnn.members_frame(arrays_run[2])


@pytest.mark.slow
def test_a_csv_edited_under_the_same_name_is_refused_by_the_launcher(tmp_path):
    csv_path = tmp_path / "blobs.csv"
    csv_path.write_text((REPO / "tests" / "files" / "blobs.csv").read_text())
    workdir = tmp_path / "run"
    command = [  # `python launch.py ...`, forked (tests/forked_launch.py)
        "--config=experiments/mnist1d_mlp.py:smoke",
        f"--workdir={workdir}",
        f"--config.dataset.name=csv:{csv_path}",
        "--config.dataset.target=kind",
        "--config.training.steps=20",
        "--config.training.eval_every=10",
        "--config.training.batch_size=16",
        "--config.tensorboard.enabled=False",
        "--noprogress",
    ]
    first = forked_launch(command)
    assert first.returncode == 0, first.stderr[-2000:]
    predictor = jaxnn.load_predictor(workdir / "best")
    assert predictor.classes_.tolist() == ["ant", "bee", "cat"]
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines[:-10]) + "\n")
    before = _snapshot(workdir)
    again = forked_launch(command)
    errors = [line for line in again.stderr.splitlines() if line.strip()]
    assert again.returncode == 2 and len(errors) == 1, again.stderr[-2000:]
    assert "holds a run of other data: x_train is" in errors[0]
    assert _snapshot(workdir) == before


@pytest.mark.slow  # tests/test_docs.py runs the same blocks in the slow tier too
def test_the_python_blocks_of_docs_python_md_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)
    assert len(blocks) >= 3
    script = "\n\n".join(
        f"def block_{i}():\n{textwrap.indent(b, '    ')}" for i, b in enumerate(blocks)
    )
    script += "\n" + "\n".join(f"block_{i}()" for i in range(len(blocks)))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
