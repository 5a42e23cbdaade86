"""An experiment's argument (`--config=experiments/NAME.py:ARG`): comma-separated words, each
one the experiment knows; an unknown one (`mnist1d_mlp:nonsense`) is refused in one line rather
than silently selecting the full config."""

from __future__ import annotations

from collections.abc import Sequence

from jaxnn.errors import ConfigError


def experiment_words(arg: str | None, experiment: str, known: Sequence[str]) -> list[str]:
    """The words of `arg` (the text after `:`, None: none; split at commas, blanks dropped), each
    checked against `known`; `experiment` is the experiment's file, for the message."""
    words = [word.strip() for word in (arg or "").split(",") if word.strip()]
    for word in words:
        if word not in known:
            raise ConfigError(
                f"{experiment}: unknown argument {word!r}; it knows {', '.join(known)} "
                "(comma-separated)"
            )
    return words
