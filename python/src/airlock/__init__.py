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
from . import errors
from .errors import *  # noqa: F403 (every error, listed in errors.__all__)
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
    *errors.__all__,
]
