"""One way to call: `fit`, `fit_ensemble`, `fit_variants` and `run` take a user's parts as the
same keyword arguments (`jaxnn.nn.components.ComponentArgs`), written once and passed to each."""

from __future__ import annotations

import io

import flax.linen as nn
import jax
import optax
import pytest

import jaxnn
from tests.helpers import blob_arrays, blobs, small_config


class MLP(nn.Module):
    """As Flax's docs write one."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


def _loss(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _parts() -> dict:
    return {
        "model": MLP(),
        "loss": _loss,
        "metrics": {"top1": lambda logits, labels: (logits.argmax(-1) == labels).mean()},
        "optimizer": lambda hparams: optax.sgd(hparams["learning_rate"], momentum=0.9),
    }


def _calls(tmp_path):
    config = small_config(**{"restarts.num": 2})
    data, key = blobs(), jax.random.PRNGKey(0)
    return {
        "fit": lambda **parts: jaxnn.fit(config, data, key, **parts),
        "fit_ensemble": lambda **parts: jaxnn.fit_ensemble(config, data, key, **parts),
        "fit_variants": lambda **parts: jaxnn.fit_variants(config, data, key, **parts),
        "run": lambda **parts: jaxnn.run(
            config, tmp_path / "run", data=data, progress=False, out=io.StringIO(), **parts
        ),
    }


@pytest.mark.parametrize("name", ["fit", "fit_ensemble", "fit_variants", "run"])
def test_each_entry_point_takes_the_same_parts(tmp_path, name):
    result = _calls(tmp_path)[name](**_parts())
    _, _, x_test, y_test = blob_arrays()
    metrics = result.predictor().evaluate(x_test, y_test)
    assert metrics["top1"] > 0.5  # the user's metric came through, on a model that learnt


@pytest.mark.parametrize("name", ["fit", "fit_ensemble", "fit_variants", "run"])
def test_a_misspelt_part_is_refused_by_name(tmp_path, name):
    with pytest.raises(TypeError, match="'modle'"):
        _calls(tmp_path)[name](modle=MLP())
    assert not (tmp_path / "run").exists()
