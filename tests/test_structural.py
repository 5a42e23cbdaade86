"""Structural sweeps: one program per variant, all members in one merged summary."""

from __future__ import annotations

import jax
import numpy as np
from helpers import blobs, small_config

from jaxnn import front_end
from jaxnn.core import ensemble, loop, train, variants
from jaxnn.data import device
from jaxnn.reporting import summary


def test_variant_configs_keep_only_the_numeric_sweep():
    config = small_config(
        **{"restarts.sweep": "model.activation=[relu, tanh]; optimizer.learning_rate=[0.01, 0.1]"}
    )
    spec = front_end.resolve(config)
    specs = spec.variants
    assert [v for v, _ in specs] == [{"model.activation": "relu"}, {"model.activation": "tanh"}]
    assert variants.variant_specs(spec) == [(dict(v), s) for v, s in specs]
    for variant, variant_spec in specs:
        assert variant_spec.config.model.activation == variant["model.activation"]
        assert not variant_spec.structural
        members = ensemble.members(variant_spec)
        assert [m.swept for m in members] == [
            {"optimizer.learning_rate": 0.01},
            {"optimizer.learning_rate": 0.1},
        ]
    assert config.model.activation == "relu" and "tanh" in config.restarts.sweep  # unchanged
    assert spec.structural
    plain = front_end.resolve(small_config())
    assert not plain.structural
    assert variants.variant_specs(plain) == [({}, plain)]


def test_two_activations_give_members_of_both_in_one_summary():
    data = blobs()
    config = small_config(
        **{
            "restarts.num": 2,
            "restarts.sweep": "model.activation=[relu, tanh]; optimizer.learning_rate=[0.02, 0.1]",
        }
    )
    key = jax.random.PRNGKey(config.seed)
    seen = []

    def on_eval(variant, variant_spec, members):
        return lambda evaluation: seen.append(
            (variant["model.activation"], [m.index for m in members])
        )

    runs = variants.fit_variants(config, data, key, on_eval=on_eval)
    assert [r.offset for r in runs] == [0, 4]
    assert {tuple(i) for _, i in seen} == {(0, 1, 2, 3), (4, 5, 6, 7)}
    merged, predictions = summary.summarize_runs(runs, config, data)
    rows = merged["members"]
    assert [r["index"] for r in rows] == list(range(8))
    assert [r["variant"]["model.activation"] for r in rows] == ["relu"] * 4 + ["tanh"] * 4
    assert [r["hparams"]["optimizer.learning_rate"] for r in rows[:4]] == [0.02, 0.02, 0.1, 0.1]
    assert predictions.shape[0] == 8
    losses = np.array([r["val_loss"] for r in rows])
    assert merged["best_member"] == int(np.argmin(losses))
    assert len(merged["restart_stats"]["expected_best_of_k"]) == 8
    assert [v["members"] for v in merged["variants"]] == [[0, 4], [4, 8]]
    # Member 4 (tanh, seed 0, lr 0.02) is exactly the single tanh run with seed 0's key.
    tanh_config = runs[1].config
    single = loop.fit(tanh_config, data, train.member_key(key, 0), hparams={"learning_rate": 0.02})
    single_summary_loss = float(
        train.evaluate(
            single.state, single.state.best_params, device.device_data(data).val, single.program
        )["loss"]
    )
    np.testing.assert_allclose(rows[4]["val_loss"], single_summary_loss, rtol=1e-5)
    assert rows[0]["val_loss"] != rows[4]["val_loss"]
