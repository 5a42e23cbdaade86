"""One recurrent cell of the vanishing-gradient study, on MNIST-1D read one position per step.

Command:
    python launch.py --config=experiments/vanishing_gradients.py:rnn --workdir=runs/vg/rnn

Argument: the cell, `rnn` (plain tanh), `gru` or `lstm` (default gru), for a gated cell
optionally `,chrono` (model.gate_init=chrono: its keep gates start biased to keep the state),
for the LSTM optionally `,forget_bias=B` (model.forget_bias=B: its forget gate's starting bias),
optionally followed by `,smoke` (seconds, for the tests). The config is
experiments/mnist1d_gru.py's with that cell, one position per time step (40 steps), the head on
the last state and no augmentation, so each step's input is the data's own. Result it should
give: the GRU and LSTM reach about the accuracy of experiments/mnist1d_gru.py without its
shifts, the plain RNN far less; the study experiments/studies/vanishing_gradients.py trains all
three and measures the gradient that reaches each time step.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from experiments import mnist1d_gru

CELLS = ("rnn", "gru", "lstm")
# The study's cells: (name in its report, get_config argument).
STUDY_CELLS = (
    ("rnn", "rnn"),
    ("gru", "gru"),
    ("lstm", "lstm"),
    ("gru chrono", "gru,chrono"),
    ("lstm chrono", "lstm,chrono"),
    ("lstm forget_bias=3", "lstm,forget_bias=3"),
)
STEPS = 1500
STATE_SIZE = 64


def _option(cell: str, option: list[str]) -> dict[str, Any] | None:
    """The model fields a cell's option sets ({} for none), or None for one it does not take."""
    if not option:
        return {}
    if option == ["chrono"] and cell in ("gru", "lstm"):
        return {"gate_init": "chrono"}
    name, _, value = option[0].partition("=")
    if len(option) == 1 and cell == "lstm" and name == "forget_bias":
        try:
            return {"forget_bias": float(value)}
        except ValueError:
            return None
    return None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = [part.strip() for part in (arg or "gru").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    cell, *option = (parts[:-1] if smoke else parts) or ["gru"]
    fields = _option(cell, option) if cell in CELLS else None
    if fields is None:
        raise ValueError(
            f"experiments/vanishing_gradients.py: unknown argument {arg!r}; use one of "
            f"{', '.join(CELLS)} (gru and lstm optionally followed by ,chrono, lstm by "
            ",forget_bias=B), optionally followed by ,smoke"
        )
    config = mnist1d_gru.get_config("smoke" if smoke else None)
    config.model.name = cell
    config.model.update(fields)
    config.model.chunk = 1
    config.model.readout = "last"
    config.augment.shift = 0
    config.restarts.num = 1
    if not smoke:
        config.model.state_size = STATE_SIZE
        config.training.steps = STEPS
    return config
