"""The ``airlock`` sandbox environment for Inspect AI."""

from __future__ import annotations

import base64
import errno
import logging
import posixpath
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any, Literal, Union, overload

from pydantic import BaseModel, ConfigDict
from typing_extensions import override

import airlock
from airlock import AsyncSandbox
from airlock import errors as aerr
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)

logger = logging.getLogger(__name__)

#: Every sandbox this provider makes has an id with this prefix
#: (``inspect cleanup`` deletes them).
ID_PREFIX = "inspect-"

#: ``read_file`` through an exec for paths the files API does not reach
#: (the read-only system, or a symlink the agent made): exit statuses.
_READ_SCRIPT = (
    'if [ -d "$1" ]; then exit 21; fi; '
    'if [ ! -e "$1" ]; then exit 2; fi; '
    'if [ ! -r "$1" ]; then exit 13; fi; '
    'n=$(wc -c < "$1") || exit 5; '
    'if [ "$n" -gt "$2" ]; then exit 27; fi; '
    'exec base64 -w0 -- "$1"'
)
_WRITE_SCRIPT = 'mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1"'


class AirlockSandboxConfig(BaseModel):
    """``sandbox=("airlock", AirlockSandboxConfig(...))``, or a dict of these
    fields in a task's YAML/JSON config.

    ``profile`` is a profile name (built-in, or in ``airlock serve
    --profiles-dir``) or the path of a profile file (``.toml``), which is
    sent inline. ``url``/``token`` default to ``AIRLOCK_URL``/``AIRLOCK_TOKEN``
    and then ``airlock serve``'s default socket. ``ttl`` bounds a sample's
    sandbox lifetime (seconds or ``"30m"``); ``env`` is added to every
    command's environment; ``allow_hosts`` turns on the egress allowlist.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str | None = None
    url: str | None = None
    token: str | None = None
    ttl: Union[float, str, None] = None
    env: dict[str, str] = {}
    allow_hosts: list[str] | None = None


def _config(config: SandboxEnvironmentConfigType | None) -> AirlockSandboxConfig:
    if config is None:
        return AirlockSandboxConfig()
    if isinstance(config, AirlockSandboxConfig):
        return config
    if isinstance(config, str):
        return AirlockSandboxConfig(profile=config)
    if isinstance(config, BaseModel):
        return AirlockSandboxConfig(**config.model_dump())
    raise ValueError(f"airlock sandbox: unsupported config {config!r}")


def _profile(cfg: AirlockSandboxConfig) -> str | dict[str, Any] | None:
    """A name as is; a ``.toml`` path read and sent inline."""
    p = cfg.profile
    if p is None:
        return None
    if p.endswith(".toml") or "/" in p:
        path = Path(p)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"airlock sandbox: profile file {p}: {e.strerror}") from e
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"airlock sandbox: profile file {p}: {e}") from e
        data.setdefault("name", re.sub(r"[^A-Za-z0-9._-]", "-", path.stem) or "inline")
        return data
    return p


def _unavailable(e: Exception) -> SandboxUnavailableError:
    return SandboxUnavailableError(f"airlock: {e}")


@sandboxenv(name="airlock")
class AirlockSandboxEnvironment(SandboxEnvironment):
    """A sample's live airlock sandbox, held by ``airlock serve``.

    Every command runs as the sandbox's one unprivileged user; the working
    directory (and the base of relative paths) is the workspace.
    """

    #: Sandbox ids made by this process and not yet deleted.
    _live: set[str] = set()

    def __init__(self, sandbox: AsyncSandbox, working_dir: str) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.working_dir = working_dir
        self._user: tuple[str, str] | None = None

    # --- life ---------------------------------------------------------------

    @override
    @classmethod
    def config_files(cls) -> list[str]:
        return []

    @override
    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return AirlockSandboxConfig(**config)

    @override
    @classmethod
    async def task_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None
    ) -> None:
        # Fail the task at once, with the server's words, when the server is
        # not there or the profile does not validate: one throwaway sandbox.
        cfg = _config(config)
        sb = await cls._create(cfg, f"{ID_PREFIX}check-{uuid.uuid4().hex[:12]}")
        try:
            await sb.kill()
        finally:
            cls._live.discard(sb.id)
            await sb.close()

    @classmethod
    async def _create(cls, cfg: AirlockSandboxConfig, sandbox_id: str) -> AsyncSandbox:
        try:
            sb = await AsyncSandbox.create(
                _profile(cfg),
                sandbox_id=sandbox_id,
                timeout=cfg.ttl,
                env=cfg.env or None,
                allow_hosts=cfg.allow_hosts,
                url=cfg.url,
                token=cfg.token,
            )
        except aerr.SandboxError as e:
            raise RuntimeError(f"airlock: cannot create a sandbox: {e}") from e
        cls._live.add(sb.id)
        return sb

    @override
    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        cfg = _config(config)
        sb = await cls._create(cfg, f"{ID_PREFIX}{uuid.uuid4().hex[:20]}")
        writable = sb._info.writable if sb._info else []
        working_dir = writable[0] if writable else "/workspace"
        return {"default": cls(sb, working_dir)}

    @override
    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            if isinstance(env, AirlockSandboxEnvironment):
                await env._destroy()

    async def _destroy(self) -> None:
        try:
            await self.sandbox.kill()
        except aerr.SandboxNotFound:
            pass
        except aerr.SandboxError as e:
            logger.warning("airlock: deleting sandbox %s failed: %s", self.sandbox.id, e)
        finally:
            type(self)._live.discard(self.sandbox.id)
            await self.sandbox.close()

    @override
    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        if not cleanup:
            return
        cfg = _config(config)
        for sandbox_id in list(cls._live):
            await cls._delete(sandbox_id, cfg)

    @classmethod
    async def _delete(cls, sandbox_id: str, cfg: AirlockSandboxConfig) -> None:
        try:
            sb = await AsyncSandbox.connect(sandbox_id, url=cfg.url, token=cfg.token)
        except aerr.SandboxNotFound:
            cls._live.discard(sandbox_id)
            return
        try:
            await sb.kill()
        except aerr.SandboxNotFound:
            pass
        finally:
            cls._live.discard(sandbox_id)
            await sb.close()

    @override
    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        cfg = AirlockSandboxConfig()
        if id is not None:
            await cls._delete(id, cfg)
            return
        for info in airlock.Sandbox.list():
            if info.id.startswith(ID_PREFIX) and info.running:
                await cls._delete(info.id, cfg)

    # --- commands -----------------------------------------------------------

    def _resolve(self, path: str) -> str:
        if posixpath.isabs(path):
            return posixpath.normpath(path)
        return posixpath.normpath(posixpath.join(self.working_dir, path))

    async def _check_user(self, user: str | None) -> None:
        if user is None:
            return
        if self._user is None:
            r = await self.sandbox.commands.run(["sh", "-c", "id -u; id -un"], timeout=30)
            lines = r.stdout.split()
            self._user = (lines[0], lines[1]) if len(lines) >= 2 else ("", "")
        uid, name = self._user
        if user not in (uid, name):
            raise SandboxUserUnsupportedError(
                f"airlock runs every command as the sandbox's one unprivileged user "
                f"({name}, uid {uid}), so it cannot run a command as {user!r}; "
                "there is no root inside an airlock sandbox (see docs/inspect.md)"
            )

    @override
    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        await self._check_user(user)
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        try:
            r = await self.sandbox.commands.run(
                list(cmd),
                cwd=self._resolve(cwd) if cwd is not None else self.working_dir,
                env=env,
                timeout=timeout,
                stdin=input,
                output_cap=limit,
            )
        except aerr.CommandTimeout as e:
            why = (
                f"Command timed out after {timeout} seconds"
                if timeout is not None
                else "Command ran past the airlock profile's limits.timeout"
            )
            err = TimeoutError(why)
            partial = e.result.stdout + e.result.stderr
            if partial:
                setattr(err, "truncated_output", partial)
            raise err from e
        except aerr.CommandNotStarted as e:
            return ExecResult(success=False, returncode=126, stdout="", stderr=f"{e}\n")
        except (aerr.SandboxNotFound, aerr.ServerUnavailable, aerr.ServerError) as e:
            raise _unavailable(e) from e
        if r.reason.get("kind") == "exec_failed" and r.reason.get("errno") == errno.EACCES:
            raise PermissionError(
                errno.EACCES, "Permission denied (not executable)", cmd[0] if cmd else ""
            )
        if r.stdout_dropped or r.stderr_dropped:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=r.stdout,
            )
        return ExecResult(
            success=r.exit_code == 0,
            returncode=r.exit_code,
            stdout=r.stdout,
            stderr=r.stderr,
        )

    # --- files --------------------------------------------------------------

    @override
    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self._resolve(file)
        try:
            await self.sandbox.files.write(path, contents)
        except aerr.IsADirectory as e:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file) from e
        except aerr.NotADirectory as e:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", file) from e
        except aerr.PathForbidden as e:
            if e.reason in ("link", "hard_link"):
                await self._write_via_exec(file, path, contents)
                return
            raise PermissionError(errno.EACCES, f"Permission denied ({e})", file) from e
        except aerr.NoSpace as e:
            raise OSError(errno.ENOSPC, f"No space left in the sandbox ({e})", file) from e
        except (aerr.SandboxNotFound, aerr.ServerUnavailable, aerr.ServerError) as e:
            raise _unavailable(e) from e

    async def _write_via_exec(self, file: str, path: str, contents: str | bytes) -> None:
        r = await self.sandbox.commands.run(
            ["sh", "-c", _WRITE_SCRIPT, "sh", path], stdin=contents, timeout=600
        )
        if r.exit_code != 0:
            msg = r.stderr.strip()
            if "directory" in msg.lower():
                raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
            raise PermissionError(errno.EACCES, f"Permission denied ({msg})", file)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    @override
    async def read_file(self, file: str, text: bool = True) -> Union[str, bytes]:
        path = self._resolve(file)
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        try:
            info = await self.sandbox.files.get_info(path)
            if info.is_dir:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
            if info.size > limit:
                raise OutputLimitExceededError(
                    limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR,
                    truncated_output=None,
                )
            data = await self.sandbox.files.read(path, format="bytes")
        except aerr.FileNotFound as e:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", file) from e
        except aerr.IsADirectory as e:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file) from e
        except aerr.NotADirectory as e:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", file) from e
        except aerr.PathForbidden as e:
            if e.reason in ("outside", "link", "hard_link"):
                data = await self._read_via_exec(file, path, limit)
            else:
                raise PermissionError(errno.EACCES, f"Permission denied ({e})", file) from e
        except aerr.TooLarge as e:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR,
                truncated_output=None,
            ) from e
        except (aerr.SandboxNotFound, aerr.ServerUnavailable, aerr.ServerError) as e:
            raise _unavailable(e) from e
        return data.decode("utf-8") if text else data

    async def _read_via_exec(self, file: str, path: str, limit: int) -> bytes:
        """A file the files API does not reach, read by the sandbox's own user."""
        r = await self.sandbox.commands.run(
            ["sh", "-c", _READ_SCRIPT, "sh", path, str(limit)],
            timeout=600,
            output_cap=(limit // 3 + 1) * 4 + 16,
        )
        if r.exit_code == 21:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
        if r.exit_code == 2:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", file)
        if r.exit_code == 13:
            raise PermissionError(errno.EACCES, "Permission denied", file)
        if r.exit_code == 27:
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR,
                truncated_output=None,
            )
        if r.exit_code != 0:
            raise PermissionError(errno.EACCES, f"cannot read: {r.stderr.strip()}", file)
        return base64.b64decode(r.stdout)

    @override
    def default_polling_interval(self) -> float:
        return 0.2
