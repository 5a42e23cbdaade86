"""scikit-learn's multi-layer perceptron as a Flax module, and its output layers and losses.

`SklearnMLP` draws its weights as scikit-learn does (Glorot's uniform bound, factor 2 for
the logistic activation and 6 otherwise, intercepts from the same range) and names its
layers `layer_0`, `layer_1`, ...: `coefs_[i]` is `layer_i/kernel`, `intercepts_[i]` is
`layer_i/bias`. An `Output` is scikit-learn's output activation with its canonical loss:
softmax with cross entropy (multiclass), logistic with binary cross entropy (binary and
multilabel), identity with half the squared error, and exp with the Poisson deviance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn.activations import ACTIVATIONS


def _uniform(factor: float, fans: tuple[int, int]) -> Callable[..., jax.Array]:
    """scikit-learn's initialiser of a layer with these fans, for its weights and intercepts."""
    bound = (factor / (fans[0] + fans[1])) ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class SklearnMLP(nn.Module):
    """Dense layers `hidden` wide with `activation`, then `num_outputs` raw outputs."""

    hidden: tuple[int, ...]
    activation: str  # a jaxnn activation name
    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, n_features] -> raw outputs [B, num_outputs] (before the output activation)."""
        factor = 2.0 if self.activation == "sigmoid" else 6.0
        activate = ACTIVATIONS[self.activation]
        widths = (*self.hidden, self.num_outputs)
        fan_in = x.shape[-1]
        for i, width in enumerate(widths):
            fans = (fan_in, width)
            layer = nn.Dense(
                width,
                name=f"layer_{i}",
                kernel_init=_uniform(factor, fans),
                bias_init=_uniform(factor, fans),
            )
            x = layer(x)
            if i < len(self.hidden):
                x = activate(x, 0.01)
            fan_in = width
        return x


@dataclasses.dataclass(frozen=True)
class Output:
    """An output activation and its per-example loss on the raw outputs.

    Attributes:
      name: scikit-learn's `out_activation_`.
      link: raw outputs [B, O] -> predictions (probabilities, values) [B, O].
      loss: (raw outputs [B, O], targets [B, O]) -> per-example loss [B].
    """

    name: str
    link: Callable[[jax.Array], jax.Array]
    loss: Callable[[jax.Array, jax.Array], jax.Array]


def _cross_entropy(raw: jax.Array, targets: jax.Array) -> jax.Array:
    return -jnp.sum(targets * jax.nn.log_softmax(raw, axis=-1), axis=-1)


def _binary_cross_entropy(raw: jax.Array, targets: jax.Array) -> jax.Array:
    # -[y log s(z) + (1 - y) log(1 - s(z))] summed over the outputs, as scikit-learn's
    # binary_log_loss sums its columns.
    return jnp.sum(jax.nn.softplus(raw) - targets * raw, axis=-1)


def _half_squared_error(raw: jax.Array, targets: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean((raw - targets) ** 2, axis=-1)


def _poisson(raw: jax.Array, targets: jax.Array) -> jax.Array:
    # The Poisson deviance's terms that depend on the prediction exp(raw).
    return jnp.sum(jnp.exp(raw) - targets * raw, axis=-1)


OUTPUTS: dict[str, Output] = {
    "softmax": Output("softmax", lambda raw: jax.nn.softmax(raw, axis=-1), _cross_entropy),
    "logistic": Output("logistic", jax.nn.sigmoid, _binary_cross_entropy),
    "identity": Output("identity", lambda raw: raw, _half_squared_error),
    "exp": Output("exp", jnp.exp, _poisson),
}
