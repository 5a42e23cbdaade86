"""Diagnostics: per-layer gradient norms against jax.grad, dead and saturated units by hand."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs, small_config

from jaxnn import front_end
from jaxnn.analysis import diagnostics
from jaxnn.core import ensemble
from jaxnn.core.program import make_program
from jaxnn.data import device
from jaxnn.io import atomic, run_files
from jaxnn.nn import losses, mlp


def _initial(config, data):
    key = jax.random.PRNGKey(config.seed)
    trainer = ensemble.make_trainer(front_end.resolve(config), data, key)
    return trainer, ensemble.init_members(trainer, key)


def test_grad_norms_match_direct_jax_grad():
    data = blobs()
    config = small_config(**{"restarts.num": 2, "model.activation": "tanh"})
    trainer, state = _initial(config, data)
    values = diagnostics.compute(state, device.device_data(data), trainer.program)
    model = mlp.MLP(hidden=(16, 16), num_outputs=3, activation="tanh")

    def loss(p):
        outputs = model.apply({"params": p}, jnp.asarray(data.x_train))
        return jnp.mean(losses.per_example_loss("cross_entropy", outputs, data.y_train))

    for member in range(2):
        params = jax.tree_util.tree_map(lambda leaf, m=member: leaf[m], state.params)
        grads = jax.grad(loss)(params)
        for layer in ("hidden_0", "hidden_1", "head"):
            for name in ("kernel", "bias"):
                expected = float(jnp.linalg.norm(grads[layer][name]))
                got = values[f"grad_norm/{layer}/{name}"][member]
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
            weight = float(jnp.linalg.norm(params[layer]["kernel"]))
            np.testing.assert_allclose(
                values[f"weight_norm/{layer}/kernel"][member], weight, rtol=1e-5
            )
    # tanh: saturation applies, dead units do not (None, not 0).
    assert values["dead_fraction"] is None
    assert values["saturated_fraction"] is not None


def test_update_ratio_is_learning_rate_times_grad_over_weight_for_sgd():
    data = blobs()
    config = small_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 0.1})
    trainer, state = _initial(config, data)
    values = diagnostics.compute(state, device.device_data(data), trainer.program)
    expected = 0.1 * values["grad_norm/hidden_0/kernel"] / values["weight_norm/hidden_0/kernel"]
    np.testing.assert_allclose(values["update_ratio/hidden_0/kernel"], expected, rtol=1e-5)


def test_dead_unit_fraction_on_a_hand_built_net():
    # Layer 0 has 4 units: unit 0 and 2 get a -10 bias (dead on all inputs in [0, 1]); units 1
    # and 3 are positive. Layer 1 has 2 units, one dead. 3 of 6 hidden units are dead.
    spec = front_end.resolve(small_config(**{"model.hidden": (4, 2)}))
    data = blobs(num_features=2, num_classes=2)
    program = make_program(spec, data)
    params = {
        "hidden_0": {"kernel": jnp.ones((2, 4)), "bias": jnp.array([-10.0, 1.0, -10.0, 1.0])},
        "hidden_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.array([-100.0, 0.5])},
        "head": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)},
    }
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, size=(50, 2)), jnp.float32)
    hparams = spec.base_hparams
    pre = diagnostics.preactivations(program, params, {}, hparams, x)
    assert list(pre) == ["hidden_0", "hidden_1"]
    assert [h.shape for h in pre.values()] == [(50, 4), (50, 2)]
    fractions = diagnostics.unit_fractions(program, pre)
    assert float(fractions["dead_fraction/hidden_0"]) == pytest.approx(0.5)
    assert float(fractions["dead_fraction/hidden_1"]) == pytest.approx(0.5)
    assert float(fractions["dead_fraction"]) == pytest.approx(3 / 6)
    assert "saturated_fraction" not in fractions
    # A unit alive on a single example is not dead.
    params["hidden_0"]["bias"] = jnp.array([-1.5, 1.0, -10.0, 1.0])
    x = x.at[0].set(jnp.array([1.0, 1.0]))
    fractions = diagnostics.unit_fractions(
        program, diagnostics.preactivations(program, params, {}, hparams, x)
    )
    assert float(fractions["dead_fraction/hidden_0"]) == pytest.approx(0.25)


def test_saturated_fraction_uses_documented_threshold():
    config = small_config(**{"model.hidden": (2,), "model.activation": "sigmoid"})
    program = make_program(front_end.resolve(config), blobs(num_features=1, num_classes=2))
    pre = {"hidden_0": jnp.array([[5.0, 3.9], [-4.1, 0.0]])}  # |x| > 4 for 2 of 4 entries
    fractions = diagnostics.unit_fractions(program, pre)
    assert float(fractions["saturated_fraction"]) == pytest.approx(0.5)
    assert float(fractions["saturated_fraction/hidden_0"]) == pytest.approx(0.5)
    assert "dead_fraction" not in fractions
    assert diagnostics.SATURATION_THRESHOLDS["sigmoid"] == 4.0


def test_monitor_writes_one_row_per_member_with_none_for_not_applicable(tmp_path):
    data = blobs()
    config = small_config(**{"restarts.num": 2, "model.activation": "sigmoid"})
    key = jax.random.PRNGKey(0)
    trainer = ensemble.make_trainer(front_end.resolve(config), data, key)
    path = tmp_path / run_files.DIAGNOSTICS
    monitor = diagnostics.Monitor(path, device.device_data(data), trainer.program, [5, 6])
    ensemble.fit_ensemble(config, data, key, on_eval=monitor)

    rows = atomic.read_jsonl(path)
    assert len(rows) == 3 * 2  # 30 steps / eval_every 10, two members
    assert {r["member"] for r in rows} == {5, 6}
    assert all(r["dead_fraction"] is None for r in rows)
    assert all(0.0 <= r["saturated_fraction"] <= 1.0 for r in rows)
    assert all(r["grad_norm/head/kernel"] > 0 for r in rows)
    from jaxnn.reporting import study_report

    written = {Path(p).name for p in study_report.diagnostics_figures(monitor.history, tmp_path)}
    assert written == {"grad_norm.png", "update_ratio.png", "saturated_fraction.png"}
