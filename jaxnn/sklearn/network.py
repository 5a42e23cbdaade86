"""scikit-learn's multi-layer perceptron as a Flax module, and its output layers and losses.

`SklearnMLP` draws its weights as scikit-learn does and names its layers `layer_0`,
`layer_1`, ...: `coefs_[i]` is `layer_i/kernel`, `intercepts_[i]` is `layer_i/bias`. An
`Output` (`OUTPUTS`) is scikit-learn's output activation with its canonical loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.nn.activations import ACTIVATIONS


def _uniform(bound: float) -> Callable[..., jax.Array]:
    """An initialiser uniform in [-bound, bound] (a layer's weights and intercepts)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class SklearnMLP(nn.Module):
    """Dense layers `hidden` wide with `activation`, then `num_outputs` raw outputs."""

    hidden: tuple[int, ...]
    activation: str  # a jaxnn activation name
    num_outputs: int

    def bound(self, fans: tuple[int, int]) -> float:
        """scikit-learn's (Glorot's) uniform bound of a layer's weights and intercepts."""
        factor = 2.0 if self.activation == "sigmoid" else 6.0
        return (factor / (fans[0] + fans[1])) ** 0.5

    def fans(self, num_features: int) -> list[tuple[int, int]]:
        """Each layer's (fan in, fan out) for inputs of `num_features`."""
        widths = (*self.hidden, self.num_outputs)
        return list(zip((num_features, *widths[:-1]), widths, strict=True))

    def draw_members(
        self, num_features: int, seed: int, starts: Sequence[int] | np.ndarray
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Member k's initial parameters and order key drawn on the host (nothing compiled) from
        `numpy.random.default_rng([seed, starts[k]])`: each layer's weights then intercepts
        uniform within the layer's bound (float32), then the order key (uint32 [2]).

        Returns:
          (params {layer_i: {kernel [K, fan_in, fan_out], bias [K, fan_out]}}, order keys
          uint32 [K, 2]).
        """
        rngs = [np.random.default_rng([seed, int(start)]) for start in starts]
        params = {}
        for i, fans in enumerate(self.fans(num_features)):
            bound = self.bound(fans)
            draw = lambda rng, shape, bound=bound: rng.uniform(-bound, bound, shape)
            members = [(draw(rng, fans), draw(rng, fans[1:])) for rng in rngs]
            params[f"layer_{i}"] = {
                "kernel": np.stack([k for k, _ in members]).astype(np.float32),
                "bias": np.stack([b for _, b in members]).astype(np.float32),
            }
        keys = np.stack([rng.integers(0, 2**32, 2, dtype=np.uint32) for rng in rngs])
        return params, keys

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, n_features] -> raw outputs [B, num_outputs] (before the output activation)."""
        activate = ACTIVATIONS[self.activation]
        for i, fans in enumerate(self.fans(x.shape[-1])):
            init = _uniform(self.bound(fans))
            x = nn.Dense(fans[1], name=f"layer_{i}", kernel_init=init, bias_init=init)(x)
            if i < len(self.hidden):
                x = activate(x, 0.01)
        return x


@dataclasses.dataclass(frozen=True)
class Output:
    """An output activation and its per-example loss on the raw outputs.

    Attributes:
      link: raw outputs [B, O] -> predictions (probabilities, values) [B, O].
      loss: (raw outputs [B, O], targets [B, O]) -> per-example loss [B].
    """

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
    "softmax": Output(lambda raw: jax.nn.softmax(raw, axis=-1), _cross_entropy),
    "logistic": Output(jax.nn.sigmoid, _binary_cross_entropy),
    "identity": Output(lambda raw: raw, _half_squared_error),
    "exp": Output(jnp.exp, _poisson),
}
