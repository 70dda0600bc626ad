"""The asyncio client: the same shape as the blocking one, with ``await``."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Literal, Mapping, Sequence, overload

import httpx

from . import _core, errors
from ._core import Command, Endpoint, OutputHandler, Req, Stdin, sid
from .models import CommandResult, EntryInfo, ProcessOutput, SandboxInfo


class _AsyncHttp:
    """One httpx client on the endpoint; errors mapped."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        transport = (
            httpx.AsyncHTTPTransport(uds=endpoint.socket) if endpoint.socket else None
        )
        self.client = httpx.AsyncClient(
            base_url=endpoint.base_url,
            transport=transport,
            headers=endpoint.headers(),
        )

    async def call(self, req: Req) -> httpx.Response:
        try:
            resp = await self.client.request(req.method, req.path, **req.kwargs())
        except httpx.TimeoutException as e:
            raise errors.ServerError(
                f"airlock serve did not answer {req.method} {req.path} in time: {e}"
            ) from e
        except (httpx.TransportError, OSError) as e:
            raise self.endpoint.unreachable(e) from e
        _core.raise_for(resp)
        return resp

    async def json(self, req: Req) -> Any:
        return (await self.call(req)).json()

    async def close(self) -> None:
        await self.client.aclose()


class AsyncCommandHandle:
    """A command started with ``background=True``."""

    def __init__(self, sandbox: AsyncSandbox, pid: int, os_pid: int | None) -> None:
        self._sb = sandbox
        self.pid = pid
        self.os_pid = os_pid

    def _path(self, tail: str = "") -> str:
        return f"/v1/sandboxes/{sid(self._sb.id)}/processes/{self.pid}{tail}"

    async def wait(self, timeout: float | None = None) -> CommandResult:
        """Waits for its end (at most ``timeout`` seconds; ``None``: no limit)
        and gives its result. Raises :class:`CommandTimeout` when its own
        timeout killed it, and ``TimeoutError`` when ``timeout`` passes first
        (it keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _core.WAIT_SLICE
            if deadline is not None:
                left = min(left, max(deadline - time.monotonic(), 0.0))
            st = await self._sb._http.json(
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

    async def is_running(self) -> bool:
        st = await self._sb._http.json(Req("GET", self._path()))
        return st.get("state") == "running"

    async def send_stdin(self, data: str | bytes, *, eof: bool = False) -> None:
        """Writes to its stdin (when it was started without ``stdin``)."""
        await self._sb._http.call(
            Req(
                "POST",
                self._path("/stdin"),
                params={"eof": "1"} if eof else {},
                content=_core.to_bytes(data),
            )
        )

    async def close_stdin(self) -> None:
        await self.send_stdin(b"", eof=True)

    async def output(
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
            await self._sb._http.json(Req("GET", self._path("/output"), params=params))
        )

    async def kill(self, signal: str | int = "KILL") -> None:
        """Sends it a signal (default SIGKILL)."""
        await self._sb._http.call(
            Req("POST", self._path("/signal"), json={"signal": signal})
        )


class AsyncCommands:
    """``sandbox.commands``: run commands in the sandbox."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    @overload
    async def run(
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
    async def run(
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
    ) -> AsyncCommandHandle: ...

    async def run(
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
    ) -> CommandResult | AsyncCommandHandle:
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
            d = await self._sb._http.json(Req("POST", path, json=body))
            return AsyncCommandHandle(self._sb, int(d["pid"]), d.get("os_pid"))
        if not stream:
            d = await self._sb._http.json(Req("POST", path, json=body, timeout=http_timeout))
            return _core.finish(CommandResult.from_json(d))
        req = Req("POST", path, json=body, timeout=http_timeout)
        http = self._sb._http
        try:
            async with http.client.stream(req.method, req.path, **req.kwargs()) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _core.raise_for(resp)
                result = None
                async for line in resp.aiter_lines():
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

    async def list(self) -> list[int]:
        """Ids of the processes still running."""
        d = await self._sb._http.json(Req("GET", f"/v1/sandboxes/{sid(self._sb.id)}/processes"))
        return [int(p) for p in d.get("running", [])]

    async def connect(self, pid: int) -> AsyncCommandHandle:
        """A handle on a process by its id (from ``list()`` or a handle's ``pid``)."""
        d = await self._sb._http.json(
            Req("GET", f"/v1/sandboxes/{sid(self._sb.id)}/processes/{int(pid)}")
        )
        return AsyncCommandHandle(self._sb, int(d["pid"]), d.get("os_pid"))

    async def kill(self, pid: int, signal: str | int = "KILL") -> None:
        await AsyncCommandHandle(self._sb, int(pid), None).kill(signal)


class AsyncFiles:
    """``sandbox.files``: the sandbox's writable places (workspace, /tmp,
    /var/tmp, $HOME). Paths are absolute or relative to the workspace."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    def _path(self, tail: str = "") -> str:
        return f"/v1/sandboxes/{sid(self._sb.id)}/files{tail}"

    async def write(
        self, path: str, data: str | bytes, *, mode: int | str | None = None
    ) -> EntryInfo:
        """Writes a file (parents made), replacing one that is there."""
        params = _core.file_params(path, **_core.mode_text(mode))
        d = await self._sb._http.json(
            Req("PUT", self._path(), params=params, content=_core.to_bytes(data), timeout=None)
        )
        return EntryInfo.from_json(d)

    @overload
    async def read(self, path: str, format: Literal["text"] = "text") -> str: ...

    @overload
    async def read(self, path: str, format: Literal["bytes"]) -> bytes: ...

    async def read(self, path: str, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """Reads a file: text (UTF-8, strict) by default, or ``format="bytes"``."""
        resp = await self._sb._http.call(
            Req("GET", self._path(), params=_core.file_params(path), timeout=None)
        )
        if format == "bytes":
            return resp.content
        return resp.content.decode("utf-8")

    async def list(self, path: str = ".") -> list[EntryInfo]:
        d = await self._sb._http.json(
            Req("GET", self._path(), params=_core.file_params(path, list="1"))
        )
        return [EntryInfo.from_json(e) for e in d.get("entries", [])]

    async def get_info(self, path: str) -> EntryInfo:
        return EntryInfo.from_json(
            await self._sb._http.json(
                Req("GET", self._path(), params=_core.file_params(path, stat="1"))
            )
        )

    async def exists(self, path: str) -> bool:
        try:
            await self.get_info(path)
        except (errors.FileNotFound, errors.NotADirectory):
            return False
        return True

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        params = _core.file_params(path, **({"recursive": "1"} if recursive else {}))
        await self._sb._http.call(Req("DELETE", self._path(), params=params))

    async def make_dir(self, path: str, *, parents: bool = True) -> EntryInfo:
        params = _core.file_params(path, **({"parents": "1"} if parents else {}))
        return EntryInfo.from_json(
            await self._sb._http.json(Req("POST", self._path("/mkdir"), params=params))
        )


class AsyncSandbox:
    """A live sandbox on ``airlock serve``.

    ``await AsyncSandbox.create(...)`` makes one; used as ``async with`` it is
    deleted at the end of the block (whatever happened in it).
    """

    def __init__(self, sandbox_id: str, http: _AsyncHttp, info: SandboxInfo | None = None) -> None:
        self.id = sandbox_id
        self._http = http
        self._info = info
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, server={self._http.endpoint.url!r})"

    # --- life ---------------------------------------------------------------

    @classmethod
    async def create(
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
    ) -> AsyncSandbox:
        """Creates a sandbox.

        ``profile`` is a profile name (built-in, or in the server's
        ``--profiles-dir``) or an inline profile (a dict of a profile
        file's fields). ``timeout`` is its lifetime (the server's ``ttl``),
        in seconds or ``"5m"``; ``idle_timeout`` closes it after that long
        without a request. ``allow_hosts`` turns on the egress allowlist
        with these hosts (``"pypi.org"``, ``"*.example.com:443"``).
        """
        http = _AsyncHttp(Endpoint.resolve(url, token))
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
            d = await http.json(Req("POST", "/v1/sandboxes", json=body, timeout=120.0))
        except BaseException:
            await http.close()
            raise
        info = SandboxInfo.from_json(d)
        return cls(info.id, http, info)

    @classmethod
    async def connect(
        cls, sandbox_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """Attaches to a running sandbox by id; :class:`SandboxNotFound` when
        there is none (or it has closed)."""
        http = _AsyncHttp(Endpoint.resolve(url, token))
        try:
            info = SandboxInfo.from_json(
                await http.json(Req("GET", f"/v1/sandboxes/{sid(sandbox_id)}"))
            )
            if not info.running:
                raise errors.SandboxClosed(
                    f"sandbox {sandbox_id!r} has closed ({info.closed_reason})",
                    code="sandbox_closed",
                )
        except BaseException:
            await http.close()
            raise
        return cls(info.id, http, info)

    @classmethod
    async def list(cls, *, url: str | None = None, token: str | None = None) -> list[SandboxInfo]:
        """Every sandbox the server holds."""
        http = _AsyncHttp(Endpoint.resolve(url, token))
        try:
            d = await http.json(Req("GET", "/v1/sandboxes"))
        finally:
            await http.close()
        return [SandboxInfo.from_json(s) for s in d.get("sandboxes", [])]

    async def get_info(self) -> SandboxInfo:
        self._info = SandboxInfo.from_json(
            await self._http.json(Req("GET", f"/v1/sandboxes/{sid(self.id)}"))
        )
        return self._info

    async def is_running(self) -> bool:
        try:
            return (await self.get_info()).running
        except errors.SandboxNotFound:
            return False

    async def kill(self) -> dict[str, Any]:
        """Deletes the sandbox: every process killed, every file gone. Returns
        the close report (network decisions, canary touches, the audit
        log's summary). :class:`SandboxNotFound` when it is already gone."""
        return dict(
            await self._http.json(Req("DELETE", f"/v1/sandboxes/{sid(self.id)}", timeout=120.0))
        )

    async def close(self) -> None:
        """Closes this client's connection; the sandbox lives on."""
        await self._http.close()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.kill()
        except errors.SandboxNotFound:
            pass
        finally:
            await self.close()

    # --- state --------------------------------------------------------------

    async def reset(self, checkpoint: str | None = None) -> float:
        """Kills every process and puts the writable places back as they were
        at create (or at ``checkpoint``). Returns the milliseconds it took."""
        body = {"checkpoint": checkpoint} if checkpoint is not None else {}
        d = await self._http.json(Req("POST", f"/v1/sandboxes/{sid(self.id)}/reset", json=body))
        return float(d["ms"])

    async def checkpoint(self, name: str) -> float:
        """Saves the writable places as ``name`` (for ``reset(checkpoint=name)``)."""
        d = await self._http.json(
            Req("POST", f"/v1/sandboxes/{sid(self.id)}/checkpoint", json={"name": name})
        )
        return float(d["ms"])

    async def audit(self) -> list[dict[str, Any]]:
        """The audit log's events so far, oldest first."""
        d = await self._http.json(Req("GET", f"/v1/sandboxes/{sid(self.id)}/audit"))
        return list(d.get("events", []))
