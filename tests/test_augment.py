"""Data augmentation (config.augment) and the permuted data set (dataset.permute_seed).

Each transform does what it says on a hand-made batch; augmentation reaches the training step
only (validation, test and the training metrics see the stored arrays), member i of a swept
ensemble equals the single run, and an interrupted run resumes bit for bit.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blob_arrays, blobs, small_config, tiered

from jaxnn import data, front_end, runner
from jaxnn.config import default_config
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble, loop, train
from jaxnn.core.program import build
from jaxnn.data import augment, device
from jaxnn.errors import ConfigError
from jaxnn.io import checkpoint, export
from jaxnn.reporting import metrics_log


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _batch(batch: int = 3, length: int = 7) -> jax.Array:
    return jnp.arange(batch * length, dtype=jnp.float32).reshape(batch, length) + 1.0


# -- the transforms on a hand-made batch ---------------------------------------------------------


def test_circular_shift_is_a_roll_of_each_example():
    x = _batch()
    offsets = jnp.asarray([2, -3, 0])
    shifted = np.asarray(augment.shift(x, offsets, "circular"))
    for b, d in enumerate([2, -3, 0]):
        np.testing.assert_array_equal(shifted[b], np.roll(np.asarray(x[b]), d))


def test_zero_shift_fills_the_positions_shifted_in_with_zeros():
    x = _batch()
    shifted = np.asarray(augment.shift(x, jnp.asarray([2, -3, 0]), "zero"))
    row = np.asarray(x)
    np.testing.assert_array_equal(shifted[0], [0, 0, *row[0, :5]])
    np.testing.assert_array_equal(shifted[1], [*row[1, 3:], 0, 0, 0])
    np.testing.assert_array_equal(shifted[2], row[2])


def test_shift_moves_positions_of_channelled_inputs_together():
    x = jnp.stack([_batch(), -_batch()], axis=-1)  # [B, L, 2]
    shifted = np.asarray(augment.shift(x, jnp.asarray([1, 1, -1]), "circular"))
    np.testing.assert_array_equal(shifted[..., 1], -shifted[..., 0])
    np.testing.assert_array_equal(shifted[0, :, 0], np.roll(np.asarray(x[0, :, 0]), 1))


def _only(**values) -> augment.Augmentation:
    return augment.Augmentation(**values)


def test_random_shifts_stay_within_the_limit_and_use_all_of_it():
    x = jnp.tile(jnp.eye(1, 9, 4, dtype=jnp.float32), (400, 1))  # a one at position 4
    out = np.asarray(augment.augment_batch(_only(shift=2), {}, x, jax.random.PRNGKey(0)))
    moved = out.argmax(axis=1) - 4
    assert set(moved.tolist()) == {-2, -1, 0, 1, 2}
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)  # circular: nothing falls off


def test_scaling_multiplies_each_example_by_one_factor_in_range():
    x = jnp.ones((500, 5), jnp.float32) * jnp.arange(1, 6, dtype=jnp.float32)
    out = np.asarray(augment.augment_batch(_only(scale=0.25), {}, x, jax.random.PRNGKey(1)))
    factors = out / np.asarray(x)
    np.testing.assert_allclose(factors, factors[:, :1] * np.ones((1, 5)), rtol=1e-6)
    assert 0.75 <= factors.min() < 0.8 and 1.2 < factors.max() <= 1.25


def test_noise_adds_zero_mean_gaussian_noise_of_the_given_std():
    x = _batch(200, 40)
    out = np.asarray(augment.augment_batch(_only(noise=0.3), {}, x, jax.random.PRNGKey(2)))
    noise = out - np.asarray(x)
    assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(0.3, rel=0.03)


def _images(batch: int = 3, height: int = 4, width: int = 5) -> jax.Array:
    return _batch(batch, height * width * 2).reshape(batch, height, width, 2)


def test_a_crop_is_a_window_of_the_zero_padded_image():
    x, pad = _images(), 2
    offsets = jnp.asarray([[1, -2], [-2, 2], [0, 0]])
    cropped = np.asarray(augment.crop(x, offsets))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for b, (rows, columns) in enumerate(np.asarray(offsets)):
        top, left = pad - rows, pad - columns
        np.testing.assert_array_equal(cropped[b], padded[b, top : top + 4, left : left + 5])


def test_a_flip_mirrors_the_flagged_images_left_to_right():
    x = _images()
    flipped = np.asarray(augment.flip(x, jnp.asarray([True, False, True])))
    for b, mirrored in enumerate([True, False, True]):
        expected = np.asarray(x[b])[:, ::-1] if mirrored else np.asarray(x[b])
        np.testing.assert_array_equal(flipped[b], expected)


def test_random_crops_and_flips_stay_within_the_padding_and_flip_about_half():
    x = jnp.zeros((400, 9, 9, 1)).at[:, 4, 4, 0].set(1.0)  # one lit pixel in the centre
    out = augment.augment_batch(_only(crop=2, flip=True), {}, x, jax.random.PRNGKey(1))
    rows, columns = np.divmod(np.asarray(out)[..., 0].reshape(400, 81).argmax(axis=1), 9)
    assert set(rows - 4) == set(columns - 4) == set(range(-2, 3))
    marker = jnp.zeros((400, 3, 3, 1)).at[:, 0, 0, 0].set(1.0)  # top-left: right when flipped
    mirrored = np.asarray(
        augment.augment_batch(_only(flip=True), {}, marker, jax.random.PRNGKey(2))
    )
    assert 0.4 < mirrored[:, 0, 2, 0].mean() < 0.6


def test_a_swept_value_is_read_from_the_members_hparams():
    x = _batch(200, 40)
    swept = augment.Augmentation(noise=0.0, swept=frozenset({"augment_noise"}))
    key = jax.random.PRNGKey(2)
    traced = augment.augment_batch(swept, {"augment_noise": jnp.float32(0.3)}, x, key)
    constant = augment.augment_batch(_only(noise=0.3), {}, x, key)
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(constant))


def test_no_augmentation_returns_the_batch_itself():
    x = _batch()
    assert augment.augment_batch(augment.NO_AUGMENTATION, {}, x, jax.random.PRNGKey(0)) is x
    assert not augment.NO_AUGMENTATION.active


def test_default_config_has_augmentation_off_and_members_carry_nothing():
    spec = front_end.resolve(small_config())
    program, _, _ = build(spec, blobs())
    assert program.augmentation == augment.NO_AUGMENTATION
    assert not any(name.startswith("augment_") for name in ensemble.members(spec)[0].hparams(spec))


# -- in training ---------------------------------------------------------------------------------

AUGMENTED = {"augment.shift": 2, "augment.noise": 0.5, "augment.scale": 0.2}


def test_augmentation_changes_training_but_not_the_evaluated_splits():
    dataset = blobs()
    key = jax.random.PRNGKey(3)
    plain = loop.fit(small_config(), dataset, key)
    augmented = loop.fit(small_config(**AUGMENTED), dataset, key)
    assert not np.allclose(_leaves(plain.state.params)[0], _leaves(augmented.state.params)[0])
    # Every evaluation (training metrics included) reads the stored, unaugmented splits.
    state = augmented.state
    on_device = device.device_data(dataset)
    for split, prefix in ((on_device.train, "train"), (on_device.val, "val")):
        metrics = train.evaluate(state, state.params, split, augmented.program)
        assert float(metrics["loss"]) == pytest.approx(
            float(np.ravel(augmented.history[-1][f"{prefix}_loss"])[0]), rel=1e-6
        )


def test_member_i_of_an_augmentation_sweep_equals_the_single_run():
    dataset = blobs()
    config = small_config(
        **{
            "restarts.num": 1,
            "augment.shift_mode": "zero",
            "restarts.sweep": "augment.noise=[0.0, 0.5]; augment.shift=[0, 2]",
        }
    )
    root = jax.random.PRNGKey(5)
    spec = front_end.resolve(config)
    result = ensemble.fit_ensemble(config, dataset, root)
    assert len(result.members) == 4
    for member in result.members:
        key = train.member_key(root, member.seed_index)
        alone = loop.fit(config, dataset, key, hparams=member.hparams(spec))
        # The same values as plain config fields (constants in the program, not traced).
        values = {
            field: int(v) if field == "augment.shift" else v for field, v in member.swept.items()
        }
        unswept = with_values(config, {**values, "restarts.sweep": ""})
        constant = loop.fit(unswept, dataset, key)
        stacked = _leaves(ensemble.member_state(result.state, member.index).params)
        for fit_result in (alone, constant):
            for a, b in zip(stacked, _leaves(fit_result.state.params), strict=True):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # The swept values reached the members: variant 0 (no augmentation) and 3 end differently.
    first, last = (_leaves(ensemble.member_state(result.state, i).params)[0] for i in (0, 3))
    assert not np.allclose(first, last)


def _image_blobs():
    x_train, y_train, x_test, y_test = blob_arrays(num_features=16)
    return data.from_arrays(
        x_train.reshape(-1, 4, 4, 1),
        y_train,
        x_test.reshape(-1, 4, 4, 1),
        y_test,
        task="classification",
    )


def test_member_i_of_an_image_augmentation_sweep_equals_the_single_run():
    dataset = _image_blobs()
    config = small_config(**{"augment.flip": True, "restarts.sweep": "augment.crop=[1, 2]"})
    root = jax.random.PRNGKey(6)
    spec = front_end.resolve(config)
    result = ensemble.fit_ensemble(config, dataset, root)
    ends = []
    for member in result.members:
        unswept = with_values(config, {"augment.crop": int(member.swept["augment.crop"])})
        alone = loop.fit(
            with_values(unswept, {"restarts.sweep": ""}), dataset, train.member_key(root, 0)
        )
        stacked = _leaves(ensemble.member_state(result.state, member.index).params)
        for a, b in zip(stacked, _leaves(alone.state.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        ends.append(stacked[0])
    assert spec.config.augment.flip and not np.allclose(*ends)  # the crops differ


# A launch-sized run; the fast tier's in-process check above reads the train and val splits.
@pytest.mark.slow
def test_an_ensembles_test_metrics_are_those_of_the_unaugmented_test_split(tmp_path, data_dir):
    config = _mnist1d_config(data_dir)
    runner.run(config, tmp_path / "run", progress=False, out=io.StringIO())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    loaded = export.load_model(tmp_path / "run" / "best")
    dataset = data.load(loaded.config.dataset)
    program, apply_fn, make_tx = build(front_end.resolve(loaded.config), dataset)
    state = train.init_state(
        program, loaded.hparams, jax.random.PRNGKey(0), apply_fn=apply_fn, make_tx=make_tx
    )
    split = device.SplitData(jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test))
    metrics = train.evaluate(state, loaded.params, split, program)
    assert float(metrics["accuracy"]) == pytest.approx(summary["best"]["test_accuracy"], abs=1e-6)


# -- resume --------------------------------------------------------------------------------------


class Interrupted(Exception):
    """Stands for the process being killed."""


def _mnist1d_config(data_dir: str):
    config = default_config()
    config.dataset.data_dir = data_dir
    config.model.hidden = (16,)
    config.training.steps = 40
    config.training.eval_every = 10
    config.restarts.num = 2
    config.restarts.sweep = "augment.noise=[0.1, 0.4]"
    config.augment.shift = 3
    config.augment.scale = 0.1
    config.checkpoint.every_steps = 20
    config.tensorboard.enabled = False
    return config


def _final_state(workdir: Path) -> list[np.ndarray]:
    checkpoints = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    step = checkpoints.steps()[-1]
    fields = {name: checkpoints.shapes(step, name) for name in checkpoint.state_fields()}
    tree = checkpoints.restore_fields(step, fields)
    checkpoints.close()
    return [step, *_leaves(tree)]


def _digits_images_config(data_dir: str):
    """Every transform at once on images: crops, flips, shifts of rows, scaling and noise."""
    config = _mnist1d_config(data_dir)
    config.dataset.name = "digits_images"
    config.restarts.sweep = "augment.crop=[1, 2]"
    config.augment.flip = True
    config.augment.noise = 0.1
    return config


@pytest.mark.parametrize(
    "make_config", tiered([_digits_images_config, _mnist1d_config], {_digits_images_config})
)
def test_an_interrupted_augmented_run_resumes_bit_for_bit(
    make_config, tmp_path, data_dir, monkeypatch
):
    config = make_config(data_dir)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    runner.run(config, reference, progress=False, out=io.StringIO())
    original = metrics_log.Progress.__call__

    def stop_after_30(self, evaluation):
        original(self, evaluation)
        if evaluation.step == 30:
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(metrics_log.Progress, "__call__", stop_after_30)
        with pytest.raises(Interrupted):
            runner.run(config, resumed, progress=False, out=io.StringIO())
    out = io.StringIO()
    runner.run(config, resumed, progress=False, out=out)
    assert "(step 20)" in out.getvalue()
    assert (resumed / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    for a, b in zip(_final_state(resumed), _final_state(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    shutil.rmtree(tmp_path)


# -- bad input from Python -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"augment.noise": -0.1}, "augment.noise must be a standard deviation >= 0"),
        ({"augment.scale": 1.0}, "augment.scale must be in [0, 1)"),
        ({"augment.shift": -1}, "augment.shift must be an integer in [0, 1000000]"),
        ({"augment.shift_mode": "wrap"}, "augment.shift_mode: unknown 'wrap'"),
        ({"restarts.sweep": "augment.shift=[1, 1.5]"}, "augment.shift must be a whole number"),
        ({"restarts.sweep": "augment.scale=[0.1, 2]"}, "augment.scale must be in [0, 1)"),
        ({"restarts.sweep": "augment.shift_mode=[zero, wrap]"}, "unknown 'wrap'"),
    ],
)
def test_bad_augmentation_is_one_config_error(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        loop.fit(small_config(**overrides), blobs(), jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"augment.crop": 1}, "augment.crop transforms images [height, width, channels], but"),
        ({"augment.flip": True}, "augment.flip transforms images [height, width, channels]"),
        ({"augment.crop": -1}, "augment.crop must be an integer in [0, 1000000]"),
        ({"restarts.sweep": "augment.crop=[0, 1.5]"}, "augment.crop must be a whole number"),
    ],
)
def test_bad_image_augmentation_is_one_config_error(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        loop.fit(small_config(**overrides), blobs(), jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "overrides", [{"augment.crop": 4}, {"restarts.sweep": "augment.crop=[1, 5]"}]
)
def test_a_crop_of_the_image_size_is_refused(overrides):
    with pytest.raises(ConfigError, match=re.escape("augment.crop=")):
        loop.fit(small_config(**overrides), _image_blobs(), jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "overrides", [{"augment.shift": 6}, {"restarts.sweep": "augment.shift=[1,9]"}]
)
def test_a_shift_of_the_input_length_is_refused(overrides):
    with pytest.raises(ConfigError, match=re.escape("not smaller than the input length 6")):
        loop.fit(small_config(**overrides), blobs(num_features=6), jax.random.PRNGKey(0))


# -- the permuted data set -----------------------------------------------------------------------


def test_permute_seed_applies_one_fixed_permutation_to_every_split(dataset_config):
    plain = data.load(dataset_config("mnist1d"))
    config = dataset_config("mnist1d")
    config.permute_seed = 3
    permuted = data.load(config)
    order = data.dataset.position_permutation(plain.feature_shape[0], 3)
    assert sorted(order.tolist()) == list(range(40)) and (order != np.arange(40)).any()
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(
            getattr(permuted, f"x_{split}"), getattr(plain, f"x_{split}")[:, order], atol=1e-6
        )
        np.testing.assert_array_equal(getattr(permuted, f"y_{split}"), getattr(plain, f"y_{split}"))
    again = data.load(config)
    np.testing.assert_array_equal(again.x_test, permuted.x_test)


def test_a_negative_permute_seed_is_refused(dataset_config):
    config = dataset_config("mnist1d")
    config.permute_seed = -1
    with pytest.raises(
        ConfigError, match=re.escape("dataset.permute_seed must be an integer in [0, 4294967295]")
    ):
        data.load(config)
