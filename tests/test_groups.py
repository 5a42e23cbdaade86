"""Members in groups: the same members' results as the plain vmap, the same randomness, one
compiled program; and the memory account that refuses a run the machine cannot hold."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import front_end
from jaxnn.core import ensemble, groups, loop, memory, train
from jaxnn.data import dataset as dataset_lib
from jaxnn.data import device
from jaxnn.errors import ConfigError
from tests.helpers import blobs, small_config

# Widths of one vmapped operation change XLA's float order in reductions (a mean over a split
# differs in the last bit); the trained weights agree far below any training effect.
TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize(
    ("members", "group", "shards", "layout"),
    [
        (10, 0, 1, (0, 0, 10)),
        (10, 10, 1, (0, 0, 10)),
        (10, 3, 1, (3, 3, 1)),
        (10, 5, 1, (2, 5, 0)),
        (12, 4, 2, (1, 4, 2)),
        (12, 2, 3, (2, 2, 0)),
    ],
)
def test_group_layout_covers_every_member_of_each_shard(members, group, shards, layout):
    full, size, rest = groups.group_layout(members, group, shards)
    assert (full, size, rest) == layout
    assert full * size + rest == members // shards


@pytest.mark.parametrize(("members", "group", "shards"), [(10, 3, 1), (12, 4, 2), (12, 2, 3)])
def test_grouped_vmap_gives_every_member_its_own_result_in_member_order(members, group, shards):
    def fn(x, shift, row):
        return {"doubled": 2 * x + shift, "row": row.sum() * jnp.ones(3)}

    x = jnp.arange(members, dtype=jnp.float32)
    rows = jnp.arange(members * 4, dtype=jnp.float32).reshape(members, 4)
    grouped = groups.grouped_vmap(
        fn, (0, None, 0), num_members=members, group_size=group, num_shards=shards
    )
    expected = jax.vmap(fn, in_axes=(0, None, 0))(x, 1.0, rows)
    for name, value in jax.jit(grouped)(x, 1.0, rows).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def _fit(group: int, **overrides):
    config = small_config(
        **{"restarts.num": 5, "model.dropout": 0.3, "mesh.member_group": group, **overrides}
    )
    return config, ensemble.fit_ensemble(config, blobs(), jax.random.PRNGKey(11))


def test_grouped_members_equal_the_ungrouped_run_and_keep_their_randomness():
    # Groups of 2 with a remainder of 1 member against all 5 at once (a group size at least
    # the member count is the plain vmap).
    _, plain = _fit(5)
    config, grouped = _fit(2)
    assert (plain.group_size, grouped.group_size) == (0, 2)
    # The keys are the members' own, whatever the grouping; with dropout 0.3 and independent
    # batch orders, another member's randomness would move the weights by far more than this.
    np.testing.assert_array_equal(grouped.state.member_key, plain.state.member_key)
    for a, b in zip(_leaves(grouped.state), _leaves(plain.state), strict=True):
        np.testing.assert_allclose(a, b, **TOLERANCE)
    for row_a, row_b in zip(grouped.history, plain.history, strict=True):
        for name in row_a:
            np.testing.assert_allclose(row_a[name], row_b[name], **TOLERANCE, err_msg=name)
    # Member i of the grouped run is still fit alone with member i's key.
    alone = loop.fit(config, blobs(), train.member_key(jax.random.PRNGKey(11), 4))
    for a, b in zip(
        _leaves(ensemble.member_state(grouped.state, 4).params),
        _leaves(alone.state.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # The members trained apart from each other (the comparison above is not of copies).
    assert not np.allclose(
        grouped.state.params["head"]["kernel"][0], grouped.state.params["head"]["kernel"][1]
    )


def test_a_grouped_chunk_compiles_once_for_every_chunk():
    config = small_config(**{"restarts.num": 6, "mesh.member_group": 4})
    data = blobs()
    spec = front_end.resolve(config)
    trainer = ensemble.make_trainer(spec, data, jax.random.PRNGKey(0))
    assert trainer.group_size == 4
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    placed = device.device_data(data)
    for step in (0, 10, 20):
        state, _ = trainer.chunk_fn(state, placed, jnp.asarray(step, jnp.int32), None)
    assert trainer.chunk_fn._cache_size() == 1


def test_the_automatic_group_follows_the_backend_and_the_members_working_set():
    member_bytes = groups.CPU_GROUP_BYTES // 10
    assert groups.auto_group_size("cpu", member_bytes) == 10
    assert groups.auto_group_size("cpu", 10 * groups.CPU_GROUP_BYTES) == 1
    assert groups.auto_group_size("gpu", member_bytes) == 0  # an accelerator: all at once


@pytest.mark.parametrize("value", [-1, 2**31])
def test_a_bad_member_group_is_refused(value):
    with pytest.raises(ConfigError, match=r"mesh\.member_group must be an integer"):
        front_end.resolve(small_config(**{"mesh.member_group": value}))


def test_the_memory_account_matches_the_state_and_grows_with_the_members():
    config = small_config(**{"restarts.num": 4})
    data = blobs()
    trainer = ensemble.make_trainer(front_end.resolve(config), data, jax.random.PRNGKey(0))
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    account = trainer.memory
    assert account.num_members == 4
    assert account.member.state * 4 == memory.tree_bytes(state)
    assert (
        account.member.params == account.member.best_params == memory.tree_bytes(state.params) // 4
    )
    assert account.member.step_activations > 0 and account.member.eval_activations > 0
    bigger = small_config(**{"restarts.num": 400})
    larger = ensemble.make_trainer(front_end.resolve(bigger), data, jax.random.PRNGKey(0))
    assert larger.memory.checkpoint == 100 * account.checkpoint
    assert larger.memory.device > account.device


def test_check_fits_refuses_with_both_figures():
    member = memory.MemberBytes(
        params=2**30,
        opt_state=2**30,
        best_params=2**30,
        other_state=64,
        step_activations=2**20,
        eval_activations=2**20,
    )
    need = memory.RunBytes(
        num_members=10**6,
        live_members=8,
        member=member,
        data=2**20,
        num_devices=1,
        accelerator=False,
    )
    with pytest.raises(ConfigError) as error:
        memory.check_fits(need, "cpu", jax.devices())
    message = str(error.value)
    assert "\n" not in message
    assert "needs about" in message and "but host RAM has" in message
    assert "1000000 member(s)" in message


@pytest.mark.parametrize(
    "overrides",
    [
        {"restarts.num": 10**9},
        {"restarts.num": 10**8},
        {"model.hidden": (100_000_000,), "model.dropout": 0.5},
    ],
    ids=["1e9 members", "1e8 members", "1e8 hidden units"],
)
def test_a_run_too_large_for_the_machine_is_refused_within_seconds(overrides):
    with pytest.raises(ConfigError, match=r"the run needs about .* but host RAM has"):
        ensemble.fit_ensemble(small_config(**overrides), blobs(), jax.random.PRNGKey(0))


def test_from_arrays_gives_a_huge_label_one_class_not_that_many():
    x = np.zeros((4, 3), np.float32)
    y = np.array([0, 1, 0, 2**40])
    data = dataset_lib.from_arrays(x, y, x, y, task="classification", validation_fraction=0.5)
    assert data.num_outputs == 3
    assert list(data.classes) == [0, 1, 2**40]
