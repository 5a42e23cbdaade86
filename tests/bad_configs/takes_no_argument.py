"""A config file whose get_config takes no argument, launched with one (tests/test_bad_input.py)."""

from jaxnn.config import default_config


def get_config():
    return default_config()
