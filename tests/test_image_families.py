"""The image families, cnn2d and resnet, registered as any family is (their module and one
registry line): they train on digits as images, member i of an ensemble is the single run, their
fields are refused in one line, and nothing outside their module and the registry names them."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import blobs, tiered

import jaxnn
from jaxnn import data, front_end
from jaxnn.core import ensemble, loop, train
from jaxnn.errors import ConfigError
from jaxnn.nn import cnn2d, model_fields, registry, resnet
from jaxnn.nn.family import ModelFamily

REPO = Path(__file__).resolve().parent.parent
# A smoke-sized model of each family (the cnn2d's dense layers: none).
SMALL = {
    "cnn2d": {"channels": (6,), "kernel_sizes": (3,), "pool": "max", "hidden": ()},
    "resnet": {"stages": (1,), "widths": (16,)},
}


def _config(name: str, **fields):
    config = jaxnn.default_config()
    config.dataset.name = "digits_images"
    config.model.name = name
    config.optimizer.learning_rate = 0.1
    config.training.batch_size = 32
    config.training.steps = 100
    config.training.eval_every = 50
    config.restarts.num = 1
    for field, value in {**SMALL[name], **fields}.items():
        section, _, leaf = field.rpartition(".")
        config[section or "model"][leaf] = value
    return config


@functools.cache
def _digits(data_dir: str) -> data.Dataset:
    dataset = jaxnn.default_config().dataset
    dataset.name, dataset.data_dir = "digits_images", data_dir
    return data.load(dataset)


SWEEP = {"model.init_scale": [0.5, 1.0]}  # two members of one random start


def _ensemble(config, data_dir: str):
    return jaxnn.fit_ensemble(config, _digits(data_dir), jax.random.PRNGKey(3), sweep=SWEEP)


# The ResNet's programs take longest to compile: its training runs in the slow tier.
TRAINED = tiered(sorted(SMALL), {"cnn2d"})


@pytest.mark.parametrize("name", TRAINED)
def test_each_image_family_learns_digits_as_images(name, data_dir):
    result = _ensemble(_config(name), data_dir)
    accuracy = np.asarray(result.history[-1]["val_accuracy"])
    assert accuracy.shape == (2,) and np.all(accuracy > 0.3)  # chance: 0.1


@pytest.mark.parametrize("name", TRAINED)
def test_member_i_of_an_image_ensemble_is_the_single_run(name, data_dir):
    # 40 steps: the vmapped and the single programs round differently (2e-7 after 60 steps);
    # the ResNet's later steps at this learning rate amplify that to 1e-2 by step 100
    config = _config(name, **{"training.steps": 40, "training.eval_every": 20})
    result = _ensemble(config, data_dir)
    spec = front_end.resolve(config, sweep=SWEEP)
    member = result.members[1]  # init_scale 1.0 (member 0 is the program's first slice)
    key = train.member_key(jax.random.PRNGKey(3), member.seed_index)
    alone = loop.fit(config, _digits(data_dir), key, hparams=member.hparams(spec))
    stacked = ensemble.member_state(result.state, 1)
    for a, b in zip(
        jax.tree.leaves((stacked.params, stacked.model_state)),
        jax.tree.leaves((alone.state.params, alone.state.model_state)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    # each member's init_scale reaches its Module: one random start, two sets of weights
    first = jax.tree.leaves(ensemble.member_state(result.state, 0).params)[0]
    assert not np.allclose(np.asarray(first), np.asarray(jax.tree.leaves(stacked.params)[0]))


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("cnn2d", {"norm": "instance"}, "model.norm must be one of none, batch, group, layer, got 'instance'"),
        ("cnn2d", {"kernel_sizes": (3, 3)}, "model.kernel_sizes gives 2 values for 3 conv layers"),
        ("cnn2d", {"layer_norm": True}, "model.layer_norm is read by the cnn1d family, not by model.name=cnn2d"),
        ("resnet", {"stages": (1, 0), "widths": (4, 8)}, "model.stages values must all be >= 1"),
        ("resnet", {"stages": (1, 1)}, "model.widths gives 3 widths for 2 stages"),
        ("resnet", {"stem": "huge"}, "model.stem must be one of cifar, imagenet"),
        ("resnet", {"conv_impl": "cudnn"}, "model.conv_impl must be one of auto, im2col, lax"),
        ("resnet", {"hidden": (16,)}, "model.hidden is read by the mlp, cnn1d, cnn2d families, not by model.name=resnet"),
        ("mlp", {"hidden": (16,), "widths": (8,)}, "model.widths is read by the resnet family, not by model.name=mlp"),
    ],
)  # fmt: skip
def test_a_bad_image_field_is_refused_in_one_line(name, fields, message):
    config = jaxnn.default_config()
    config.model.name = name
    for field, value in fields.items():
        config.model[field] = value
    with pytest.raises(ConfigError) as raised:
        front_end.resolve(config)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_examples_that_are_not_images_are_refused_in_one_line(name):
    config = _config(name, **{"hidden": ()} if name == "cnn2d" else {})
    with pytest.raises(ConfigError) as raised:
        jaxnn.fit_ensemble(config, blobs(), jax.random.PRNGKey(0))
    assert f"model.name={name} reads images" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_kernel_larger_than_the_images_is_refused_before_training(data_dir):
    config = _config("cnn2d", kernel_sizes=(9,))
    with pytest.raises(ConfigError, match=r"conv layer 0 has a 9x9 kernel .* 8x8 pixels"):
        jaxnn.fit_ensemble(config, _digits(data_dir), jax.random.PRNGKey(0))


def test_image_fields_sweep_like_any_family():
    spec = front_end.resolve(
        _config("resnet"), sweep="model.norm=[group, layer]; model.init_scale=[0.5, 1.0]"
    )
    assert [variant for variant, _ in spec.variants] == [
        {"model.norm": "group"},
        {"model.norm": "layer"},
    ]
    assert spec.sweep.numeric == {"model.init_scale": (0.5, 1.0)}


def test_the_image_families_were_added_by_their_modules_and_one_registry_line_each():
    config = jaxnn.default_config()
    for module in (cnn2d, resnet):
        assert registry.MODEL_FAMILIES[module.FAMILY.name] is module.FAMILY
        for spec in module.FIELDS:
            assert config.model[spec.name] == spec.default
    # the schema, the integer ranges and the shared specs name neither family nor its own fields
    others = [f for name, f in registry.MODEL_FAMILIES.items() if name not in ("cnn2d", "resnet")]
    before = {spec.name for family in others for spec in family.fields}
    own = {s.name for s in (*cnn2d.FIELDS, *resnet.FIELDS)} - before
    assert own == {"norm", "stages", "widths", "stem", "preact"}
    for path in ("jaxnn/config/schema.py", "jaxnn/config/fields.py", "jaxnn/nn/model_fields.py"):
        text = (REPO / path).read_text()
        assert "cnn2d" not in text and "resnet" not in text, path
        assert not [name for name in own if f'"{name}"' in text or f"model.{name}" in text], path
    lines = (REPO / "jaxnn/nn/registry.py").read_text().splitlines()
    for name in ("cnn2d", "resnet"):  # the import and the registry line
        assert [line for line in lines if name in line][1] == f'    "{name}": {name}.FAMILY,'
        assert len([line for line in lines if name in line]) == 2


def test_two_families_that_declare_one_field_differently_are_refused(monkeypatch):
    wider = model_fields.integer("hidden", (64,), 1, 2**31 - 1, "the width of each hidden layer")
    other = ModelFamily(name="other", build=cnn2d.build, fields=(wider,))
    monkeypatch.setitem(registry.MODEL_FAMILIES, "other", other)
    with pytest.raises(ConfigError) as raised:
        jaxnn.default_config()
    assert str(raised.value).startswith(
        "model.hidden is declared by the mlp and other families with different specs"
    )


@pytest.mark.parametrize("preact", [False, True])
def test_resnet_reports_every_activations_input_with_its_batchnorm_statistics(preact):
    module = resnet.ResNet(blocks=(1, 1), widths=(4, 8), num_outputs=3, preact=preact)
    x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
    variables = dict(module.init(jax.random.key(1), x))
    # running statistics far from a fresh batch's: reading them (not the batch) shows
    variables["batch_stats"] = jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])
    pre = resnet.FAMILY.preactivations(module, variables, x)
    blocks = [
        "stage0_block0/act_0",
        "stage0_block0/act_1",
        "stage1_block0/act_0",
        "stage1_block0/act_1",
    ]
    assert list(pre) == ([*blocks, "final"] if preact else ["stem", *blocks])
    # a pre-activation block's first activation reads its input (the previous stage's width)
    assert [h.shape[1] for h in pre.values()] == [4, 4, 4, 8, 8]
    assert next(iter(pre.values())).shape[0] == 5 * 8 * 8
    # the last activation's output, pooled, is what the head reads: the outputs follow exactly
    last = jax.nn.relu(list(pre.values())[-1]).reshape(5, -1, 8).mean(axis=1)
    head = variables["params"]["head"]
    np.testing.assert_allclose(
        module.apply(variables, x), last @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6
    )


def test_diagnostics_of_a_batchnorm_image_ensemble_name_its_dead_units(data_dir):
    from jaxnn.analysis import diagnostics
    from jaxnn.data import device

    config = _config("cnn2d", norm="batch", **{"restarts.num": 2})
    spec = front_end.resolve(config)
    trainer = ensemble.make_trainer(spec, _digits(data_dir), jax.random.PRNGKey(0))
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    values = diagnostics.compute(state, device.device_data(_digits(data_dir)), trainer.program)
    assert values["dead_fraction/conv_0"].shape == (2,)
    assert 0.0 <= values["dead_fraction"][0] <= 1.0


@pytest.mark.parametrize("name", TRAINED)
def test_an_image_family_in_bfloat16_computes_in_it_with_float32_state(name, data_dir):
    from tests.test_precision import _assert_mixed_precision, _floating_dtypes

    fields = {"model.dtype": "bfloat16", "norm": "batch", "restarts.num": 2}
    config = _config(name, **fields)
    result = jaxnn.fit_ensemble(config, _digits(data_dir), jax.random.PRNGKey(0))
    _assert_mixed_precision(result, _digits(data_dir))  # every product in bfloat16
    assert _floating_dtypes(result.state.model_state) == {"float32"}  # BatchNorm's statistics
    last = np.asarray(result.history[-1]["val_accuracy"])
    assert np.all(last > 0.3)  # chance: 0.1
