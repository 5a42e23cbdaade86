"""Launches a jaxnn experiment from flags, from a checkout; the same as the `jaxnn` command.

    python launch.py --config=experiments/mnist1d_mlp.py[:ARG] --workdir=DIR [--config.FIELD=VALUE ...]

The flags, the multi-host options, the compilation cache and the exit codes are those of
`jaxnn.cli`, the one module that defines absl flags: see docs/cli.md.
"""

from jaxnn.cli import main

if __name__ == "__main__":
    main()
