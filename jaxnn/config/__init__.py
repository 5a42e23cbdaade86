"""The config schema (`default_config`) and the sweep value (`jaxnn.config.sweep`)."""

from jaxnn.config.schema import default_config

__all__ = ["default_config"]
