"""Launches of each model family on MNIST-1D (smoke size): an interrupted run resumes to exactly
the uninterrupted one, the exported member reloads, and a feature-extraction transfer keeps the
pretrained body bit-identical while it trains a new head."""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest
from helpers import tiered
from test_families import SMALL

from jaxnn import runner
from jaxnn.config import default_config
from jaxnn.io import export
from jaxnn.reporting import metrics_log
from tests.test_resume import Interrupted, _assert_trees_equal, _final_state, _interrupt_at

FAMILIES = sorted(SMALL)


def _config(name: str, data_dir: str, **overrides):
    config = default_config()
    config.dataset.data_dir = data_dir
    config.dataset.train_per_class = 20
    config.model.name = name
    config.model.dropout = 0.1
    config.training.batch_size = 50
    config.training.steps = 40
    config.training.eval_every = 10
    config.restarts.num = 2
    config.checkpoint.every_steps = 20
    config.tensorboard.enabled = False
    for field, value in {**SMALL[name], **overrides}.items():
        section, leaf = field.split(".")
        config[section][leaf] = value
    return config


def _run(config, workdir) -> None:
    runner.run(config, workdir, progress=False, out=io.StringIO())


# The slow tier: tests/test_resume.py and tests/test_transfer.py run the MLP in the fast one,
# tests/test_image_transfer.py a ResNet body.
@pytest.mark.parametrize("name", tiered(FAMILIES, set()))
def test_resume_and_transfer_of_the_body(name, tmp_path, data_dir):
    config = _config(name, data_dir)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    _run(config, reference)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics_log.Progress, "__call__", _interrupt_at(30))
        with pytest.raises(Interrupted):
            _run(config, resumed)
    _run(config, resumed)
    assert (resumed / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    _assert_trees_equal(_final_state(resumed), _final_state(reference))

    pretrained = export.load_model(reference)
    assert pretrained.config.model.name == name
    target = tmp_path / "target"
    _run(
        _config(
            name,
            data_dir,
            **{
                "init_from.workdir": str(reference),
                "init_from.mode": "feature_extraction",
                "training.steps": 20,
            },
        ),
        target,
    )
    tuned = export.load_model(target)
    body = [layer for layer in pretrained.params if layer != "head"]
    assert body and set(tuned.params) == set(pretrained.params)
    _assert_trees_equal({k: tuned.params[k] for k in body}, {k: pretrained.params[k] for k in body})
    assert not np.allclose(
        np.asarray(tuned.params["head"]["kernel"]), np.asarray(pretrained.params["head"]["kernel"])
    )
    x = np.zeros((3, 40), np.float32)
    assert jax.numpy.shape(tuned.apply(x)) == (3, 10)
