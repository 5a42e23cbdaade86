"""The studies of the model families (inductive bias, vanishing gradients, transfer with a CNN
body): smoke versions end to end, and the gradient measurement on a hand-made model."""

from __future__ import annotations

import types

import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_studies import _load, _run


def test_input_gradient_norms_measure_each_position_alone():
    study = _load("vanishing_gradients")
    weight = 3.0

    def apply_fn(params, model_state, x, hparams):
        del params, hparams
        outputs = jnp.stack([weight * x[:, -1], 0.0 * x[:, 0]], axis=1)  # the last position
        return outputs, model_state

    state = types.SimpleNamespace(apply_fn=apply_fn, hparams={}, model_state={})
    x = np.ones((16, 5), np.float32)
    norms = study.input_gradient_norms(
        state, None, lambda outputs, y: outputs[:, 0], x, np.zeros(16, np.int32)
    )
    np.testing.assert_allclose(norms, [0, 0, 0, 0, weight / np.sqrt(16)], rtol=1e-6)


def test_vanishing_gradients_smoke(tmp_path, data_dir):
    study = _load("vanishing_gradients")
    numbers = _run("vanishing_gradients", tmp_path, data_dir)
    assert set(numbers["cells"]) == {
        "rnn", "gru", "lstm", "gru chrono", "lstm chrono", "lstm forget_bias=3"
    }  # fmt: skip
    forget = numbers["lstm_forget_bias_init_last_over_first"]
    assert list(forget) == [f"{b:g}" for b in study.FORGET_BIASES]
    assert all(len(r) == study.NUM_INITS and np.isfinite(r).all() for r in forget.values())
    assert forget["1"] == pytest.approx(numbers["cells"]["lstm"]["init_last_over_first"])
    for cell in numbers["cells"].values():
        for stage in ("init", "trained"):
            norms = np.asarray(cell[stage]["norms"])
            assert norms.shape == (40,) and np.isfinite(norms).all() and (norms > 0).all()
            assert cell[stage]["last_over_first"] == pytest.approx(norms[-1] / norms[0])
        ratios = cell["init_last_over_first"]
        assert len(ratios) == study.NUM_INITS and len(set(ratios)) == study.NUM_INITS
        assert ratios[0] == pytest.approx(cell["init"]["last_over_first"])
        assert cell["init_last_over_first_median"] == pytest.approx(np.median(ratios))


def test_inductive_bias_smoke(tmp_path, data_dir):
    numbers = _run("inductive_bias", tmp_path, data_dir)
    assert set(numbers["models"]) == {"MLP", "CNN", "GRU"}
    for entry in numbers["models"].values():
        for dataset in ("standard", "permuted"):
            assert 0.0 <= entry[dataset]["selected"] <= 1.0
            assert 0.0 <= entry[dataset]["ensemble"] <= 1.0
        assert entry["drop"] == pytest.approx(
            entry["standard"]["selected"] - entry["permuted"]["selected"]
        )


def test_transfer_cnn_smoke(tmp_path, data_dir):
    numbers = _run("transfer_cnn", tmp_path, data_dir)
    for body in ("mlp", "cnn"):
        assert set(numbers["results"][body]["5"]) == {"scratch", "feature_extraction", "finetune"}
    config = (tmp_path / "transfer_cnn" / "cnn" / "source" / "config.json").read_text()
    assert '"cnn1d"' in config
