"""A config file whose get_config returns a dict, not a ConfigDict (tests/test_bad_input.py)."""


def get_config(arg=None):
    del arg
    return {"seed": 1, "training": {"steps": 10}}
