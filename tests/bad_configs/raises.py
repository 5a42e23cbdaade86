"""A config file that raises while it is imported (tests/test_bad_input.py)."""

raise RuntimeError("this config file is not finished")
