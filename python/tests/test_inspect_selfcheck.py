"""Inspect AI's own conformance suite for sandbox providers, against the
``airlock`` provider on a real ``airlock serve``."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

import airlock
from inspect_ai.util._sandbox.self_check import *  # noqa: F403
from inspect_airlock import AirlockSandboxEnvironment

# Checks an airlock sandbox cannot satisfy, and why.
SKIPS = {
    "test_exec_as_user": (
        "needs root inside the sandbox (adduser as user='root'); airlock runs every "
        "command as one unprivileged user and the provider raises "
        "SandboxUserUnsupportedError"
    ),
}


@pytest.fixture
async def sandbox_env(request: pytest.FixtureRequest, server) -> AsyncIterator[AirlockSandboxEnvironment]:
    reason = SKIPS.get(request.node.originalname)
    if reason:
        pytest.skip(reason)
    envs = await AirlockSandboxEnvironment.sample_init("self-check", None, {})
    env = envs["default"]
    assert isinstance(env, AirlockSandboxEnvironment)
    sandbox_id = env.sandbox.id
    try:
        yield env
    finally:
        await AirlockSandboxEnvironment.sample_cleanup("self-check", None, envs, False)
        # the sample's sandbox is gone
        with pytest.raises(airlock.SandboxNotFound):
            airlock.Sandbox.connect(sandbox_id)
