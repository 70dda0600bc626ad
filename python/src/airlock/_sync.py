"""The blocking client."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Literal, Mapping, Sequence, overload

import httpx

from . import _core, errors
from ._core import Command, Endpoint, OutputHandler, Req, Stdin, sid
from .models import CommandResult, EntryInfo, ProcessOutput, SandboxInfo


class _Http:
    """One httpx client on the endpoint; errors mapped."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        transport = (
            httpx.HTTPTransport(uds=endpoint.socket) if endpoint.socket else None
        )
        self.client = httpx.Client(
            base_url=endpoint.base_url,
            transport=transport,
            headers=endpoint.headers(),
        )

    def call(self, req: Req) -> httpx.Response:
        try:
            resp = self.client.request(req.method, req.path, **req.kwargs())
        except httpx.TimeoutException as e:
            raise errors.ServerError(
                f"airlock serve did not answer {req.method} {req.path} in time: {e}"
            ) from e
        except (httpx.TransportError, OSError) as e:
            raise self.endpoint.unreachable(e) from e
        _core.raise_for(resp)
        return resp

    def json(self, req: Req) -> Any:
        return self.call(req).json()

    def close(self) -> None:
        self.client.close()


class CommandHandle:
    """A command started with ``background=True``."""

    def __init__(self, sandbox: Sandbox, pid: int, os_pid: int | None) -> None:
        self._sb = sandbox
        self.pid = pid
        self.os_pid = os_pid

    def _path(self, tail: str = "") -> str:
        return f"/v1/sandboxes/{sid(self._sb.id)}/processes/{self.pid}{tail}"

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Waits for its end (at most ``timeout`` seconds; ``None``: no limit)
        and gives its result. Raises :class:`CommandTimeout` when its own
        timeout killed it, and ``TimeoutError`` when ``timeout`` passes first
        (it keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _core.WAIT_SLICE
            if deadline is not None:
                left = min(left, max(deadline - time.monotonic(), 0.0))
            st = self._sb._http.json(
                Req(
                    "POST",
                    self._path("/wait"),
                    params={"timeout": f"{max(int(left * 1000), 1)}ms"},
                    timeout=left + _core.EXEC_GRACE,
                )
            )
            if st.get("result") is not None:
                return _core.finish(CommandResult.from_json(st["result"]))
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"process {self.pid} still running after {timeout} s"
                )

    def is_running(self) -> bool:
        st = self._sb._http.json(Req("GET", self._path()))
        return st.get("state") == "running"

    def send_stdin(self, data: str | bytes, *, eof: bool = False) -> None:
        """Writes to its stdin (when it was started without ``stdin``)."""
        self._sb._http.call(
            Req(
                "POST",
                self._path("/stdin"),
                params={"eof": "1"} if eof else {},
                content=_core.to_bytes(data),
            )
        )

    def close_stdin(self) -> None:
        self.send_stdin(b"", eof=True)

    def output(
        self,
        stream: Literal["stdout", "stderr"] = "stdout",
        start: int = 0,
        max_bytes: int | None = None,
    ) -> ProcessOutput:
        """Its output from byte offset ``start`` (``.next`` is where to go on)."""
        params = {"from": str(start), "stream": stream}
        if max_bytes is not None:
            params["max"] = str(max_bytes)
        return ProcessOutput.from_json(
            self._sb._http.json(Req("GET", self._path("/output"), params=params))
        )

    def kill(self, signal: str | int = "KILL") -> None:
        """Sends it a signal (default SIGKILL)."""
        self._sb._http.call(
            Req("POST", self._path("/signal"), json={"signal": signal})
        )


class Commands:
    """``sandbox.commands``: run commands in the sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    @overload
    def run(
        self,
        cmd: Command,
        *,
        background: Literal[False] = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        stdin: Stdin = None,
        on_stdout: OutputHandler | None = None,
        on_stderr: OutputHandler | None = None,
        output_cap: int | None = None,
    ) -> CommandResult: ...

    @overload
    def run(
        self,
        cmd: Command,
        *,
        background: Literal[True],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        stdin: Stdin = None,
        on_stdout: OutputHandler | None = None,
        on_stderr: OutputHandler | None = None,
        output_cap: int | None = None,
    ) -> CommandHandle: ...

    def run(
        self,
        cmd: Command,
        *,
        background: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        stdin: Stdin = None,
        on_stdout: OutputHandler | None = None,
        on_stderr: OutputHandler | None = None,
        output_cap: int | None = None,
    ) -> CommandResult | CommandHandle:
        """Runs ``cmd``: a string (run by ``/bin/sh -c``) or an argument list.

        Returns its :class:`CommandResult` whatever its exit status (check
        ``exit_code``). ``timeout`` (seconds, or ``"30s"``) kills its whole
        tree and raises :class:`CommandTimeout`; without it the profile's
        ``limits.timeout`` applies. ``on_stdout``/``on_stderr`` get text as
        it arrives. ``background=True`` returns a :class:`CommandHandle` at
        once.
        """
        stream = not background and (on_stdout is not None or on_stderr is not None)
        body = _core.exec_body(
            cmd,
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=stdin,
            output_cap=output_cap,
            background=background,
            stream=stream,
        )
        path = f"/v1/sandboxes/{sid(self._sb.id)}/exec"
        http_timeout = _core.exec_http_timeout(timeout)
        if background:
            d = self._sb._http.json(Req("POST", path, json=body))
            return CommandHandle(self._sb, int(d["pid"]), d.get("os_pid"))
        if not stream:
            d = self._sb._http.json(Req("POST", path, json=body, timeout=http_timeout))
            return _core.finish(CommandResult.from_json(d))
        req = Req("POST", path, json=body, timeout=http_timeout)
        http = self._sb._http
        try:
            with http.client.stream(req.method, req.path, **req.kwargs()) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _core.raise_for(resp)
                result = None
                for line in resp.iter_lines():
                    got = _core.stream_line(line, on_stdout, on_stderr)
                    if got is not None:
                        result = got
        except httpx.TimeoutException as e:
            raise errors.ServerError(f"airlock serve stopped answering the exec: {e}") from e
        except httpx.TransportError as e:
            raise http.endpoint.unreachable(e) from e
        if result is None:
            raise errors.ServerError("the exec's stream ended without a result")
        return _core.finish(result)

    def list(self) -> list[int]:
        """Ids of the processes still running."""
        d = self._sb._http.json(Req("GET", f"/v1/sandboxes/{sid(self._sb.id)}/processes"))
        return [int(p) for p in d.get("running", [])]

    def connect(self, pid: int) -> CommandHandle:
        """A handle on a process by its id (from ``list()`` or a handle's ``pid``)."""
        d = self._sb._http.json(
            Req("GET", f"/v1/sandboxes/{sid(self._sb.id)}/processes/{int(pid)}")
        )
        return CommandHandle(self._sb, int(d["pid"]), d.get("os_pid"))

    def kill(self, pid: int, signal: str | int = "KILL") -> None:
        CommandHandle(self._sb, int(pid), None).kill(signal)


class Files:
    """``sandbox.files``: the sandbox's writable places (workspace, /tmp,
    /var/tmp, $HOME). Paths are absolute or relative to the workspace."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def _path(self, tail: str = "") -> str:
        return f"/v1/sandboxes/{sid(self._sb.id)}/files{tail}"

    def write(
        self, path: str, data: str | bytes, *, mode: int | str | None = None
    ) -> EntryInfo:
        """Writes a file (parents made), replacing one that is there."""
        params = _core.file_params(path, **_core.mode_text(mode))
        d = self._sb._http.json(
            Req("PUT", self._path(), params=params, content=_core.to_bytes(data), timeout=None)
        )
        return EntryInfo.from_json(d)

    @overload
    def read(self, path: str, format: Literal["text"] = "text") -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """Reads a file: text (UTF-8, strict) by default, or ``format="bytes"``."""
        resp = self._sb._http.call(
            Req("GET", self._path(), params=_core.file_params(path), timeout=None)
        )
        if format == "bytes":
            return resp.content
        return resp.content.decode("utf-8")

    def list(self, path: str = ".") -> list[EntryInfo]:
        d = self._sb._http.json(
            Req("GET", self._path(), params=_core.file_params(path, list="1"))
        )
        return [EntryInfo.from_json(e) for e in d.get("entries", [])]

    def get_info(self, path: str) -> EntryInfo:
        return EntryInfo.from_json(
            self._sb._http.json(
                Req("GET", self._path(), params=_core.file_params(path, stat="1"))
            )
        )

    def exists(self, path: str) -> bool:
        try:
            self.get_info(path)
        except (errors.FileNotFound, errors.NotADirectory):
            return False
        return True

    def remove(self, path: str, *, recursive: bool = False) -> None:
        params = _core.file_params(path, **({"recursive": "1"} if recursive else {}))
        self._sb._http.call(Req("DELETE", self._path(), params=params))

    def make_dir(self, path: str, *, parents: bool = True) -> EntryInfo:
        params = _core.file_params(path, **({"parents": "1"} if parents else {}))
        return EntryInfo.from_json(
            self._sb._http.json(Req("POST", self._path("/mkdir"), params=params))
        )


class Sandbox:
    """A live sandbox on ``airlock serve``.

    ``Sandbox.create(...)`` makes one; used as a context manager it is
    deleted at the end of the block (whatever happened in it).
    """

    def __init__(self, sandbox_id: str, http: _Http, info: SandboxInfo | None = None) -> None:
        self.id = sandbox_id
        self._http = http
        self._info = info
        self.commands = Commands(self)
        self.files = Files(self)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, server={self._http.endpoint.url!r})"

    # --- life ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        profile: str | Mapping[str, Any] | None = None,
        *,
        timeout: float | str | None = None,
        idle_timeout: float | str | None = None,
        env: Mapping[str, str] | None = None,
        allow_hosts: Sequence[str] | None = None,
        workspace: str | None = None,
        sandbox_id: str | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Sandbox:
        """Creates a sandbox.

        ``profile`` is a profile name (built-in, or in the server's
        ``--profiles-dir``) or an inline profile (a dict of a profile
        file's fields). ``timeout`` is its lifetime (the server's ``ttl``),
        in seconds or ``"5m"``; ``idle_timeout`` closes it after that long
        without a request. ``allow_hosts`` turns on the egress allowlist
        with these hosts (``"pypi.org"``, ``"*.example.com:443"``).
        """
        http = _Http(Endpoint.resolve(url, token))
        body = _core.create_body(
            profile,
            sandbox_id=sandbox_id,
            timeout=timeout,
            idle_timeout=idle_timeout,
            env=env,
            allow_hosts=allow_hosts,
            workspace=workspace,
        )
        try:
            d = http.json(Req("POST", "/v1/sandboxes", json=body, timeout=120.0))
        except BaseException:
            http.close()
            raise
        info = SandboxInfo.from_json(d)
        return cls(info.id, http, info)

    @classmethod
    def connect(
        cls, sandbox_id: str, *, url: str | None = None, token: str | None = None
    ) -> Sandbox:
        """Attaches to a running sandbox by id; :class:`SandboxNotFound` when
        there is none (or it has closed)."""
        http = _Http(Endpoint.resolve(url, token))
        try:
            info = SandboxInfo.from_json(
                http.json(Req("GET", f"/v1/sandboxes/{sid(sandbox_id)}"))
            )
            if not info.running:
                raise errors.SandboxClosed(
                    f"sandbox {sandbox_id!r} has closed ({info.closed_reason})",
                    code="sandbox_closed",
                )
        except BaseException:
            http.close()
            raise
        return cls(info.id, http, info)

    @classmethod
    def list(cls, *, url: str | None = None, token: str | None = None) -> list[SandboxInfo]:
        """Every sandbox the server holds."""
        http = _Http(Endpoint.resolve(url, token))
        try:
            d = http.json(Req("GET", "/v1/sandboxes"))
        finally:
            http.close()
        return [SandboxInfo.from_json(s) for s in d.get("sandboxes", [])]

    def get_info(self) -> SandboxInfo:
        self._info = SandboxInfo.from_json(
            self._http.json(Req("GET", f"/v1/sandboxes/{sid(self.id)}"))
        )
        return self._info

    def is_running(self) -> bool:
        try:
            return self.get_info().running
        except errors.SandboxNotFound:
            return False

    def kill(self) -> dict[str, Any]:
        """Deletes the sandbox: every process killed, every file gone. Returns
        the close report (network decisions, canary touches, the audit
        log's summary). :class:`SandboxNotFound` when it is already gone."""
        return dict(
            self._http.json(Req("DELETE", f"/v1/sandboxes/{sid(self.id)}", timeout=120.0))
        )

    def close(self) -> None:
        """Closes this client's connection; the sandbox lives on."""
        self._http.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        except errors.SandboxNotFound:
            pass
        finally:
            self.close()

    # --- state --------------------------------------------------------------

    def reset(self, checkpoint: str | None = None) -> float:
        """Kills every process and puts the writable places back as they were
        at create (or at ``checkpoint``). Returns the milliseconds it took."""
        body = {"checkpoint": checkpoint} if checkpoint is not None else {}
        d = self._http.json(Req("POST", f"/v1/sandboxes/{sid(self.id)}/reset", json=body))
        return float(d["ms"])

    def checkpoint(self, name: str) -> float:
        """Saves the writable places as ``name`` (for ``reset(checkpoint=name)``)."""
        d = self._http.json(
            Req("POST", f"/v1/sandboxes/{sid(self.id)}/checkpoint", json={"name": name})
        )
        return float(d["ms"])

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's events so far, oldest first."""
        d = self._http.json(Req("GET", f"/v1/sandboxes/{sid(self.id)}/audit"))
        return list(d.get("events", []))
