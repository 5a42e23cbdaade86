"""The image modules (jaxnn.nn.cnn2d, jaxnn.nn.resnet): shapes, ResNet-18's size, gradients
against finite differences in float64, BatchNorm statistics as model state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxnn.nn.cnn2d import CNN2D
from jaxnn.nn.family import init_model, split_variables, train_apply
from jaxnn.nn.resnet import ResNet
from tests.helpers import tiered

SMALL = {
    "cnn2d": lambda **kw: CNN2D((3, 4), (3, 2), (1, 2), 3, pool="max", hidden=(5,), **kw),
    "resnet": lambda **kw: ResNet((1, 1), (3, 4), 3, **kw),
    "resnet_preact": lambda **kw: ResNet((1, 1), (3, 4), 3, preact=True, **kw),
}


def test_resnet18_has_torchvisions_parameter_count():
    # torchvision.models.resnet18(num_classes=10): 11,181,642 parameters
    module = ResNet((2, 2, 2, 2), (64, 128, 256, 512), 10, stem="imagenet")
    variables = jax.eval_shape(
        lambda: init_model(module, jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    )
    params, state = split_variables(variables)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 11_181_642
    assert list(state) == ["batch_stats"]


GRADIENT_CASES = [(name, norm) for name in sorted(SMALL) for norm in ("group", "layer", "none")]


@pytest.mark.parametrize(
    ("name", "norm"),
    tiered(GRADIENT_CASES, fast=[("cnn2d", "none")]),
)
def test_gradients_match_finite_differences(name, norm):
    module = SMALL[name](norm=norm, activation="tanh")
    rng = np.random.default_rng(0)
    x32 = jnp.asarray(rng.normal(size=(2, 8, 8, 2)), jnp.float32)
    labels = jnp.asarray([0, 2])
    params32 = init_model(module, jax.random.key(1), x32)["params"]
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params32)
        params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)  # zero scales away
        x = jnp.asarray(x32, jnp.float64)

        def loss(p):
            logits = module.apply({"params": p}, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])

        flat, unravel = ravel_pytree(params)
        eps = 1e-6
        picks = np.random.default_rng(1).choice(flat.size, size=min(16, flat.size), replace=False)
        basis = jnp.eye(flat.size, dtype=jnp.float64)[picks] * eps
        numeric = jax.jit(
            jax.vmap(lambda d: (loss(unravel(flat + d)) - loss(unravel(flat - d))) / (2 * eps))
        )(basis)
        analytic = ravel_pytree(jax.jit(jax.grad(loss))(params))[0][picks]
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batchnorm_statistics_move_in_training_and_are_read_in_evaluation(name):
    module = SMALL[name](norm="batch")
    x = jax.random.normal(jax.random.key(2), (8, 8, 8)) * 3 + 1
    params, state = split_variables(init_model(module, jax.random.key(0), x))
    before = module.apply({"params": params, **state}, x)
    _, new_state = train_apply(module, params, state, x, dropout_key=None)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state, new_state)
    assert max(jax.tree.leaves(moved)) > 0.01
    after = module.apply({"params": params, **new_state}, x)
    assert not np.allclose(before, after)
