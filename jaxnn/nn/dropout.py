"""`Dropout`: flax.linen.Dropout that also takes a traced rate (one per member).

flax.linen.Dropout asks `self.rate == 0.0` in Python, which a member's traced hyperparameter
cannot answer. This drop-in has its signature and, for a Python rate, its exact computation; a
traced rate draws the same mask from the same key, so a rate of 0 passes the inputs through
unchanged and 1 gives zeros.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import PRNGKey


class Dropout(nn.Dropout):
    """flax.linen.Dropout whose `rate` (the dropout probability) may be a traced scalar; its
    other attributes (broadcast_dims, deterministic, rng_collection) are flax's."""

    # Wider than flax's `rate: float` on purpose: this class's own __call__ handles both.
    rate: float | jax.Array  # type: ignore[assignment]

    @nn.compact
    def __call__(
        self, inputs: jax.Array, deterministic: bool | None = None, rng: PRNGKey | None = None
    ) -> jax.Array:
        """The inputs with a random mask applied and the kept ones scaled by 1 / (1 - rate)."""
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        traced = isinstance(self.rate, jax.Array)
        if deterministic or (not traced and self.rate == 0.0):
            return inputs
        if not traced and self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        broadcast_shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            broadcast_shape[dim] = 1
        mask = jax.random.bernoulli(rng, p=keep_prob, shape=broadcast_shape)
        mask = jnp.broadcast_to(mask, inputs.shape)
        if traced:
            # A rate of 1 keeps nothing: divide by 1 there, so no inf reaches the gradient.
            keep_prob = jnp.where(keep_prob > 0, keep_prob, 1).astype(inputs.dtype)
        return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
