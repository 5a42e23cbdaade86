"""The sweep as a value: parsed once from a string or a mapping, every value of every variant
checked by its field's own rule before anything trains, and structural sweeps refused where
one program is trained."""

from __future__ import annotations

import io

import jax
import pytest
from helpers import blobs, small_config

from jaxnn import front_end
from jaxnn.core import ensemble, variants
from jaxnn.errors import ConfigError


def test_a_mapping_and_a_string_give_the_same_sweep_and_the_same_recorded_spec():
    config = small_config()
    from_string = front_end.resolve(
        config, sweep="optimizer.learning_rate=[0.01, 0.1]; model.activation=[relu, tanh]"
    )
    from_mapping = front_end.resolve(
        config,
        sweep={"optimizer.learning_rate": [0.01, 0.1], "model.activation": ["relu", "tanh"]},
    )
    assert from_string.sweep == from_mapping.sweep
    assert from_string.config.restarts.sweep == from_mapping.config.restarts.sweep
    assert config.restarts.sweep == ""  # the caller's config is not changed
    reparsed = front_end.resolve(
        small_config(**{"restarts.sweep": from_string.config.restarts.sweep})
    )
    assert reparsed.sweep == from_string.sweep
    assert [v for v, _ in from_string.variants] == [
        {"model.activation": "relu"},
        {"model.activation": "tanh"},
    ]
    for _, variant in from_string.variants:
        assert variant.sweep.structural == {} and variant.sweep.numeric == from_string.sweep.numeric


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("optimizer.learning_rate=[0.05, -0.1]", "optimizer.learning_rate must be > 0, got -0.1"),
        ("optimizer.learning_rate=[1e999]", "optimizer.learning_rate must be > 0, got inf"),
        ("model.dropout=[0.0, 1.5]", r"model.dropout must be in \[0, 1\), got 1.5"),
        ("optimizer.momentum=[0.9, 1.0]", "optimizer.momentum"),
        ("model.activation=[relu, swish]", "model.activation: unknown 'swish'"),
        ("model.hidden=[(32,), (32, 0)]", "every entry of model.hidden must be an integer in "),
        ("optimizer.b1=[0.5]", "cannot vary 'optimizer.b1'"),  # momentum reads no b1
        ("optimizer.name=[adam, nope]", "optimizer.name: unknown 'nope'"),
    ],
)
def test_every_value_of_every_variant_is_checked_by_its_flags_rule(sweep, message):
    with pytest.raises(ConfigError, match=message) as error:
        front_end.resolve(small_config(), sweep=sweep)
    assert "\n" not in str(error.value)


def test_a_bad_variant_is_refused_before_any_variant_trains(tmp_path, data_dir):
    from jaxnn import runner

    config = small_config(**{"dataset.data_dir": data_dir, "dataset.name": "digits"})
    workdir = tmp_path / "never"
    with pytest.raises(ConfigError, match="swish"):
        runner.run(
            config, workdir, sweep={"model.activation": ["relu", "swish"]}, out=io.StringIO()
        )
    assert not workdir.exists()


def test_fit_ensemble_refuses_several_programs_and_fit_variants_trains_them():
    data, config = blobs(), small_config()
    sweep = {"model.activation": ["relu", "tanh"], "optimizer.learning_rate": [0.02, 0.1]}
    with pytest.raises(ConfigError, match="2 programs"):
        ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0), sweep=sweep)
    runs = variants.fit_variants(config, data, jax.random.PRNGKey(0), sweep=sweep)
    assert [r.variant for r in runs] == [{"model.activation": "relu"}, {"model.activation": "tanh"}]
    assert [len(r.result.members) for r in runs] == [2, 2]
    # One value of a structural field is one program: fit_ensemble trains it.
    one = ensemble.fit_ensemble(
        config, data, jax.random.PRNGKey(0), sweep={"model.activation": ["tanh"]}
    )
    assert one.program.model_config.activation == "tanh"
