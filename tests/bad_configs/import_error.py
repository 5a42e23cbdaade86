"""A config file that cannot be imported (tests/test_bad_input.py)."""

import no_such_module_for_jaxnn  # noqa: F401


def get_config(arg=None):
    del arg
