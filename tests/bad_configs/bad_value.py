"""A config file that sets a field to a value of the wrong type (tests/test_bad_input.py)."""

from jaxnn.config import default_config


def get_config(arg=None):
    del arg
    config = default_config()
    config.training.steps = "forty"
    return config
