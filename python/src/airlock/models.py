"""What the server answers, as typed values."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


def _exact(text: str, b64: str | None) -> bytes:
    if b64 is not None:
        return base64.b64decode(b64)
    return text.encode("utf-8")


@dataclass(frozen=True)
class CommandResult:
    """How a command ended.

    ``stdout`` and ``stderr`` are text; when the command printed bytes that
    are not UTF-8 the text has U+FFFD in their place and ``stdout_bytes``
    (``stderr_bytes``) has the exact bytes. Output past the cap keeps its
    tail: ``stdout_dropped`` says how many bytes went before it.

    ``exit_code`` is the command's own status, 128+N when signal N killed
    it, 124 for its timeout, 126 when it is not executable and 127 when it
    is not found. ``reason`` says why it ended: ``{"kind": "exit", "code": 0}``,
    ``{"kind": "signal", "signal": 9}``, ``{"kind": "timeout"}``,
    ``{"kind": "exec_failed", "errno": 13}``, ...
    """

    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes
    stderr_bytes: bytes
    reason: dict[str, Any]
    limits_hit: list[str]
    wall_ms: int
    stdout_dropped: int
    stderr_dropped: int
    pid: int
    os_pid: int | None

    @property
    def timed_out(self) -> bool:
        """Whether its timeout killed it."""
        return self.reason.get("kind") == "timeout"

    @property
    def ok(self) -> bool:
        """Whether it exited with status 0."""
        return self.exit_code == 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CommandResult:
        return cls(
            exit_code=int(d["exit_code"]),
            stdout=d.get("stdout", ""),
            stderr=d.get("stderr", ""),
            stdout_bytes=_exact(d.get("stdout", ""), d.get("stdout_base64")),
            stderr_bytes=_exact(d.get("stderr", ""), d.get("stderr_base64")),
            reason=dict(d.get("reason") or {}),
            limits_hit=list(d.get("limits_hit") or []),
            wall_ms=int(d.get("wall_ms", 0)),
            stdout_dropped=int(d.get("stdout_dropped", 0)),
            stderr_dropped=int(d.get("stderr_dropped", 0)),
            pid=int(d.get("pid", 0)),
            os_pid=d.get("os_pid"),
        )


@dataclass(frozen=True)
class EntryInfo:
    """A file's facts: ``kind`` is ``file``, ``dir``, ``symlink`` or ``other``;
    ``mode`` the permission bits; ``mtime`` seconds since the epoch."""

    path: str
    name: str
    kind: str
    size: int
    mode: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EntryInfo:
        return cls(
            path=d["path"],
            name=d["name"],
            kind=d["kind"],
            size=int(d["size"]),
            mode=int(str(d["mode"]), 8),
            mtime=int(d["mtime"]),
        )


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox's state, as ``GET /v1/sandboxes/{id}`` gives it.

    ``raw`` keeps the whole answer (limits, writable places, audit path...).
    """

    id: str
    state: str
    profile: str
    created_at: int
    closed_reason: str | None
    expires_in_secs: float | None
    network: str
    writable: list[str]
    processes: list[int]
    audit: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxInfo:
        return cls(
            id=d["id"],
            state=d["state"],
            profile=d.get("profile", ""),
            created_at=int(d.get("created_at", 0)),
            closed_reason=d.get("closed_reason"),
            expires_in_secs=d.get("expires_in_secs"),
            network=d.get("network", ""),
            writable=list(d.get("writable") or []),
            processes=list(d.get("processes") or []),
            audit=d.get("audit"),
            raw=d,
        )


@dataclass(frozen=True)
class ProcessOutput:
    """A slice of a background process's stdout or stderr.

    ``start`` is where ``data`` starts (later than asked when those bytes
    were dropped past the cap; ``dropped`` says how many), ``next`` the
    offset to ask for next, ``exited`` whether no more will come.
    """

    stream: str
    start: int
    dropped: int
    next: int
    data: bytes
    exited: bool

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProcessOutput:
        return cls(
            stream=d["stream"],
            start=int(d["from"]),
            dropped=int(d.get("dropped", 0)),
            next=int(d["next"]),
            data=_exact(d.get("data", ""), d.get("data_base64")),
            exited=bool(d.get("exited")),
        )
