"""docs/architecture.md's worked example runs: its model family, added with one registry line,
brings its own field into the config (default, range, sweeps), trains random starts and a
numeric sweep, and splits into a body and a head for transfer."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import blobs, small_config

import jaxnn
from jaxnn import front_end
from jaxnn.core import ensemble
from jaxnn.errors import ConfigError
from jaxnn.nn import family as family_lib
from jaxnn.nn import registry

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _example_family():
    section = DOC.read_text().split("## Worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["FAMILY"]


@pytest.fixture
def registered(monkeypatch):
    family = _example_family()
    assert "toy_resmlp" not in registry.MODEL_FAMILIES
    assert "blocks" not in jaxnn.default_config().model
    monkeypatch.setitem(registry.MODEL_FAMILIES, "toy_resmlp", family)
    return family


def test_the_documented_family_trains_through_the_registry(registered):
    config = small_config(**{"model.name": "toy_resmlp", "restarts.num": 2})
    assert config.model.blocks == 2
    result = ensemble.fit_ensemble(
        config,
        blobs(),
        jax.random.PRNGKey(0),
        sweep={"optimizer.learning_rate": [0.02, 0.1], "model.dropout": [0.0, 0.1]},
    )
    assert len(result.members) == 8
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first)
    params = ensemble.member_state(result.state, 0).params
    assert {"embed", "block_0", "block_1", "head"} <= set(params)
    labels = family_lib.body_head_labels(params, result.program.head)
    assert labels["head"]["kernel"] == "head" and labels["block_0"]["kernel"] == "body"


def test_the_documented_family_s_own_field_is_swept_and_checked(registered):
    config = small_config(**{"model.name": "toy_resmlp"})
    spec = front_end.resolve(config, sweep="model.blocks=[1, 3]")
    assert [variant for variant, _ in spec.variants] == [{"model.blocks": 1}, {"model.blocks": 3}]
    with pytest.raises(ConfigError, match=r"^model.blocks must be an integer in \[1, 100\]"):
        front_end.resolve(small_config(**{"model.name": "toy_resmlp", "model.blocks": 0}))
    with pytest.raises(ConfigError, match=r"model\.blocks is read by the toy_resmlp family"):
        front_end.resolve(small_config(**{"model.blocks": 3}))
