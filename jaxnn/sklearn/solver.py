"""scikit-learn's MLP solvers as optax chains, and its regression loss.

scikit-learn adds `alpha * W / n_batch` to the gradient of every weight matrix (not the
intercepts) before its optimiser sees it: the gradient of `alpha / 2 * ||W||^2 / n_batch`
added to the batch's mean loss. `make_solver` builds exactly that coupled L2 term, then the
update direction (SGD with momentum or Nesterov momentum, or Adam), then the learning rate;
`invscaling` is scikit-learn's `learning_rate_init / (t + 1) ** power_t` with `t` the examples
seen at the end of the last epoch. `adaptive` lives on the host (`jaxnn.sklearn.epochs`):
it divides a member's `learning_rate` hyperparameter by 5, which this chain reads every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxnn.sklearn.options import MLPOptions, Shapes


def is_weight_matrix(params: optax.Params) -> optax.Params:
    """True for every leaf named `kernel` (scikit-learn's `coefs_`), False for the rest."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def _inverse_scaling(shapes: Shapes, power_t: float) -> optax.Schedule:
    steps_per_epoch, num_train = shapes.steps_per_epoch, shapes.num_train

    def unit(count: jax.Array) -> jax.Array:
        seen = (jnp.asarray(count, jnp.int32) // steps_per_epoch).astype(jnp.float32) * num_train
        return jnp.power(seen + 1.0, -jnp.float32(power_t))

    return unit


def make_solver(
    options: MLPOptions, shapes: Shapes
) -> Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]:
    """A jaxnn optimiser factory `hparams -> optax.GradientTransformation` for the estimator.

    The member hyperparameters it reads are `learning_rate` (learning_rate_init),
    `weight_decay` (alpha), `momentum` (sgd) and, when swept, `b1`, `b2`, `eps` (adam); all may
    be traced per member, so a numeric sweep of them is one program.
    """
    if options.solver == "sgd" and options.learning_rate == "invscaling":
        unit = _inverse_scaling(shapes, options.power_t)
    else:
        unit = lambda count: jnp.float32(1.0)
    batch_size = float(shapes.batch_size)

    def factory(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
        if options.solver == "sgd":
            direction = optax.trace(decay=hparams["momentum"], nesterov=options.nesterov)
        else:
            direction = optax.scale_by_adam(
                b1=hparams.get("b1", options.beta_1),
                b2=hparams.get("b2", options.beta_2),
                eps=hparams.get("eps", options.epsilon),
            )
        base_lr = hparams["learning_rate"]
        return optax.chain(
            optax.add_decayed_weights(hparams["weight_decay"] / batch_size, is_weight_matrix),
            direction,
            optax.scale_by_learning_rate(lambda count: base_lr * unit(count)),
        )

    return factory


def half_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """scikit-learn's squared_error loss per example: half the mean squared error over the
    outputs [B, O] -> [B]."""
    return 0.5 * jnp.mean((outputs - targets.astype(outputs.dtype)) ** 2, axis=-1)
