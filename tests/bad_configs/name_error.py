"""A config file with a mistake in it (tests/test_bad_input.py): a name that is not defined."""


def get_config(arg=None):
    del arg
    return undefined_name  # noqa: F821
