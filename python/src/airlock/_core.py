"""What the sync and async clients share: where the server is, how each call
is put as a request, and how answers and errors are read."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union
from urllib.parse import quote

import httpx

from . import errors
from .models import CommandResult

#: Seconds to wait for the server on calls that do not run a command.
DEFAULT_REQUEST_TIMEOUT = 60.0
#: Extra seconds past a command's own timeout before the HTTP call gives up.
EXEC_GRACE = 30.0
#: The most the server's ``wait`` route blocks per call (10 minutes).
WAIT_SLICE = 600.0

Command = Union[str, Sequence[str]]
Stdin = Union[str, bytes, None]
OutputHandler = Callable[[str], Any]


def default_socket() -> str:
    """``airlock serve``'s own default: ``$XDG_RUNTIME_DIR/airlock/serve.sock``
    when ``XDG_RUNTIME_DIR`` is an absolute path, else
    ``/run/airlock/serve.sock``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, "airlock", "serve.sock")
    return "/run/airlock/serve.sock"


@dataclass(frozen=True)
class Endpoint:
    """Where the server is: a unix socket or an http URL, and the token."""

    url: str
    socket: str | None
    base_url: str
    token: str | None

    @classmethod
    def resolve(cls, url: str | None = None, token: str | None = None) -> Endpoint:
        """From the arguments, else ``AIRLOCK_URL`` / ``AIRLOCK_TOKEN``, else the
        default unix socket.

        ``url`` is ``unix:///path/to.sock`` or ``http://host:port``.
        """
        url = url or os.environ.get("AIRLOCK_URL") or f"unix://{default_socket()}"
        if token is None:
            token = os.environ.get("AIRLOCK_TOKEN") or None
        if url.startswith("unix://"):
            path = url[len("unix://") :]
            if not path.startswith("/"):
                raise errors.InvalidRequest(
                    f"AIRLOCK_URL {url!r}: a unix socket URL needs an absolute path "
                    "(unix:///run/airlock/serve.sock)"
                )
            return cls(url=url, socket=path, base_url="http://airlock", token=token)
        if url.startswith("http://") or url.startswith("https://"):
            return cls(url=url, socket=None, base_url=url.rstrip("/"), token=token)
        raise errors.InvalidRequest(
            f"AIRLOCK_URL {url!r}: expected unix:///path/to.sock or http://host:port"
        )

    def headers(self) -> dict[str, str]:
        h = {"user-agent": "airlock-python/0.1"}
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        return h

    def unreachable(self, e: Exception) -> errors.ServerUnavailable:
        where = f"the unix socket {self.socket}" if self.socket else self.url
        hint = (
            "start it with `airlock serve` (or `airlock serve --socket PATH` and "
            "AIRLOCK_URL=unix://PATH)"
            if self.socket
            else "check AIRLOCK_URL and that `airlock serve --listen` runs"
        )
        return errors.ServerUnavailable(
            f"cannot reach airlock serve at {where}: {e}; {hint}"
        )


@dataclass
class Req:
    """One HTTP call."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    timeout: float | None = DEFAULT_REQUEST_TIMEOUT

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"params": self.params or None}
        if self.json is not None:
            kw["json"] = self.json
        if self.content is not None:
            kw["content"] = self.content
            kw["headers"] = {"content-type": "application/octet-stream"}
        kw["timeout"] = httpx.Timeout(self.timeout, connect=10.0)
        return kw


def sid(sandbox_id: str) -> str:
    return quote(sandbox_id, safe="")


def raise_for(resp: httpx.Response) -> None:
    """Raises the mapped error for an error answer (the body must be read)."""
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except (json.JSONDecodeError, ValueError):
        body = None
    text = resp.text[:500] if body is None else ""
    raise errors.from_response(
        resp.status_code,
        body,
        f"HTTP {resp.status_code} from airlock serve{': ' + text if text else ''}",
    )


def duration(v: float | int | str | None) -> float | str | None:
    if v is None or isinstance(v, str):
        return v
    if v <= 0:
        raise errors.InvalidRequest(f"timeout: {v!r} is not a positive number of seconds")
    return float(v)


def create_body(
    profile: str | Mapping[str, Any] | None,
    *,
    sandbox_id: str | None,
    timeout: float | str | None,
    idle_timeout: float | str | None,
    env: Mapping[str, str] | None,
    allow_hosts: Sequence[str] | None,
    workspace: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    prof: str | dict[str, Any] | None
    if isinstance(profile, Mapping):
        prof = dict(profile)
    else:
        prof = profile
    if allow_hosts is not None:
        if isinstance(allow_hosts, str):
            raise errors.InvalidRequest("allow_hosts: expected a list of host names")
        inline: dict[str, Any]
        if isinstance(prof, dict):
            inline = prof
        else:
            base = prof or "default"
            inline = {"extends": base, "name": f"{base}-allow"}
        net = dict(inline.get("network") or {})
        net["mode"] = "allowlist"
        net["allow"] = list(net.get("allow") or []) + list(allow_hosts)
        inline["network"] = net
        prof = inline
    if prof is not None:
        body["profile"] = prof
    if sandbox_id is not None:
        body["id"] = sandbox_id
    if timeout is not None:
        body["ttl"] = duration(timeout)
    if idle_timeout is not None:
        body["idle_timeout"] = duration(idle_timeout)
    if env:
        body["env"] = dict(env)
    if workspace is not None:
        body["workspace"] = workspace
    return body


def exec_body(
    cmd: Command,
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout: float | str | None,
    stdin: Stdin,
    output_cap: int | None,
    background: bool,
    stream: bool,
) -> dict[str, Any]:
    if isinstance(cmd, str):
        c: Any = cmd
    else:
        c = [str(a) for a in cmd]
        if not c:
            raise errors.InvalidRequest("cmd: an empty argument list")
    body: dict[str, Any] = {"cmd": c}
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["env"] = dict(env)
    if timeout is not None:
        body["timeout"] = duration(timeout)
    if stdin is not None:
        if isinstance(stdin, str):
            body["stdin"] = stdin
        else:
            body["stdin_base64"] = base64.b64encode(bytes(stdin)).decode("ascii")
    if output_cap is not None:
        body["output_cap"] = int(output_cap)
    if background:
        body["background"] = True
    if stream:
        body["stream"] = True
    return body


def exec_http_timeout(timeout: float | str | None) -> float | None:
    """How long the HTTP call may take: the command's timeout and a grace,
    or no limit when the command has none of its own (the profile's
    ``limits.timeout`` still ends it)."""
    if isinstance(timeout, (int, float)):
        return float(timeout) + EXEC_GRACE
    return None


def finish(result: CommandResult) -> CommandResult:
    """Raises :class:`CommandTimeout` for a command its timeout killed."""
    if result.timed_out:
        raise errors.CommandTimeout(
            f"the command ran past its timeout and was killed "
            f"(after {result.wall_ms} ms)",
            result,
        )
    return result


def stream_line(
    line: str,
    on_stdout: OutputHandler | None,
    on_stderr: OutputHandler | None,
) -> CommandResult | None:
    """Handles one NDJSON line of a streamed exec; the result at the end."""
    if not line.strip():
        return None
    msg = json.loads(line)
    if "stdout" in msg:
        if on_stdout is not None:
            on_stdout(msg["stdout"])
        return None
    if "stderr" in msg:
        if on_stderr is not None:
            on_stderr(msg["stderr"])
        return None
    if "result" in msg:
        return CommandResult.from_json(msg["result"])
    if "error" in msg:
        raise errors.from_response(500, msg, "the exec failed after its stream began")
    return None


def file_params(path: str, **flags: str) -> dict[str, str]:
    if not isinstance(path, str) or not path:
        raise errors.InvalidRequest(f"path: {path!r} is not a path")
    p = {"path": path}
    p.update(flags)
    return p


def mode_text(mode: int | str | None) -> dict[str, str]:
    if mode is None:
        return {}
    if isinstance(mode, int):
        return {"mode": format(mode, "o")}
    return {"mode": str(mode)}


def to_bytes(data: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)
