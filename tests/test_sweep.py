"""restarts.sweep: parsing, type checks, and the members it makes."""

from __future__ import annotations

import re

import pytest

from jaxnn import front_end
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble
from jaxnn.errors import ConfigError
from tests.helpers import small_config


def test_numeric_and_structural_fields_are_split():
    spec = (
        "optimizer.learning_rate=[0.01, 0.1]; model.activation=[relu, tanh]; "
        "model.hidden=[(8,), (8, 8)]"
    )
    sweep = front_end.resolve(small_config(), sweep=spec).sweep
    assert sweep.numeric == {"optimizer.learning_rate": (0.01, 0.1)}
    assert sweep.structural == {
        "model.activation": ("relu", "tanh"),
        "model.hidden": ((8,), (8, 8)),
    }
    assert len(sweep.structural_variants()) == 4


def test_members_are_variant_major_and_share_random_starts():
    config = small_config(**{"restarts.num": 3, "restarts.sweep": "model.dropout=[0.0, 0.5]"})
    spec = front_end.resolve(config)
    run_members = ensemble.members(spec)
    assert [m.index for m in run_members] == list(range(6))
    assert [m.seed_index for m in run_members] == [0, 1, 2, 0, 1, 2]
    assert [m.swept["model.dropout"] for m in run_members] == [0.0] * 3 + [0.5] * 3
    assert run_members[4].hparams(spec)["dropout"] == 0.5
    assert run_members[4].hparams(spec)["learning_rate"] == config.optimizer.learning_rate


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("model.depth=[1, 2]", "model.depth"),
        ("optimizer.learning_rate=[]", "empty"),
        ("optimizer.learning_rate=[fast]", "optimizer.learning_rate must be > 0, got 'fast'"),
        ("optimizer.learning_rate=[True]", "optimizer.learning_rate must be > 0, got True"),
        ("optimizer.learning_rate=[0.1, -0.1]", "optimizer.learning_rate must be > 0, got -0.1"),
        ("model.dropout=[0.0, 1.0]", "model.dropout must be in [0, 1), got 1.0"),
        ("model.activation=[1, 2]", "str"),
        ("optimizer.learning_rate", "field=[v1, v2, ...]"),
        ("model.dropout=[0.1]; model.dropout=[0.2]", "twice"),
    ],
)
def test_bad_sweeps_are_config_errors(spec, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        front_end.resolve(small_config(), sweep=spec)
    with pytest.raises(ConfigError, match=re.escape(fragment)):  # the same from the config
        front_end.resolve(small_config(**{"restarts.sweep": spec}))


def test_with_values_copies_and_leaves_the_original_alone():
    config = small_config()
    changed = with_values(config, {"model.activation": "tanh", "optimizer.learning_rate": 0.3})
    assert changed.model.activation == "tanh" and changed.optimizer.learning_rate == 0.3
    assert config.model.activation == "relu"
