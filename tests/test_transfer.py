"""Transfer: frozen bodies stay bit-identical, K heads share one body, bad sources are one line."""

from __future__ import annotations

import fcntl
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnn import front_end, runner
from jaxnn.core import ensemble
from jaxnn.errors import CheckpointError, ConfigError
from jaxnn.io import export, transfer
from jaxnn.nn import family, mlp
from tests.helpers import blobs, small_config

REPO = Path(__file__).resolve().parent.parent


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


experiment = _module("transfer_experiment", REPO / "experiments" / "transfer.py")
study = _module("transfer_study", REPO / "experiments" / "studies" / "transfer.py")

BODY = ("hidden_0", "hidden_1")


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _same(a, b) -> bool:
    left, right = _leaves(a), _leaves(b)
    return len(left) == len(right) and all(np.array_equal(x, y) for x, y in zip(left, right))


def _member(tree, index: int):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], tree)


# --- In process, on blobs: what each mode does to the weights --------------------------------


@pytest.fixture(scope="module")
def pretrained_body():
    """The body of a model trained on the same blobs (any fixed weights would do)."""
    result = ensemble.fit_ensemble(small_config(), blobs(), jax.random.PRNGKey(42))
    params = _member(result.state.params, 0)
    return {name: params[name] for name in BODY}


def _fit(pretrained, *, frozen=False, body_scale=None, **overrides):
    options = {"param_labels": family.body_head_labels}
    if frozen:
        options["frozen_labels"] = ("body",)
    if body_scale is not None:
        options["label_lr_scales"] = (("body", body_scale),)
    config = small_config(**{"restarts.num": 3, **overrides})
    return ensemble.fit_ensemble(
        config,
        blobs(seed=1),
        jax.random.PRNGKey(0),
        pretrained={"params": pretrained},
        transfer=options,
    )


def test_feature_extraction_leaves_the_body_bit_identical_and_keeps_no_state_for_it(
    pretrained_body,
):
    result = _fit(pretrained_body, frozen=True, **{"optimizer.weight_decay": 1e-3})
    spec = front_end.resolve(small_config(**{"restarts.num": 3}))
    trainer = ensemble.make_trainer(spec, blobs(seed=1), jax.random.PRNGKey(0))
    initial = ensemble.init_members(trainer, jax.random.PRNGKey(0), {"params": pretrained_body})
    for i in range(3):
        params = _member(result.state.params, i)
        assert _same({k: params[k] for k in BODY}, pretrained_body)
        # The head moved from its initialisation.
        start = _member(initial.params, i)["head"]["kernel"]
        assert not np.allclose(params["head"]["kernel"], start)
    # No optimiser state for the frozen body: no state leaf has a body kernel's shape.
    shapes = {np.shape(leaf) for leaf in _leaves(result.state.opt_state)}
    assert (3, 6, 16) not in shapes and (3, 16, 16) not in shapes
    assert (3, 16, 3) in shapes  # the head's momentum


def test_body_lr_scale_zero_behaves_like_freezing(pretrained_body):
    frozen = _fit(pretrained_body, frozen=True)
    scaled = _fit(pretrained_body, body_scale=0.0)
    assert _same(_member(scaled.state.params, 1), _member(frozen.state.params, 1))
    assert _same({k: _member(scaled.state.params, 2)[k] for k in BODY}, pretrained_body)
    # A non-zero scale does move the body.
    moving = _fit(pretrained_body, body_scale=0.5)
    assert not _same({k: _member(moving.state.params, 0)[k] for k in BODY}, pretrained_body)


def test_k_heads_and_swept_learning_rates_start_from_one_pretrained_body(pretrained_body):
    config = small_config(
        **{"restarts.num": 3, "restarts.sweep": "optimizer.learning_rate=[0.01, 0.1]"}
    )
    trainer = ensemble.make_trainer(front_end.resolve(config), blobs(seed=1), jax.random.PRNGKey(0))
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0), {"params": pretrained_body})
    heads = [_member(state.params, i)["head"]["kernel"] for i in range(6)]
    for i in range(6):
        assert _same({k: _member(state.params, i)[k] for k in BODY}, pretrained_body)
    # Three random heads, shared by the two learning rates (paired comparison).
    assert not np.array_equal(heads[0], heads[1]) and not np.array_equal(heads[1], heads[2])
    assert np.array_equal(heads[0], heads[3])
    result = _fit(
        pretrained_body, body_scale=0.1, **{"restarts.sweep": "optimizer.learning_rate=[0.01, 0.1]"}
    )
    bodies = [{k: _member(result.state.params, i)[k] for k in BODY} for i in (0, 3)]
    assert not _same(bodies[0], bodies[1])  # each learning rate fine-tuned its own copy


# --- Through run(): a pretraining workdir, its checks and messages ---------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_dir) -> Path:
    """experiments/transfer.py:source,smoke, run once per session (shared by xdist workers)."""
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):
        root = root.parent
    directory = root / "transfer_source" / "source"
    with open(root / "transfer_source.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "summary.json").exists():
            shutil.rmtree(directory, ignore_errors=True)
            config = experiment.get_config("source,smoke")
            config.dataset.data_dir = data_dir
            runner.run(config, directory, progress=False, out=io.StringIO())
    return directory


def _target(data_dir: str, source: Path, arg: str = "target,5,feature_extraction,smoke", **fields):
    config = experiment.get_config(arg)
    config.dataset.data_dir = data_dir
    config.init_from.workdir = str(source)
    for field, value in fields.items():
        section, leaf = field.split(".")
        config[section][leaf] = value
    return config


def test_mismatched_layers_are_named_with_both_shapes(source, tmp_path, data_dir):
    cases = [
        (
            {"model.hidden": (32, 16)},
            r"layer hidden_1/kernel has shape \[32, 16\] in this model "
            r"but \[32, 32\] in the checkpoint",
        ),
        (
            {"model.hidden": (32,)},
            r"layer hidden_1/kernel has shape \[32, 32\] in the "
            r"checkpoint but is not in this model",
        ),
        (
            {"model.activation": "prelu"},
            r"model.activation='prelu' does not match the "
            r"pretrained run's 'relu'",
        ),
        (
            {"init_from.restore": "all", "dataset.classes": (5, 6, 7), "training.batch_size": 15},
            r"layer head/kernel has shape \[32, 3\] in this model but \[32, 5\] in the checkpoint",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(CheckpointError, match=message) as error:
            runner.run(_target(data_dir, source, **fields), tmp_path / "target", progress=False)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "target").exists()


def test_bad_init_from_sources_are_one_line_errors_that_write_nothing(source, tmp_path, data_dir):
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(source, unfinished)
    shutil.rmtree(unfinished / "best")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    (corrupt / "best" / "params" / "manifest.ocdbt").unlink()
    cases = [
        ({"init_from.workdir": str(tmp_path / "missing")}, "no such directory"),
        ({"init_from.workdir": str(not_a_run)}, "is not a jaxnn run"),
        ({"init_from.workdir": str(unfinished)}, "holds no exported best member"),
        (
            {"init_from.workdir": str(unfinished), "init_from.member": "2"},
            r"member index 2 is out of range: .* holds 2 member\(s\), 0\.\.1",
        ),
        ({"init_from.workdir": str(corrupt)}, f"exported model {corrupt / 'best'} is corrupt"),
    ]
    for fields, message in cases:
        with pytest.raises(CheckpointError, match=message) as error:
            runner.run(_target(data_dir, source, **fields), tmp_path / "target", progress=False)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "target").exists()


def test_member_index_and_restore_all_read_the_named_weights(source, data_dir):
    config = _target(data_dir, source, "target,5,finetune,smoke", **{"init_from.member": "1"})
    config.init_from.restore = "all"
    config.dataset.classes = (5, 6, 7, 8, 9)
    spec = front_end.resolve(config)
    found = transfer.check_source(spec.source_workdir, config, spec.family)
    shapes = export.member_param_shapes(source, 1)
    variables = transfer.load_pretrained(
        found, config, shapes, head=spec.head, order=spec.family.layer_order
    )
    assert set(variables) == {"params"}  # an MLP has no model state
    layers = variables["params"]
    assert set(layers) == {"hidden_0", "hidden_1", "head"}
    assert _same(layers, export.restore_member(source, 1))
    # restore=body leaves the head out and reads only the body.
    config.init_from.restore = "body"
    body = transfer.load_pretrained(found, config, shapes, head=(mlp.HEAD,))["params"]
    assert set(body) == set(BODY)


def test_launch_reports_a_bad_member_as_one_line_and_exit_2(source, tmp_path, data_dir):
    command = [
        sys.executable,
        str(REPO / "launch.py"),
        f"--config={REPO / 'experiments' / 'transfer.py'}:target,5,finetune,smoke",
        f"--config.init_from.workdir={source}",
        "--config.init_from.member=7",
        f"--config.dataset.data_dir={data_dir}",
        f"--workdir={tmp_path / 'target'}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxnn: error: init_from.workdir="), lines
    assert "member index 7 is out of range" in lines[0]
    assert not (tmp_path / "target").exists()


@pytest.mark.slow
def test_transfer_study_smoke_runs_end_to_end(source, tmp_path, data_dir):
    shutil.copytree(source, tmp_path / "source")  # the study reuses a finished source of its config
    out = io.StringIO()
    results = study.transfer_study(tmp_path, smoke=True, data_dir=data_dir, sizes=(5,), out=out)
    assert set(results) == {5} and set(results[5]) == set(experiment.MODES)
    assert all(0.0 <= accuracy <= 1.0 for accuracy in results[5].values())
    table = (tmp_path / "results.md").read_text()
    assert "| 5 | 25 |" in table and "201 validation" in table
    assert (tmp_path / "transfer.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["counts"]["num_val"] == 201
    # Feature extraction, through the whole pipeline: every member's body is the source's.
    body = export.read_best(source, "params", list(BODY))
    target = tmp_path / "target_5_feature_extraction"
    for index in range(2):
        final = export.restore_member(target, index, which="params", layers=list(BODY))
        assert _same(final, body)
    finetuned = export.restore_member(
        tmp_path / "target_5_finetune", 0, which="params", layers=list(BODY)
    )
    assert not _same(finetuned, body)


def test_the_front_end_expands_the_paths_a_user_wrote_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = small_config()
    config.init_from.workdir = "~/source"
    config.compilation_cache.dir = "~/cache"
    spec = front_end.resolve(config)
    assert spec.source_workdir == tmp_path / "source"
    assert spec.compile_cache_dir == tmp_path / "cache"
    assert spec.config.init_from.workdir == "~/source"  # config.json keeps what was written
    config.init_from.workdir = "~nosuchuser_jaxnn/run"
    with pytest.raises(ConfigError, match=r"^init_from.workdir ~nosuchuser_jaxnn/run: cannot"):
        front_end.resolve(config)


def test_restored_model_state_of_another_shape_is_named():
    params = {"hidden_0": {"kernel": np.zeros((2, 3)), "bias": np.zeros(3)}}
    mine = {"batch_stats": {"hidden_0": {"mean": np.zeros(3)}}}
    theirs = {"batch_stats": {"hidden_0": {"mean": np.zeros(4)}}}
    check = dict(head=(), target_state=mine)
    transfer.check_shapes(params, params, ["hidden_0"], "src", source_state=mine, **check)
    with pytest.raises(CheckpointError) as raised:
        transfer.check_shapes(params, params, ["hidden_0"], "src", source_state=theirs, **check)
    assert str(raised.value) == (
        "init_from: model state batch_stats/hidden_0/mean has shape [3] in this model but has "
        "shape [4] in the checkpoint (src); the model's body must match the pretrained run's"
    )
