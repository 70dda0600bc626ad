"""Inspect AI sandbox provider: ``sandbox="airlock"``.

A task uses ``sandbox="airlock"`` (the default profile), ``sandbox=("airlock",
"profile.toml")`` (a profile file, sent inline) or ``sandbox=("airlock",
AirlockSandboxConfig(profile="python", allow_hosts=[...]))``. Each sample gets a
live sandbox on ``airlock serve`` (``AIRLOCK_URL``, else its default socket),
deleted after the sample.
"""

from ._sandbox import AirlockSandboxConfig, AirlockSandboxEnvironment

__all__ = ["AirlockSandboxConfig", "AirlockSandboxEnvironment"]
