"""The multilayer perceptron, its activation and initialiser registries, and parameter tables.

Parameter names (other modules rely on them): Dense layers `hidden_0`, `hidden_1`, ... and
`head`; PReLU slopes `prelu_{i}/negative_slope` (shape []). Transfer learning treats every
top-level module whose name is not `head` as the body.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.errors import ConfigError
from jaxnn.nn import dropout_mask
from jaxnn.nn.dense import Dense

BODY_PREFIX = "hidden_"
HEAD = "head"

Activation = Callable[[jax.Array, Any], jax.Array]
Initializer = Callable[..., jax.Array]


def _leaky_relu(x: jax.Array, negative_slope: float | jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, jnp.asarray(negative_slope, x.dtype) * x)


# name -> f(x, negative_slope) -> activated x. Only leaky_relu and prelu read the slope; for
# prelu the MLP passes its learnable per-layer slope.
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": lambda x, negative_slope: jax.nn.sigmoid(x),
    "tanh": lambda x, negative_slope: jnp.tanh(x),
    "relu": lambda x, negative_slope: jax.nn.relu(x),
    "leaky_relu": _leaky_relu,
    "prelu": _leaky_relu,
    "elu": lambda x, negative_slope: jax.nn.elu(x),
    "gelu": lambda x, negative_slope: jax.nn.gelu(x, approximate=False),
    "identity": lambda x, negative_slope: x,
}

# name -> f(stddev) -> kernel initializer. Only `normal` reads stddev; biases start at zero.
INITIALIZERS: dict[str, Callable[[float | jax.Array], Initializer]] = {
    "he_normal": lambda stddev: nn.initializers.he_normal(),
    "he_uniform": lambda stddev: nn.initializers.he_uniform(),
    "glorot_normal": lambda stddev: nn.initializers.glorot_normal(),
    "glorot_uniform": lambda stddev: nn.initializers.glorot_uniform(),
    "lecun_normal": lambda stddev: nn.initializers.lecun_normal(),
    "normal": lambda stddev: nn.initializers.normal(stddev),
}
INITIALIZERS["kaiming_normal"] = INITIALIZERS["he_normal"]
INITIALIZERS["kaiming_uniform"] = INITIALIZERS["he_uniform"]
INITIALIZERS["xavier_normal"] = INITIALIZERS["glorot_normal"]
INITIALIZERS["xavier_uniform"] = INITIALIZERS["glorot_uniform"]


def _lookup(registry: Mapping[str, Any], name: str, field: str) -> Any:
    if name not in registry:
        raise ConfigError(f"{field}: unknown {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name]


def _is_python_zero(value: Any) -> bool:
    return isinstance(value, int | float) and value == 0


def _scaled(init: Initializer, scale: float | jax.Array) -> Initializer:
    def scaled_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32, **kwargs: Any):
        return init(key, shape, dtype, **kwargs) * jnp.asarray(scale, dtype)

    return scaled_init


def inverted_dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout whose rate may be a traced scalar.

    Args:
      x: activations [B, H].
      rate: probability of dropping a unit, in [0, 1).
      key: PRNG key.

    Returns:
      x with dropped units zeroed and kept ones divided by 1 - rate. The mask comes from
      `jaxnn.dropout_mask` (a keyed hash, several times cheaper on CPU than threefry bits).
    """
    keep_prob = jnp.asarray(1.0 - rate, x.dtype)
    keep = dropout_mask.keep_mask(key, keep_prob, x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class PReLU(nn.Module):
    """Leaky ReLU whose scalar negative slope is a learnable parameter `negative_slope`."""

    negative_slope_init: float | jax.Array = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param(
            "negative_slope", lambda key: jnp.asarray(self.negative_slope_init, jnp.float32)
        )
        return _leaky_relu(x, slope)


# fold_in tag of the input-dropout key (hidden layer i uses tag i).
INPUT_TAG = 1_000_000


class MLP(nn.Module):
    """A multilayer perceptron: hidden Dense layers with an activation, then a linear head.

    `negative_slope`, `dropout` and `init_scale` may be traced scalars (swept per member of a
    vmapped ensemble); a Python 0.0 dropout rate removes dropout from the program.
    """

    hidden: Sequence[int]
    num_outputs: int
    activation: str = "relu"
    initializer: str = "he_normal"  # config `model.init`; `init` would shadow Module.init
    init_stddev: float | jax.Array = 0.01
    negative_slope: float | jax.Array = 0.01
    dropout: float | jax.Array = 0.0
    init_scale: float | jax.Array = 1.0
    input_dropout: float | jax.Array = 0.0

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps inputs [B, *feature_shape] to outputs [B, num_outputs].

        Dropout is applied after each hidden activation (rate `dropout`) and to the inputs
        (rate `input_dropout`) only when `train` is true and a `dropout_key` is given. Pre-activations are sown as
        `intermediates/preactivation_{i}`.
        """
        activate = _lookup(ACTIVATIONS, self.activation, "model.activation")
        base_init = _lookup(INITIALIZERS, self.initializer, "model.init")(self.init_stddev)
        kernel_init = _scaled(base_init, self.init_scale)
        use_dropout = train and dropout_key is not None and not _is_python_zero(self.dropout)

        x = x.reshape((x.shape[0], -1))
        if train and dropout_key is not None and not _is_python_zero(self.input_dropout):
            x = inverted_dropout(x, self.input_dropout, jax.random.fold_in(dropout_key, INPUT_TAG))
        for i, width in enumerate(self.hidden):
            h = Dense(
                width,
                kernel_init=kernel_init,
                bias_init=nn.initializers.zeros,
                name=f"{BODY_PREFIX}{i}",
            )(x)
            self.sow("intermediates", f"preactivation_{i}", h)
            if self.activation == "prelu":
                x = PReLU(self.negative_slope, name=f"prelu_{i}")(h)
            else:
                x = activate(h, self.negative_slope)
            if use_dropout:
                x = inverted_dropout(x, self.dropout, jax.random.fold_in(dropout_key, i))
        return Dense(
            self.num_outputs, kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=HEAD
        )(x)


def make_mlp(model_cfg: Any, num_outputs: int, **overrides: Any) -> MLP:
    """The MLP that the `model` config describes (config `init` becomes `initializer`).

    Args:
      model_cfg: the `model` config.
      num_outputs: width of the head.
      **overrides: MLP fields to set instead of the config's, e.g. a member's traced
        `dropout`, `negative_slope` or `init_scale`.
    """
    fields = dict(
        hidden=tuple(_get(model_cfg, "hidden", ())),
        activation=_get(model_cfg, "activation", "relu"),
        initializer=_get(model_cfg, "init", "he_normal"),
        init_stddev=_get(model_cfg, "init_stddev", 0.01),
        negative_slope=_get(model_cfg, "negative_slope", 0.01),
        dropout=_get(model_cfg, "dropout", 0.0),
        init_scale=_get(model_cfg, "init_scale", 1.0),
        input_dropout=_get(model_cfg, "input_dropout", 0.0),
    )
    fields.update(overrides)
    return MLP(num_outputs=num_outputs, **fields)


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _path_names(path: Any) -> list[str]:
    names = path.split("/") if isinstance(path, str) else [_key_name(k) for k in path]
    if names and names[0] == "params":
        names = names[1:]
    return names


def is_head_path(path: Sequence[Any] | str) -> bool:
    """Whether a parameter path belongs to the head.

    Args:
      path: a tuple of keys such as ('params', 'head', 'kernel') or ('head', 'kernel') (str or
        jax tree path entries), or a string 'head/kernel'.
    """
    names = _path_names(path)
    return bool(names) and names[0] == HEAD


def body_head_labels(params: Any) -> Any:
    """A pytree like `params` whose leaves are 'head' or 'body' (labels for optim)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: HEAD if is_head_path(path) else "body", params
    )


def _unwrap(params: Any) -> Any:
    if isinstance(params, Mapping) and set(params) == {"params"}:
        return params["params"]
    return params


_PARAM_ORDER = {"kernel": 0, "bias": 1, "negative_slope": 2}


def _layer_order(names: list[str]) -> tuple:
    module, rest = names[0], names[1:]
    prefix, _, index = module.rpartition("_")
    if prefix in ("hidden", "prelu") and index.isdigit():
        position: tuple = (0, int(index), prefix != "hidden")
    elif module == HEAD:
        position = (1, 0, False)
    else:
        position = (2, 0, False)
    return (position, module, [(_PARAM_ORDER.get(n, 3), n) for n in rest])


def layer_table(params: Any) -> list[tuple[str, tuple[int, ...], int]]:
    """Rows (name like 'hidden_0/kernel', shape, count) in layer order: hidden_0, prelu_0, ..., head."""
    leaves = jax.tree_util.tree_flatten_with_path(_unwrap(params))[0]
    rows = []
    for path, leaf in leaves:
        names = _path_names(path)
        shape = tuple(int(d) for d in jnp.shape(leaf))
        rows.append((names, shape, math.prod(shape)))
    rows.sort(key=lambda row: _layer_order(row[0]))
    return [("/".join(names), shape, count) for names, shape, count in rows]


def count_params(params: Any) -> int:
    """The total number of scalar parameters."""
    return sum(count for _, _, count in layer_table(params))


def format_layer_table(params: Any) -> str:
    """The layer table as aligned text, one row per parameter array and a total line."""
    rows = [(name, str(shape), f"{count:,}") for name, shape, count in layer_table(params)]
    rows.append(("total", "", f"{count_params(params):,}"))
    header = ("parameter", "shape", "count")
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

    separator = "-" * (sum(widths) + 4)
    return "\n".join([line(header), separator, *map(line, rows[:-1]), separator, line(rows[-1])])


def _get(cfg: Any, name: str, default: Any) -> Any:
    return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_model_config(model_cfg: Any) -> None:
    """Checks the `model` config fields.

    Raises:
      ConfigError: an unknown activation or init, a hidden width < 1, dropout outside [0, 1),
        init_stddev or init_scale <= 0, or a non-finite negative_slope.
    """
    _lookup(ACTIVATIONS, _get(model_cfg, "activation", "relu"), "model.activation")
    _lookup(INITIALIZERS, _get(model_cfg, "init", "he_normal"), "model.init")
    hidden = _get(model_cfg, "hidden", ())
    widths = list(hidden) if isinstance(hidden, Sequence) and not isinstance(hidden, str) else None
    if widths is None or not all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) for w in widths
    ):
        raise ConfigError(f"model.hidden must be a tuple of integer widths, got {hidden!r}")
    if any(w < 1 for w in widths):
        raise ConfigError(
            f"model.hidden widths must all be >= 1 (use () for a linear model), got {hidden!r}"
        )
    checks = [
        ("dropout", 0.0, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
        ("input_dropout", 0.0, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
        ("init_stddev", 0.01, lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0"),
        ("init_scale", 1.0, lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0"),
        ("negative_slope", 0.01, math.isfinite, "must be a finite number"),
    ]
    for field, default, valid, requirement in checks:
        value = _get(model_cfg, field, default)
        if not _is_number(value) or not valid(value):
            raise ConfigError(f"model.{field} {requirement}, got {value!r}")
