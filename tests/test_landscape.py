"""Loss landscapes: interpolation ends, barrier height, 2-D slices."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import blobs, small_config

from jaxnn.analysis import landscape
from jaxnn.core import ensemble, variants
from jaxnn.data import device
from jaxnn.errors import ConfigError


@pytest.fixture(scope="module")
def trained():
    data = blobs()
    config = small_config(**{"restarts.num": 3})
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    return data, result


def test_interpolation_ends_reproduce_the_members_losses(trained):
    data, result = trained
    val = device.device_data(data).val
    evaluate = landscape.evaluator(result, 0, val)
    a, b = landscape.member_params(result, 0), landscape.member_params(result, 1)
    line = landscape.interpolate(evaluate, a, b, np.linspace(0, 1, 5))
    members, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
    np.testing.assert_allclose(line["loss"][0], members["loss"][0], rtol=1e-6)
    np.testing.assert_allclose(line["loss"][-1], members["loss"][1], rtol=1e-6)
    np.testing.assert_allclose(line["accuracy"][[0, -1]], members["accuracy"][:2])
    assert line["loss"][0] != line["loss"][-1]


def test_barrier_height_against_the_chord():
    alphas = np.array([0.0, 0.5, 1.0])
    assert landscape.barrier_height(alphas, np.array([1.0, 3.0, 2.0])) == pytest.approx(1.5)
    assert landscape.barrier_height(alphas, np.array([1.0, 1.0, 1.0])) == pytest.approx(0.0)


def test_plane_through_three_solutions_hits_them(trained):
    data, result = trained
    evaluate = landscape.evaluator(result, 0, device.device_data(data).val)
    params = tuple(landscape.member_params(result, i) for i in range(3))
    plane = landscape.plane_through(evaluate, params, resolution=5, margin=0.0)
    members, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
    # The grid starts at a = (0, 0): its corner is member 0's loss.
    assert plane.x[0] <= 0.0 and plane.y[0] == 0.0
    ix = int(np.argmin(np.abs(plane.x)))
    np.testing.assert_allclose(plane.metrics["loss"][0, ix], members["loss"][0], rtol=1e-5)
    assert plane.metrics["loss"].shape == (5, 5)


def test_random_plane_is_centred_on_the_solution(trained):
    data, result = trained
    evaluate = landscape.evaluator(result, 0, device.device_data(data).val)
    params = landscape.member_params(result, 0)
    plane = landscape.random_plane(evaluate, params, jax.random.PRNGKey(1), resolution=5)
    members, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
    np.testing.assert_allclose(plane.metrics["loss"][2, 2], members["loss"][0], rtol=1e-5)
    assert plane.metrics["loss"].max() > plane.metrics["loss"][2, 2]
    direction = landscape.filter_normalized_direction(jax.random.PRNGKey(2), params)
    np.testing.assert_allclose(
        np.linalg.norm(direction["hidden_0"]["kernel"], axis=0),
        np.linalg.norm(params["hidden_0"]["kernel"], axis=0),
        rtol=1e-4,
    )
    assert not np.any(direction["hidden_0"]["bias"])


def test_landscape_across_structural_variants_is_a_config_error():
    data = blobs()
    config = small_config(
        **{
            "restarts.num": 1,
            "restarts.sweep": "model.activation=[relu, tanh]",
            "training.steps": 10,
        }
    )
    runs = variants.fit_variants(config, data, jax.random.PRNGKey(0))
    run, local = variants.landscape_members(runs, [1, 1])
    assert run.variant == {"model.activation": "tanh"} and local == [0, 0]
    with pytest.raises(ConfigError, match="one structural variant") as error:
        variants.landscape_members(runs, [0, 1])
    assert "\n" not in str(error.value)
