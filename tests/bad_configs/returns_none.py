"""A config file whose get_config returns nothing (tests/test_bad_input.py)."""


def get_config(arg=None):
    del arg
