"""A user's own flax.linen model through the same vmapped trainer: random starts x a sweep into
a workdir, a SIGKILL and a bit-identical resume, the exported best member reloaded, its body
transferred to a new head, a user metric selecting the best member, and bad components
refused before anything is written."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import user_cnn
from helpers import blobs, small_config

from jaxnn import data as data_lib
from jaxnn.core import ensemble, loop, train
from jaxnn.errors import JaxnnError
from jaxnn.io import checkpoint, export

REPO = Path(__file__).resolve().parent.parent


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _summary(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    summary.pop("timing")
    return summary


def _last_checkpoint(workdir: Path):
    reader = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    try:
        step = reader.steps()[-1]
        shapes = {name: reader.shapes(step, name) for name in checkpoint.state_fields()}
        return step, reader.restore_fields(step, shapes)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """The user's CNN, 4 random starts x 2 learning rates, trained once without interruption."""
    workdir = tmp_path_factory.mktemp("user_cnn") / "run"
    user_cnn.launch(str(workdir), data_dir, out=io.StringIO())
    return workdir


def test_a_user_cnn_trains_random_starts_and_a_sweep_into_a_workdir(reference):
    summary = json.loads((reference / "summary.json").read_text())
    assert len(summary["members"]) == 8
    rates = [m["hparams"]["optimizer.learning_rate"] for m in summary["members"]]
    assert rates == [0.05] * 4 + [0.2] * 4
    assert summary["selected_by"] == "val_top2"
    tops = np.array([m["val_top2"] for m in summary["members"]])
    assert summary["best_member"] == int(np.argmax(tops))  # greater is better
    assert all("test_top2" in m for m in summary["members"])
    assert summary["ensemble"]["test_accuracy"] > 0.2  # it learns (chance is 0.1)
    rows = _rows(reference / "metrics.jsonl")
    assert {"top2", "accuracy", "loss"} <= set(rows[-1])
    assert (reference / "best" / "metadata").exists()
    assert _last_checkpoint(reference)[0] == 120


def _started_training(workdir: Path) -> bool:
    return (workdir / "checkpoints" / "40").is_dir()


@pytest.mark.slow
def test_a_user_model_run_killed_with_sigkill_resumes_bit_identical(reference, tmp_path, data_dir):
    workdir = tmp_path / "run"
    # jaxnn.run keeps a cache set through JAX: the killed child's own, never the user's.
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
    }
    child = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "user_cnn.py"), str(workdir), data_dir],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while child.poll() is None and not _started_training(workdir) and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert not (workdir / "summary.json").exists()

    out = io.StringIO()
    user_cnn.launch(str(workdir), data_dir, out=out)
    assert "resuming from checkpoint" in out.getvalue()
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert _summary(workdir) == _summary(reference)
    step, resumed = _last_checkpoint(workdir)
    reference_step, uninterrupted = _last_checkpoint(reference)
    assert step == reference_step
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed, uninterrupted)


def test_the_exported_best_member_reloads_with_the_same_test_predictions(reference, data_dir):
    loaded = export.load_model(reference, model=user_cnn.SmallCNN())
    config = user_cnn.config(data_dir)
    dataset = data_lib.load(config.dataset)
    summary = json.loads((reference / "summary.json").read_text())
    accuracy = float(
        np.mean(np.argmax(loaded.apply_standardized(dataset.x_test), -1) == dataset.y_test)
    )
    best = summary["members"][summary["best_member"]]
    np.testing.assert_allclose(accuracy, best["test_accuracy"], atol=1e-6)


def test_reloading_a_user_model_needs_the_model_and_checks_its_shapes(reference):
    with pytest.raises(JaxnnError, match="user's own code"):
        export.load_model(reference)
    with pytest.raises(JaxnnError, match="does not fit the weights"):
        export.load_model(reference, model=user_cnn.SmallCNN(num_classes=7))


def test_feature_extraction_keeps_the_user_body_bit_identical(reference, tmp_path, data_dir):
    from jaxnn import runner

    config = user_cnn.config(data_dir, steps=30)
    config.restarts.select_by = "val_loss"
    config.init_from.workdir = str(reference)
    config.init_from.mode = "feature_extraction"
    config.checkpoint.every_steps = 0
    workdir = tmp_path / "transfer"
    runner.run(config, workdir, model=user_cnn.SmallCNN(), progress=False, out=io.StringIO())
    pretrained = export.load_model(reference, model=user_cnn.SmallCNN()).params
    transferred = export.load_model(workdir, model=user_cnn.SmallCNN())
    for layer in ("conv_0", "conv_1"):
        jax.tree_util.tree_map(
            np.testing.assert_array_equal, transferred.params[layer], pretrained[layer]
        )
    assert not np.array_equal(transferred.params["head"]["kernel"], pretrained["head"]["kernel"])


class TinyNet(nn.Module):
    """A user's MLP-like model whose dropout draws from Flax's 'dropout' RNG stream."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Dense(12, name="body")(x))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(3, name="head")(x)


def test_member_i_of_a_user_model_ensemble_equals_fit_with_its_key():
    data = blobs()
    config = small_config(**{"restarts.num": 2})
    key = jax.random.PRNGKey(3)
    result = ensemble.fit_ensemble(
        config, data, key, model=TinyNet(), sweep={"optimizer.learning_rate": [0.02, 0.1]}
    )
    member = result.members[3]
    assert member.swept == {"optimizer.learning_rate": 0.1}
    single = loop.fit(
        config,
        data,
        train.member_key(key, member.seed_index),
        hparams={"learning_rate": 0.1},
        model=TinyNet(),
    )
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        ensemble.member_state(result.state, 3).params,
        single.state.params,
    )


def test_a_user_loss_metric_optimizer_and_prediction_plug_in():
    data = blobs()
    config = small_config()
    seen = {}

    def loss(outputs, labels):
        return optax.losses.softmax_cross_entropy_with_integer_labels(outputs, labels) * 2.0

    def optimizer(hparams):
        seen["learning_rate"] = hparams["learning_rate"]
        return optax.sgd(hparams["learning_rate"])

    def mean_logit(outputs, labels):
        del labels
        return jnp.mean(outputs)

    def predict(outputs):
        return jax.nn.softmax(outputs / 4.0)  # a temperature: not the built-in softmax

    key = jax.random.PRNGKey(0)
    result = ensemble.fit_ensemble(
        config,
        data,
        key,
        model=TinyNet(),
        loss=loss,
        optimizer=optimizer,
        metrics={"mean_logit": mean_logit},
        predict=predict,
    )
    assert "learning_rate" in seen
    state = ensemble.member_state(result.state, 0)
    outputs = TinyNet().apply({"params": state.params}, jnp.asarray(data.x_val))
    last = result.history[-1]
    # The reported validation loss is the user's (twice the cross-entropy), and so is its metric.
    cross_entropy = optax.losses.softmax_cross_entropy_with_integer_labels(outputs, data.y_val)
    np.testing.assert_allclose(last["val_loss"][0], 2.0 * np.mean(cross_entropy), rtol=1e-5)
    np.testing.assert_allclose(last["val_mean_logit"][0], np.mean(outputs), rtol=1e-5, atol=1e-6)
    # The user's loss is the one differentiated: with SGD, twice the cross-entropy at a learning
    # rate equals the built-in cross-entropy at twice that rate, step for step.
    doubled = small_config(**{"optimizer.learning_rate": 2 * config.optimizer.learning_rate})
    builtin = ensemble.fit_ensemble(
        doubled,
        data,
        key,
        model=TinyNet(),
        optimizer=lambda hparams: optax.sgd(hparams["learning_rate"]),
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        result.state.params,
        builtin.state.params,
    )
    assert not np.allclose(builtin.history[-1]["val_loss"], last["val_loss"], rtol=0.1)
    # Predictions are the user's function of the best weights' outputs.
    _, predictions = ensemble.evaluate_members(
        result.state, result.program, data.x_test, data.y_test
    )
    best_outputs = TinyNet().apply({"params": state.best_params}, jnp.asarray(data.x_test))
    np.testing.assert_allclose(
        predictions[0], jax.nn.softmax(best_outputs / 4.0), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(predictions[0], jax.nn.softmax(best_outputs), atol=1e-3)


class WrongWidth(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(5, name="head")(x)


@pytest.mark.parametrize(
    ("kwargs", "overrides", "message"),
    [
        ({"model": WrongWidth()}, {}, r"outputs of shape \(2, 5\).*needs \(2, 3\)"),
        (
            {"model": TinyNet(), "loss": lambda outputs, labels: jnp.mean(outputs)},
            {},
            r"the loss returns shape \(\)",
        ),
        ({"model": TinyNet(), "metrics": {"accuracy": lambda o, y: 0.0}}, {}, "clashes"),
        ({"model": TinyNet()}, {"model.head": ("classifier",)}, "matches no parameter"),
        (
            {"model": TinyNet()},
            {"restarts.sweep": "model.activation=[relu, tanh]"},
            "the user's own",
        ),
        ({"model": TinyNet()}, {"restarts.select_by": "val_top5"}, "restarts.select_by"),
    ],
)
def test_bad_user_components_are_one_error_before_anything_is_written(
    kwargs, overrides, message, tmp_path, data_dir
):
    from jaxnn import runner

    config = user_cnn.config(data_dir)
    config.restarts.select_by = "val_loss"
    config.dataset.name = "digits"
    for field, value in overrides.items():
        section, leaf = field.split(".")
        config[section][leaf] = value
    if isinstance(kwargs.get("model"), WrongWidth | TinyNet):
        # digits has 64 features and 10 classes; the test models are written for 3 classes.
        config.dataset.classes = (0, 1, 2)
    workdir = tmp_path / "never"
    with pytest.raises(JaxnnError, match=message) as error:
        runner.run(config, workdir, progress=False, out=io.StringIO(), **kwargs)
    assert "\n" not in str(error.value)
    assert not workdir.exists()
