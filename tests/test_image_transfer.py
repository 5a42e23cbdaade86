"""Transfer with a ResNet body: `init_from` carries the body's weights and its BatchNorm
statistics; fine-tuning starts from both, feature extraction keeps both bit-identical."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import shared_dir

import jaxnn
from jaxnn import runner
from jaxnn.core import ensemble
from jaxnn.io import checkpoint, export
from jaxnn.nn import family as family_lib

HEAD = "head"


def _config(data_dir: str, classes: tuple[int, ...], **fields):
    """A one-block ResNet of 8 channels on 8x8 digits of `classes`."""
    config = jaxnn.default_config()
    config.dataset.name = "digits_images"
    config.dataset.data_dir = data_dir
    config.dataset.classes = classes
    config.model.name = "resnet"
    config.model.stages = (1,)
    config.model.widths = (8,)
    config.optimizer.learning_rate = 0.1
    config.training.batch_size = 32
    config.training.steps = 20
    config.training.eval_every = 10
    config.restarts.num = 1
    for field, value in fields.items():
        section, _, leaf = field.rpartition(".")
        config[section][leaf] = value
    return config


def _run(config, workdir: Path) -> None:
    runner.run(config, workdir, progress=False, out=io.StringIO())


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_dir) -> Path:
    """A ResNet pretrained on digits 0-4."""
    build = lambda d: _run(_config(data_dir, (0, 1, 2, 3, 4)), d / "run")
    return shared_dir(tmp_path_factory, "resnet_transfer_source", build) / "run"


def _target(data_dir: str, source: Path, mode: str):
    """Digits 5-9 from 20 examples each, two random starts from the pretrained body."""
    return _config(
        data_dir,
        (5, 6, 7, 8, 9),
        **{
            "dataset.train_per_class": 20,
            "training.steps": 10,
            "training.eval_every": 5,
            "restarts.num": 2,
            "init_from.workdir": str(source),
            "init_from.mode": mode,
        },
    )


def _body(params) -> dict:
    return {name: tree for name, tree in params.items() if name != HEAD}


def _member(tree, index: int):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], tree)


def _assert_same(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _pretrained(source: Path) -> tuple[dict, dict]:
    """The source's selected member: its body's weights and its BatchNorm statistics."""
    stats = export.read_best(source, "model_state")["batch_stats"]
    assert {"stem_norm", "stage0_block0"} <= set(stats)  # the body's BatchNorm layers
    return _body(export.read_best(source, "params")), stats


def test_finetuning_a_resnet_starts_from_the_body_and_its_batch_statistics(
    source, tmp_path, data_dir, monkeypatch
):
    started = []

    def init_members(*args, **kwargs):  # the members' state before the first step
        state = initial(*args, **kwargs)
        started.append(jax.device_get((state.params, state.model_state)))
        return state

    initial = ensemble.init_members
    monkeypatch.setattr(ensemble, "init_members", init_members)
    train_mode = _train_mode_calls(monkeypatch)
    _run(_target(data_dir, source, "finetune"), tmp_path / "finetune")
    assert train_mode  # fine-tuning trains the body's BatchNorm on the target's batches
    assert started  # the losses at initialisation, then training: each from the same start
    body, stats = _pretrained(source)
    source_head = export.read_best(source, "params")[HEAD]["kernel"]
    for params, model_state in started:
        for index in range(2):
            _assert_same(_body(_member(params, index)), body)
            _assert_same(_member(model_state, index)["batch_stats"], stats)
            assert not np.array_equal(_member(params, index)[HEAD]["kernel"], source_head)
    # Fine-tuning goes on updating the statistics from there.
    final = checkpoint.last_state_fields(tmp_path / "finetune" / "checkpoints")
    moved = _member(final["model_state"], 0)["batch_stats"]["stem_norm"]["mean"]
    assert not np.allclose(moved, stats["stem_norm"]["mean"])


def _train_mode_calls(monkeypatch) -> list:
    """Records the training program's forward passes traced in train mode (BatchNorm on the
    batch's statistics); not the validation's shape check, which traces one of every model."""
    calls: list = []

    def train_apply(*args, **kwargs):
        if sys._getframe(1).f_globals["__name__"] == "jaxnn.nn.family":
            calls.append(args[0])
        return original(*args, **kwargs)

    original = family_lib.train_apply
    monkeypatch.setattr(family_lib, "train_apply", train_apply)
    return calls


def test_feature_extraction_keeps_the_resnet_body_and_its_statistics_bit_identical(
    source, tmp_path, data_dir, monkeypatch
):
    train_mode = _train_mode_calls(monkeypatch)
    _run(_target(data_dir, source, "feature_extraction"), tmp_path / "features")
    # the frozen body runs in inference mode: the head learns the features it is tested on
    assert train_mode == []
    body, stats = _pretrained(source)
    final = checkpoint.last_state_fields(tmp_path / "features" / "checkpoints")
    source_head = export.read_best(source, "params")[HEAD]["kernel"]
    for index in range(2):
        for params, state in (("params", "model_state"), ("best_params", "best_model_state")):
            _assert_same(_body(_member(final[params], index)), body)
            _assert_same(_member(final[state], index)["batch_stats"], stats)
        assert not np.array_equal(_member(final["params"], index)[HEAD]["kernel"], source_head)
    exported = export.load_model(tmp_path / "features")
    _assert_same(_body(exported.params), body)
    _assert_same(exported.model_state["batch_stats"], stats)
