"""docs/architecture.md's worked example runs: its model family, added with one registry line,
trains random starts and a numeric sweep, and splits into a body and a head for transfer."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
from helpers import blobs, small_config

from jaxnn.core import ensemble
from jaxnn.nn import family as family_lib
from jaxnn.nn import registry

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _example_family():
    section = DOC.read_text().split("## Worked example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["FAMILY"]


def test_the_documented_family_trains_through_the_registry(monkeypatch):
    family = _example_family()
    assert "toy_resmlp" not in registry.MODEL_FAMILIES
    monkeypatch.setitem(registry.MODEL_FAMILIES, "toy_resmlp", family)
    config = small_config(**{"model.name": "toy_resmlp", "restarts.num": 2})
    result = ensemble.fit_ensemble(
        config,
        blobs(),
        jax.random.PRNGKey(0),
        sweep={"optimizer.learning_rate": [0.02, 0.1], "model.hidden": [(16, 16)]},
    )
    assert len(result.members) == 4
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first)
    params = ensemble.member_state(result.state, 0).params
    assert {"embed", "block_0", "block_1", "head"} <= set(params)
    labels = family_lib.body_head_labels(params, result.program.head)
    assert labels["head"]["kernel"] == "head" and labels["block_0"]["kernel"] == "body"
