"""Python client for ``airlock serve``: live sandboxes, driven from code.

>>> from airlock import Sandbox
>>> with Sandbox.create(profile="python", timeout=300) as sb:
...     r = sb.commands.run("python3 -c 'print(1)'")
...     r.exit_code, r.stdout
(0, '1\\n')

The server is ``AIRLOCK_URL`` (``unix:///path/to.sock`` or
``http://127.0.0.1:PORT``, with ``AIRLOCK_TOKEN``), else ``airlock serve``'s
default unix socket. :class:`AsyncSandbox` is the same with ``await``.
"""

from ._async import AsyncCommandHandle, AsyncSandbox
from ._core import default_socket
from ._sync import CommandHandle, Sandbox
from .errors import (
    AuthError,
    CapacityExceeded,
    CommandNotStarted,
    CommandTimeout,
    Conflict,
    FileNotFound,
    InvalidProfile,
    InvalidRequest,
    IsADirectory,
    NoSpace,
    NotADirectory,
    PathForbidden,
    SandboxClosed,
    SandboxError,
    SandboxNotFound,
    ServerError,
    ServerUnavailable,
    TooLarge,
)
from .models import CommandResult, EntryInfo, ProcessOutput, SandboxInfo

__version__ = "0.1.0"

__all__ = [
    "Sandbox",
    "AsyncSandbox",
    "CommandHandle",
    "AsyncCommandHandle",
    "CommandResult",
    "EntryInfo",
    "ProcessOutput",
    "SandboxInfo",
    "default_socket",
    "SandboxError",
    "SandboxNotFound",
    "SandboxClosed",
    "CommandTimeout",
    "CommandNotStarted",
    "CapacityExceeded",
    "AuthError",
    "ServerUnavailable",
    "ServerError",
    "InvalidRequest",
    "InvalidProfile",
    "FileNotFound",
    "PathForbidden",
    "IsADirectory",
    "NotADirectory",
    "TooLarge",
    "Conflict",
    "NoSpace",
]
