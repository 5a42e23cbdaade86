"""Launches a jaxnn experiment from flags: the only file that defines absl flags.

    python launch.py --config=experiments/mnist1d_mlp.py[:ARG] --workdir=DIR [--config.FIELD=VALUE ...]

Exit 0 on success; exit 2 with one line `jaxnn: error: ...` for any user mistake.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file, e.g. experiments/mnist1d_mlp.py:smoke.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory that receives the run's files.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a finished run in --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def fail(message: str) -> None:
    """Prints one line `jaxnn: error: ...` and exits with code 2."""
    first_line = " ".join(str(message).split())
    print(f"jaxnn: error: {first_line}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags, turning every flag or config-override mistake into a one-line error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error).removeprefix("flag ").split("\n")[0])
    except (AttributeError, KeyError, TypeError, ValueError, SyntaxError, OSError) as error:
        fail(f"bad --config or --config.FIELD override: {error}")
    return []


def main(argv: list[str]) -> None:
    # TFDS and JAX log routine INFO lines through absl; the progress bar says what matters.
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}; options are written --name=value")
    from jaxnn.errors import JaxnnError
    from jaxnn.run import run

    try:
        if _CONFIG.value is None:
            fail("--config is required, e.g. --config=experiments/mnist1d_mlp.py")
        run(
            _CONFIG.value,
            _WORKDIR.value or "",
            overwrite=_OVERWRITE.value,
            progress=_PROGRESS.value,
        )
    except JaxnnError as error:
        fail(str(error))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
