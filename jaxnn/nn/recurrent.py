"""The recurrent families (`model.name=gru`, `lstm`, `rnn`): positions are time steps.

An example [L] or [L, C] is read as L / chunk time steps of chunk * C inputs each. Parameters:
`input` (kernel [chunk * C, G * S], bias [G * S]: every step's input projection, one matmul for
the whole sequence), `recurrent` (kernel [S, G * S]; the GRU also has a bias [G * S]) and the
linear `head` on the last state or the mean of the states (`model.readout`), after dropout.
S is `model.state_size`; G is 3 for the GRU (gates r, z, n), 4 for the LSTM (i, f, g, o), 1 for
the plain tanh RNN. With x_t the step's input and h the previous state (PyTorch's conventions):

    rnn:  h' = tanh(W_x x_t + b + W_h h)
    gru:  r = sigmoid(W_xr x_t + b_r + W_hr h + c_r),  z = sigmoid(W_xz x_t + b_z + W_hz h + c_z)
          n = tanh(W_xn x_t + b_n + r * (W_hn h + c_n)),  h' = (1 - z) * n + z * h
    lstm: i, f, o = sigmoid(...), g = tanh(W_xg x_t + b_g + W_hg h)
          c' = f * c + i * g,  h' = o * tanh(c')

Input kernels and the head start from `model.init`, recurrent kernels from an orthogonal matrix
per gate (`jaxnn.nn.orthogonal`), all scaled by `model.init_scale`; the gate biases follow
`model.gate_init` (`chrono_bias`). Transfer: `input` and `recurrent` are the body.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.errors import ConfigError
from jaxnn.nn import model_fields
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily, Params
from jaxnn.nn.layers import dropout, kernel_initializer
from jaxnn.nn.orthogonal import orthogonal
from jaxnn.nn.precision import cast
from jaxnn.nn.sequence import as_sequence, sequence_shape

HEAD = "head"
READOUTS = ("last", "mean")
GATE_INITS = ("standard", "chrono")
Carry = Any
# A step's outputs: (state [B, S], candidate pre-activation [B, S]).
StepOutputs = tuple[jax.Array, jax.Array]
# step(carry, projected input [B, G * S], recurrent kernel, recurrent bias or None)
Step = Callable[[Carry, jax.Array, jax.Array, jax.Array | None], tuple[Carry, StepOutputs]]


def rnn_step(
    h: jax.Array, x_proj: jax.Array, kernel: jax.Array, bias: jax.Array | None
) -> tuple[jax.Array, StepOutputs]:
    """One step of the tanh RNN: h [B, S], x_proj = W_x x_t + b [B, S]."""
    del bias
    pre = x_proj + h @ kernel
    h = jnp.tanh(pre)
    return h, (h, pre)


def gru_step(
    h: jax.Array, x_proj: jax.Array, kernel: jax.Array, bias: jax.Array | None
) -> tuple[jax.Array, StepOutputs]:
    """One GRU step: h [B, S], x_proj [B, 3S] (r, z, n), kernel [S, 3S], bias [3S]."""
    assert bias is not None, "the GRU cell has a recurrent bias (CELLS['gru'].recurrent_bias)"
    x_r, x_z, x_n = jnp.split(x_proj, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ kernel + bias, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    pre = x_n + r * h_n
    n = jnp.tanh(pre)
    h = (1 - z) * n + z * h
    return h, (h, pre)


def lstm_step(
    carry: tuple[jax.Array, jax.Array], x_proj: jax.Array, kernel: jax.Array, bias: jax.Array | None
) -> tuple[tuple[jax.Array, jax.Array], StepOutputs]:
    """One LSTM step: carry (h, c) [B, S] each, x_proj [B, 4S] (i, f, g, o), kernel [S, 4S]."""
    del bias
    h, c = carry
    i, f, g, o = jnp.split(x_proj + h @ kernel, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), (h, g)


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell: its step, gate count, and whether its state is (h, c)."""

    step: Step
    gates: int
    recurrent_bias: bool = False
    cell_state: bool = False


CELLS: dict[str, Cell] = {
    "rnn": Cell(rnn_step, gates=1),
    "gru": Cell(gru_step, gates=3, recurrent_bias=True),
    "lstm": Cell(lstm_step, gates=4, cell_state=True),
}


def _orthogonal_blocks(gates: int, scale: float | jax.Array) -> Callable[..., jax.Array]:
    """Kernel [S, gates * S] of one orthogonal [S, S] block per gate, times `scale`."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        size = shape[0]
        blocks = [orthogonal(k, size, dtype=dtype) for k in jax.random.split(key, gates)]
        return jnp.concatenate(blocks, axis=-1) * jnp.asarray(scale, dtype)

    return init


class _RecurrentWeights(nn.Module):
    """The recurrent parameters: `kernel` [S, G * S] (and `bias` [G * S] where the cell has one)."""

    state_size: int
    gates: int
    use_bias: bool
    init_scale: float | jax.Array

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        shape = (self.state_size, self.gates * self.state_size)
        kernel = self.param("kernel", _orthogonal_blocks(self.gates, self.init_scale), shape)
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (shape[1],), jnp.float32)
        return kernel, bias


def _lstm_bias(forget_bias: float | jax.Array) -> Callable[..., jax.Array]:
    """The LSTM's standard input bias [4S] (i, f, g, o): `forget_bias` for f, 0 elsewhere."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        del key
        size = shape[0] // 4
        return jnp.zeros(shape, dtype).at[size : 2 * size].set(jnp.asarray(forget_bias, dtype))

    return init


def chrono_bias(cell: str, steps: int) -> Callable[..., jax.Array]:
    """The input bias [G * S] of `chrono` init (Tallec and Ollivier, ICLR 2018) for T = `steps`
    time steps: the keep gate (LSTM f, block 1 of i, f, g, o; GRU z, block 1 of r, z, n) at
    log(u), u ~ U(1, max(T - 1, 2)), the LSTM's input gate (block 0) at minus that, every other
    gate at 0. Each unit then keeps its state for about u steps at the start, so gradients reach
    the first steps instead of vanishing (experiments/studies/vanishing_gradients.py)."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        size = shape[0] // CELLS[cell].gates
        keep = jnp.log(jax.random.uniform(key, (size,), dtype, 1.0, max(steps - 1, 2)))
        bias = jnp.zeros(shape, dtype).at[size : 2 * size].set(keep)
        return bias.at[:size].set(-keep) if cell == "lstm" else bias

    return init


def _input_bias(
    cell: str, gate_init: str, steps: int, forget_bias: float | jax.Array
) -> Callable[..., jax.Array]:
    if cell != "rnn" and gate_init == "chrono":
        return chrono_bias(cell, steps)
    return _lstm_bias(forget_bias) if cell == "lstm" else nn.initializers.zeros


class Recurrent(nn.Module):
    """A recurrent net over the positions of x [B, L] or [B, L, C], then a linear head;
    `dropout` (on the state the head reads), `init_scale` and `forget_bias` may be traced."""

    cell: str
    state_size: int
    num_outputs: int
    chunk: int = 1
    readout: str = "last"
    gate_init: str = "standard"  # config `model.gate_init` (gru, lstm)
    initializer: str = "he_normal"  # config `model.init`
    init_stddev: float = 0.01
    dropout: float | jax.Array = 0.0
    init_scale: float | jax.Array = 1.0
    forget_bias: float | jax.Array = 1.0  # config `model.forget_bias` (lstm, gate_init=standard)
    dtype: Any = jnp.float32  # the computation's (config `model.dtype`): the cells' too

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps inputs [B, L] or [B, L, C] to outputs [B, num_outputs]; every step's candidate
        pre-activation (the state's tanh's argument) is sown as `intermediates/preactivation_0`,
        [T, B, S]."""
        cell = CELLS[self.cell]
        kernel_init = kernel_initializer(self.initializer, self.init_stddev, self.init_scale)
        x = as_sequence(x)
        batch, length, channels = x.shape
        steps = length // self.chunk
        inputs = x.reshape((batch * steps, self.chunk * channels))
        width = cell.gates * self.state_size
        projected = Dense(
            width,
            kernel_init=kernel_init,
            bias_init=_input_bias(self.cell, self.gate_init, steps, self.forget_bias),
            dtype=self.dtype,
            name="input",
        )(inputs)
        projected = jnp.swapaxes(projected.reshape((batch, steps, width)), 0, 1)  # [T, B, G*S]
        kernel, bias = _RecurrentWeights(
            self.state_size, cell.gates, cell.recurrent_bias, self.init_scale, name="recurrent"
        )()
        kernel = cast(kernel, self.dtype)
        bias = None if bias is None else cast(bias, self.dtype)
        h0 = jnp.zeros((batch, self.state_size), projected.dtype)
        carry = (h0, h0) if cell.cell_state else h0
        _, (states, pre) = jax.lax.scan(
            lambda carry, x_proj: cell.step(carry, x_proj, kernel, bias), carry, projected
        )
        self.sow("intermediates", "preactivation_0", pre)
        features = states[-1] if self.readout == "last" else jnp.mean(states, axis=0)
        features = dropout(features, self.dropout, dropout_key, train=train)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(
            features
        )


def build(cell: str, model_cfg: Any, hparams: Any, num_outputs: int) -> Recurrent:
    """The family's builder (`cell` bound): the net of `model_cfg` with the member's numbers."""
    return Recurrent(
        cell=cell,
        state_size=int(model_cfg.state_size),
        num_outputs=num_outputs,
        chunk=int(model_cfg.chunk),
        readout=model_cfg.readout,
        gate_init=model_cfg.gate_init,
        initializer=model_cfg.init,
        init_stddev=model_cfg.init_stddev,
        dropout=hparams["dropout"],
        init_scale=hparams["init_scale"],
        **({"forget_bias": hparams["forget_bias"]} if cell == "lstm" else {}),
    )


def preactivations(module: nn.Module, variables: Params, x: jax.Array) -> dict[str, jax.Array]:
    """The candidate pre-activations of every step, [N * T, S], as one layer `recurrent`."""
    _, variables = module.apply(variables, x, mutable=["intermediates"])
    pre = variables["intermediates"]["preactivation_0"][0]
    return {"recurrent": pre.reshape((-1, pre.shape[-1]))}


_LAYERS = {"input": 0, "recurrent": 1, HEAD: 2}


def layer_order(names: Sequence[str]) -> tuple:
    """input, recurrent, head; kernel before bias."""
    return (_LAYERS.get(names[0], 3), names[0], [(n != "kernel", n) for n in names[1:]])


def validate_model_config(cell: str, model_cfg: Any) -> None:
    """Checks the fields the recurrent family of `cell` reads.

    Raises:
      ConfigError: a field its spec refuses, or an LSTM forget_bias other than its default
        under gate_init=chrono (which draws that bias itself).
    """
    model_fields.check(model_cfg, _fields(cell))
    chrono = cell == "lstm" and model_cfg.gate_init == "chrono"
    if chrono and model_cfg.forget_bias != FORGET_BIAS.default:
        raise ConfigError(
            f"model.forget_bias={model_cfg.forget_bias!r} is the forget-gate bias of "
            f"gate_init=standard, but gate_init=chrono draws the LSTM's gate biases "
            f"itself: leave forget_bias at {FORGET_BIAS.default!r} or set gate_init=standard"
        )


def check_inputs(cell: str, model_cfg: Any, feature_shape: tuple[int, ...]) -> None:
    """model.chunk divides the examples' positions.

    Raises:
      ConfigError: examples not [L] or [L, C], or a chunk that does not divide L.
    """
    length, _ = sequence_shape(cell, feature_shape)
    chunk = int(model_cfg.chunk)
    if length % chunk:
        divisors = [d for d in range(1, length + 1) if length % d == 0]
        raise ConfigError(
            f"model.chunk={chunk} does not divide the examples' {length} positions into "
            f"time steps; use one of {', '.join(map(str, divisors))}"
        )


# Positions are time steps, `chunk` of them per step; the head reads the last state or the mean.
FIELDS = (
    model_fields.integer("state_size", 64, 1, 2**31 - 1, "the recurrent state's width"),
    model_fields.integer("chunk", 1, 1, 10**6, "positions read per time step"),
    model_fields.choice("readout", "last", READOUTS),
    model_fields.INIT, model_fields.INIT_STDDEV, model_fields.DROPOUT, model_fields.INIT_SCALE,
)  # fmt: skip
# gru, lstm: "standard" (gate biases 0, the LSTM's forget gate's forget_bias) or `chrono_bias`.
GATE_INIT = model_fields.choice("gate_init", "standard", GATE_INITS)
# lstm, gate_init=standard: the forget gate's starting bias (per member; 1 as in Jozefowicz
# et al. 2015, TensorFlow's forget_bias; larger keeps the cell state longer at the start).
FORGET_BIAS = model_fields.member("forget_bias", 1.0, lambda v: True, "must be a finite number")


def _fields(cell: str) -> tuple[model_fields.FieldSpec, ...]:
    gated = () if cell == "rnn" else (GATE_INIT,)
    return FIELDS + gated + ((FORGET_BIAS,) if cell == "lstm" else ())


def _family(cell: str) -> ModelFamily:
    return ModelFamily(
        name=cell,
        build=functools.partial(build, cell),
        fields=_fields(cell),
        validate=functools.partial(validate_model_config, cell),
        preactivations=preactivations,
        layer_order=layer_order,
        check_inputs=functools.partial(check_inputs, cell),
    )


GRU_FAMILY = _family("gru")
LSTM_FAMILY = _family("lstm")
RNN_FAMILY = _family("rnn")
