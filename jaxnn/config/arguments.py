"""An experiment's argument (`--config=experiments/NAME.py:ARG`): comma-separated words, each
one the experiment knows; an unknown one (`mnist1d_mlp:nonsense`) is refused in one line rather
than silently selecting the full config."""

from __future__ import annotations

from collections.abc import Sequence

from jaxnn.errors import ConfigError


def experiment_words(arg: str | None, experiment: str, known: Sequence[str]) -> list[str]:
    """The words of `arg` (split at commas, blanks dropped), each checked against `known`.

    `arg` is the text after `:` in `--config=FILE:ARG` (None: no argument); `experiment` the
    experiment's file, e.g. 'experiments/mnist1d_mlp.py', for the message.

    Raises:
      ConfigError: a word that is not one of `known`, listing them.
    """
    words = [word.strip() for word in (arg or "").split(",") if word.strip()]
    for word in words:
        if word not in known:
            raise ConfigError(
                f"{experiment}: unknown argument {word!r}; it knows {', '.join(known)} "
                "(comma-separated)"
            )
    return words
