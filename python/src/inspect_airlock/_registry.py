"""Loaded by Inspect AI through the ``inspect_ai`` entry point: importing it
registers sandbox type ``airlock``."""

from ._sandbox import AirlockSandboxEnvironment  # noqa: F401
