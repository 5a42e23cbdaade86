"""A config file without get_config (tests/test_bad_input.py)."""

SEED = 1
