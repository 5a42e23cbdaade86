"""An experiment's argument (`--config=experiments/NAME.py:ARG`): comma-separated words, each
one the experiment knows.

`get_config(arg)` of a shipped experiment calls `experiment_words` first, so an argument it
does not know (`mnist1d_mlp:nonsense`) is refused in one line listing the ones it knows,
instead of silently selecting the full config.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxnn.errors import ConfigError


def experiment_words(arg: str | None, experiment: str, known: Sequence[str]) -> list[str]:
    """The words of `arg` (split at commas, blanks dropped), each checked against `known`.

    Args:
      arg: the text after `:` in `--config=FILE:ARG` (None: no argument).
      experiment: the experiment's file, e.g. 'experiments/mnist1d_mlp.py', for the message.
      known: the words the experiment reads.

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
