"""The errors the client raises.

Every error of ``airlock serve`` is ``{"error": {"code", "message", "reason"?}}``;
each becomes one of the exceptions below, carrying the server's message, its
code, its finer ``reason`` (when it gave one) and the HTTP status. Errors that
also have a natural Python built-in base (a missing file is a
``FileNotFoundError``, a refused path a ``PermissionError``) inherit from it too,
so ``except FileNotFoundError`` works.
"""

from __future__ import annotations

import errno as _errno
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import CommandResult

__all__ = [
    "SandboxError",
    "ServerUnavailable",
    "AuthError",
    "SandboxNotFound",
    "SandboxClosed",
    "CapacityExceeded",
    "CommandTimeout",
    "CommandNotStarted",
    "InvalidRequest",
    "InvalidProfile",
    "FileNotFound",
    "PathForbidden",
    "IsADirectory",
    "NotADirectory",
    "TooLarge",
    "Conflict",
    "NoSpace",
    "ServerError",
]


class SandboxError(Exception):
    """Base of every error this package raises.

    ``message`` is the server's message (it names the field or path),
    ``code`` its stable code (``not_found``, ``over_capacity``, ...),
    ``reason`` a finer cause when the server gave one (``no_sandbox``,
    ``is_a_directory``, ``outside``, ...) and ``status`` the HTTP status
    (``None`` when the server was not reached).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields, not by calling ``__init__`` again (whose
        # arguments differ between subclasses): pickle and copy keep the
        # class, the message and every attribute (``result`` too).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[SandboxError], args: tuple[Any, ...], state: dict[str, Any]) -> SandboxError:
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e


class ServerUnavailable(SandboxError, ConnectionError):
    """``airlock serve`` could not be reached (no socket, refused, reset)."""


class AuthError(SandboxError, PermissionError):
    """The server refused the bearer token (401); set ``AIRLOCK_TOKEN``."""


class SandboxNotFound(SandboxError):
    """The sandbox does not exist: never created, deleted, or forgotten."""


class SandboxClosed(SandboxNotFound):
    """The sandbox closed on its own (ttl, idle timeout, or its init died).

    A subclass of :class:`SandboxNotFound`: either way it is gone.
    """


class CapacityExceeded(SandboxError):
    """The server is at ``--max-sandboxes`` or ``--memory-budget`` (429)."""


class CommandTimeout(SandboxError, TimeoutError):
    """A command ran past its timeout and was killed (with its whole tree).

    ``result`` holds what it printed before.
    """

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message, code="timeout", status=None)
        self.result = result


class CommandNotStarted(SandboxError):
    """The command could not start as asked (a ``cwd`` that does not exist)."""


class InvalidRequest(SandboxError, ValueError):
    """The server refused the request as malformed (400)."""


class InvalidProfile(InvalidRequest):
    """An unknown profile name, or a profile that does not validate."""



class _OSErrorLike(SandboxError):
    """Sets the ``errno``/``strerror`` of the built-in ``OSError`` base."""

    errno_code = 0

    def __init__(self, message: str, **kw: Any) -> None:
        SandboxError.__init__(self, message, **kw)
        self.errno = self.errno_code
        self.strerror = message


class FileNotFound(_OSErrorLike, FileNotFoundError):
    """No such file or directory in the sandbox, or no such process."""

    errno_code = _errno.ENOENT


class PathForbidden(_OSErrorLike, PermissionError):
    """The path is outside the writable places, crosses a link or mount, or
    the sandbox's user may not read or write it (``reason`` says which)."""

    errno_code = _errno.EACCES


class IsADirectory(_OSErrorLike, IsADirectoryError):
    """A directory where a file was needed."""

    errno_code = _errno.EISDIR


class NotADirectory(_OSErrorLike, NotADirectoryError):
    """A file where a directory was needed."""

    errno_code = _errno.ENOTDIR


class TooLarge(SandboxError):
    """A body or file over the server's limit (413)."""


class Conflict(SandboxError):
    """An id already taken, a non-empty directory, stdin already closed (409)."""


class NoSpace(SandboxError, OSError):
    """The sandbox's filesystem is full (507)."""


class ServerError(SandboxError):
    """airlock's own failure (5xx): never the command's."""


def from_response(status: int, body: Any, fallback: str) -> SandboxError:
    """The exception for an error answer."""
    code: str | None = None
    reason: str | None = None
    message = fallback
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code")
        reason = err.get("reason")
        message = str(err.get("message") or fallback)
    kw: dict[str, Any] = {"code": code, "reason": reason, "status": status}
    if status == 401:
        return AuthError(message, **kw)
    if code == "not_found":
        if reason in ("no_sandbox",):
            return SandboxNotFound(message, **kw)
        if reason == "no_route":
            return ServerError(
                f"{message} (is the server an airlock serve of this version?)", **kw
            )
        return FileNotFound(message, **kw)
    if code == "sandbox_closed":
        return SandboxClosed(message, **kw)
    if code == "over_capacity":
        return CapacityExceeded(message, **kw)
    if code == "invalid_profile":
        return InvalidProfile(message, **kw)
    if code in ("bad_request", "bad_path", "method_not_allowed"):
        return InvalidRequest(message, **kw)
    if code == "forbidden_path":
        return PathForbidden(message, **kw)
    if code == "wrong_kind":
        if reason == "not_a_directory":
            return NotADirectory(message, **kw)
        return IsADirectory(message, **kw)
    if code == "not_regular":
        return PathForbidden(message, **kw)
    if code == "too_large":
        return TooLarge(message, **kw)
    if code == "conflict":
        return Conflict(message, **kw)
    if code == "cannot_start":
        return CommandNotStarted(message, **kw)
    if code == "no_space":
        return NoSpace(message, **kw)
    if status >= 500 or code in ("internal", "timeout"):
        return ServerError(message, **kw)
    return SandboxError(message, **kw)
