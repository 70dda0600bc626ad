"""The Python client against a real ``airlock serve`` (the session's
``server`` fixture in conftest.py): no mocks, every test drives real
sandboxes and checks what they did.

Markers are unique per test (uuid), so a check on the host (``/proc``) or in
the audit log cannot be satisfied by another test's leftovers.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import httpx
import pytest

import airlock
from airlock import AsyncSandbox, Sandbox

# --- helpers -----------------------------------------------------------------


def mark(prefix: str = "m") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def unique_sleep() -> str:
    """A sleep duration no other process on the host has in its cmdline
    (``sleep 7123456789.25`` sleeps ~226 years: it ends only when killed)."""
    return f"7{uuid.uuid4().int % 10**9:09d}.25"


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            return got
        time.sleep(interval)


def host_pids_with(text: str) -> list[int]:
    """Host processes whose cmdline contains ``text`` (read from /proc)."""
    needle = text.encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if needle in data:
            found.append(int(d))
    return found


def live(server) -> int:
    with server.http() as c:
        return int(c.get("/healthz").json()["live"])


def listing(server) -> dict[str, Any]:
    with server.http() as c:
        return c.get("/v1/sandboxes").json()


def sandbox_ps(sb: Sandbox) -> str:
    return sb.commands.run(["ps", "-eo", "args"]).stdout


def drop(sb: Sandbox) -> None:
    try:
        sb.kill()
    except airlock.SandboxNotFound:
        pass
    finally:
        sb.close()


async def adrop(sb: AsyncSandbox) -> None:
    try:
        await sb.kill()
    except airlock.SandboxNotFound:
        pass
    finally:
        await sb.close()


@pytest.fixture
def sb(server) -> Iterator[Sandbox]:
    s = Sandbox.create()
    try:
        yield s
    finally:
        drop(s)


@pytest.fixture
async def asb(server) -> AsyncIterator[AsyncSandbox]:
    s = await AsyncSandbox.create()
    try:
        yield s
    finally:
        await adrop(s)


# --- commands: state, env, cwd, argv, exit codes -----------------------------


def test_files_persist_across_commands_not_cwd_or_shell_vars(sb: Sandbox) -> None:
    m = mark()
    r = sb.commands.run(f"echo {m} > state.txt && cd /tmp && echo there > here.txt && export V={m}")
    assert r.exit_code == 0, r
    # each command is a fresh shell in the workspace; the files stay
    assert sb.commands.run("pwd").stdout == "/workspace\n"
    assert sb.commands.run("echo ${V-unset}").stdout == "unset\n"
    assert sb.commands.run("cat state.txt").stdout == f"{m}\n"
    assert sb.commands.run(["cat", "/tmp/here.txt"]).stdout == "there\n"
    assert sb.commands.run(["cat", "/workspace/state.txt"]).stdout == f"{m}\n"


def test_background_process_effect_seen_by_later_commands(sb: Sandbox) -> None:
    m = mark()
    h = sb.commands.run(
        f"while :; do echo tick >> /tmp/{m}; sleep 0.05; done", background=True
    )
    assert isinstance(h, airlock.CommandHandle)
    assert h.is_running()
    assert h.pid in sb.commands.list()

    def ticks() -> int:
        r = sb.commands.run(f"cat /tmp/{m} 2>/dev/null | wc -l")
        return int(r.stdout.strip() or 0)

    first = wait_until(lambda: ticks() >= 3 and ticks())
    assert first, "the background loop wrote nothing a later command could see"
    assert wait_until(lambda: ticks() > first), "the background loop stopped between commands"
    h.kill()
    r = h.wait(10)
    assert r.exit_code == 137 and r.reason == {"kind": "signal", "signal": 9}
    assert h.pid not in sb.commands.list()
    n = ticks()
    time.sleep(0.3)
    assert ticks() == n, "the loop kept writing after kill()"


def test_env_at_create_and_per_command(server) -> None:
    m1, m2 = mark("c"), mark("p")
    s = Sandbox.create(env={"CREATE_VAR": m1, "SHARED": "from-create"})
    try:
        assert s.commands.run("echo $CREATE_VAR $SHARED").stdout == f"{m1} from-create\n"
        r = s.commands.run("echo $CREATE_VAR $SHARED $PER", env={"SHARED": "from-cmd", "PER": m2})
        assert r.stdout == f"{m1} from-cmd {m2}\n"
        # a command's env is that command's only
        assert s.commands.run("echo $SHARED ${PER-unset}").stdout == "from-create unset\n"
        assert s.commands.run(["printenv", "PER"], env={"PER": m2}).stdout == f"{m2}\n"
        assert s.commands.run(["printenv", "CREATE_VAR"]).stdout == f"{m1}\n"
    finally:
        drop(s)


def test_cwd(sb: Sandbox) -> None:
    assert sb.commands.run("pwd").stdout == "/workspace\n"
    assert sb.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    sb.files.make_dir("sub/deeper")
    assert sb.commands.run("pwd", cwd="sub/deeper").stdout == "/workspace/sub/deeper\n"
    assert sb.commands.run(["pwd"], cwd="/workspace/sub").stdout == "/workspace/sub\n"
    with pytest.raises(airlock.CommandNotStarted) as ei:
        sb.commands.run("pwd", cwd="no-such-dir")
    assert ei.value.status == 422
    assert "no-such-dir" in str(ei.value)
    # still fine afterwards
    assert sb.commands.run("pwd").stdout == "/workspace\n"


def test_argv_vs_shell_string(sb: Sandbox) -> None:
    home = sb.commands.run(["printenv", "HOME"]).stdout.strip()
    assert home.startswith("/")
    # a string goes through /bin/sh -c: expansion, pipes, ;
    assert sb.commands.run("echo $HOME").stdout == f"{home}\n"
    assert sb.commands.run("echo one; echo two | tr a-z A-Z").stdout == "one\nTWO\n"
    # an argv is exec'd as is: nothing expanded or split
    assert sb.commands.run(["echo", "$HOME", "a  b"]).stdout == "$HOME a  b\n"
    r = sb.commands.run(["echo", "x;", "exit", "3"])
    assert (r.exit_code, r.stdout) == (0, "x; exit 3\n")
    assert sb.commands.run(["printf", "%s|", "a b", "c;d", "'q'", ""]).stdout == "a b|c;d|'q'||"
    assert sb.commands.run(["sh", "-c", 'echo "$1-$2"', "arg0", "x y", "z"]).stdout == "x y-z\n"


def test_exit_codes_are_results_not_exceptions(sb: Sandbox) -> None:
    r = sb.commands.run("true")
    assert (r.exit_code, r.ok, r.reason) == (0, True, {"kind": "exit", "code": 0})

    r = sb.commands.run("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.ok) == (3, False)
    assert r.reason == {"kind": "exit", "code": 3}
    assert (r.stdout, r.stderr) == ("out\n", "err\n")

    r = sb.commands.run("no-such-command-xyz --flag")
    assert r.exit_code == 127
    assert "not found" in r.stderr

    r = sb.commands.run(["no-such-command-xyz"])
    assert r.exit_code == 127
    assert r.reason.get("kind") == "exec_failed"

    sb.files.write("not-exec.sh", "#!/bin/sh\necho hi\n", mode=0o644)
    assert sb.commands.run(["./not-exec.sh"]).exit_code == 126

    r = sb.commands.run("kill -TERM $$")
    assert r.exit_code == 128 + signal.SIGTERM
    assert r.reason == {"kind": "signal", "signal": signal.SIGTERM}


def test_stdin_on_run(sb: Sandbox) -> None:
    assert sb.commands.run("tr a-z A-Z", stdin="hello\n").stdout == "HELLO\n"
    data = bytes(range(256))
    r = sb.commands.run(["sha256sum"], stdin=data)
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()


# --- files -------------------------------------------------------------------


def test_text_round_trip(sb: Sandbox) -> None:
    text = f"héllo wörld ✓ 🚀 {mark()}\nline 2\n\ttab\r\nno newline at end"
    info = sb.files.write("notes/t.txt", text)
    assert info.kind == "file" and info.size == len(text.encode("utf-8"))
    assert sb.files.read("notes/t.txt") == text
    assert sb.commands.run(["cat", "notes/t.txt"]).stdout == text
    # written by the sandbox, read by the client
    sb.commands.run("printf 'from the sandbox ✓\\n' > /tmp/made.txt")
    assert sb.files.read("/tmp/made.txt") == "from the sandbox ✓\n"
    # overwrite replaces (shorter content, no leftover tail)
    sb.files.write("notes/t.txt", "short")
    assert sb.files.read("notes/t.txt") == "short"
    # empty file
    assert sb.files.write("empty", b"").size == 0
    assert sb.files.read("empty", "bytes") == b""


def test_binary_every_byte_value(sb: Sandbox) -> None:
    data = bytes(range(256)) * 3 + bytes(reversed(range(256)))
    sb.files.write("/tmp/all.bin", data)
    got = sb.files.read("/tmp/all.bin", format="bytes")
    assert isinstance(got, bytes) and got == data
    r = sb.commands.run(["sha256sum", "/tmp/all.bin"])
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert sb.commands.run(["wc", "-c", "/tmp/all.bin"]).stdout.split()[0] == str(len(data))
    # the file's bytes through a command's stdout come back exact too
    assert sb.commands.run(["cat", "/tmp/all.bin"]).stdout_bytes == data
    # text mode is strict UTF-8
    with pytest.raises(UnicodeDecodeError):
        sb.files.read("/tmp/all.bin")
    # bytes made in the sandbox read back exact
    r = sb.commands.run("head -c 4096 /dev/urandom > rnd.bin && sha256sum rnd.bin")
    assert hashlib.sha256(sb.files.read("rnd.bin", "bytes")).hexdigest() == r.stdout.split()[0]


def test_large_binary_50mb(sb: Sandbox) -> None:
    data = os.urandom(50 * 1024 * 1024)
    want = hashlib.sha256(data).hexdigest()
    info = sb.files.write("big.bin", data)
    assert info.size == len(data)
    r = sb.commands.run(["sha256sum", "big.bin"], timeout=60)
    assert r.stdout.split()[0] == want
    got = sb.files.read("big.bin", "bytes")
    assert len(got) == len(data)
    assert hashlib.sha256(got).hexdigest() == want


def test_list_info_exists_remove_make_dir(sb: Sandbox) -> None:
    d = sb.files.make_dir("tree/a/b")
    assert (d.kind, d.is_dir, d.path, d.name) == ("dir", True, "/workspace/tree/a/b", "b")
    sb.files.write("tree/a/f1.txt", "1")
    sb.files.write("tree/x.sh", "#!/bin/sh\necho run-me\n", mode=0o755)

    entries = sb.files.list("tree")
    assert [(e.name, e.kind) for e in entries] == [("a", "dir"), ("x.sh", "file")]
    assert {e.path for e in entries} == {"/workspace/tree/a", "/workspace/tree/x.sh"}
    assert [e.name for e in sb.files.list("tree/a")] == ["b", "f1.txt"]

    info = sb.files.get_info("tree/x.sh")
    assert (info.kind, info.mode, info.size) == ("file", 0o755, len("#!/bin/sh\necho run-me\n"))
    assert abs(info.mtime - time.time()) < 300
    assert sb.files.get_info("tree/a/f1.txt").mode == 0o644
    assert sb.commands.run("./tree/x.sh").stdout == "run-me\n"

    assert sb.files.exists("tree/a/f1.txt")
    assert sb.files.exists("tree/a")
    assert not sb.files.exists("tree/nope")
    assert not sb.files.exists("/tmp/no/such/thing")

    sb.files.remove("tree/a/f1.txt")
    assert not sb.files.exists("tree/a/f1.txt")
    assert sb.commands.run("test -e tree/a/f1.txt").exit_code == 1

    with pytest.raises(airlock.Conflict):
        sb.files.remove("tree")
    assert sb.files.exists("tree/x.sh")
    sb.files.remove("tree", recursive=True)
    assert not sb.files.exists("tree")
    assert sb.commands.run("test -e tree").exit_code == 1

    with pytest.raises(airlock.FileNotFound):
        sb.files.make_dir("no-parent/child", parents=False)
    sb.files.make_dir("flat", parents=False)
    assert sb.commands.run("test -d flat").exit_code == 0
    with pytest.raises(airlock.FileNotFound):
        sb.files.get_info("tree")
    with pytest.raises(airlock.FileNotFound):
        sb.files.remove("tree")


def test_relative_paths_resolve_to_workspace(sb: Sandbox) -> None:
    m = mark()
    info = sb.files.write("rel/r.txt", m)
    assert info.path == "/workspace/rel/r.txt"
    assert sb.commands.run(["cat", "/workspace/rel/r.txt"]).stdout == m
    assert sb.files.read("/workspace/rel/r.txt") == m
    assert sb.files.get_info("rel/r.txt").path == "/workspace/rel/r.txt"
    assert [e.path for e in sb.files.list("rel")] == ["/workspace/rel/r.txt"]
    assert {e.name for e in sb.files.list()} == {e.name for e in sb.files.list("/workspace")}
    sb.commands.run(f"echo {m} > made-here", cwd="/workspace")
    assert sb.files.read("made-here") == f"{m}\n"


# --- output: streaming and bytes ---------------------------------------------


def test_streaming_callbacks_in_order_and_live(sb: Sandbox) -> None:
    events: list[tuple[float, str, str]] = []
    t0 = time.monotonic()
    r = sb.commands.run(
        "for i in 1 2 3 4; do echo out$i; echo err$i >&2; sleep 0.15; done",
        on_stdout=lambda s: events.append((time.monotonic() - t0, "out", s)),
        on_stderr=lambda s: events.append((time.monotonic() - t0, "err", s)),
    )
    done = time.monotonic() - t0
    out = [s for _, k, s in events if k == "out"]
    err = [s for _, k, s in events if k == "err"]
    assert "".join(out) == r.stdout == "out1\nout2\nout3\nout4\n"
    assert "".join(err) == r.stderr == "err1\nerr2\nerr3\nerr4\n"
    assert len(out) >= 3 and len(err) >= 3, events
    # they came as the command printed, not all at its end
    assert events[0][0] < done - 0.3, (events, done)
    # the two streams interleave in the order printed
    text = "".join(s for _, _, s in events)
    for i in (1, 2, 3):
        assert text.index(f"out{i}") < text.index(f"out{i + 1}")
        assert text.index(f"err{i}") < text.index(f"out{i + 1}")


def test_streaming_only_stdout_callback_keeps_stderr_in_result(sb: Sandbox) -> None:
    got: list[str] = []
    r = sb.commands.run("echo a; echo b >&2; exit 4", on_stdout=got.append)
    assert (r.exit_code, "".join(got), r.stderr) == (4, "a\n", "b\n")


def test_non_utf8_output_exact_bytes(sb: Sandbox) -> None:
    r = sb.commands.run("printf '\\377\\376abc\\200'; printf '\\351t\\351' >&2")
    assert r.stdout_bytes == b"\xff\xfeabc\x80"
    assert r.stderr_bytes == b"\xe9t\xe9"
    assert "\ufffd" in r.stdout and "abc" in r.stdout
    # streamed: the result still has the exact bytes
    chunks: list[str] = []
    r = sb.commands.run("printf '\\377x\\000y\\n'", on_stdout=chunks.append)
    assert r.stdout_bytes == b"\xffx\x00y\n"
    assert "".join(chunks).endswith("x\x00y\n")
    # valid UTF-8: text and bytes agree
    r = sb.commands.run("printf 'é✓\\n'")
    assert r.stdout == "é✓\n" and r.stdout_bytes == "é✓\n".encode()


# --- timeouts ----------------------------------------------------------------


def test_timeout_raises_with_partial_output_and_sandbox_survives(sb: Sandbox) -> None:
    m = mark()
    t0 = time.monotonic()
    with pytest.raises(airlock.CommandTimeout) as ei:
        sb.commands.run(f"echo before-{m}; echo e-{m} >&2; sleep 30", timeout=1)
    elapsed = time.monotonic() - t0
    assert elapsed < 5, elapsed
    e = ei.value
    assert isinstance(e, TimeoutError) and isinstance(e, airlock.SandboxError)
    assert e.result.stdout == f"before-{m}\n"
    assert e.result.stderr == f"e-{m}\n"
    assert e.result.exit_code == 124 and e.result.timed_out
    assert "timeout" in e.result.limits_hit
    # the sandbox goes on, with no leftover sleep
    assert sb.commands.run("echo alive").stdout == "alive\n"
    assert "sleep 30" not in sandbox_ps(sb)
    assert sb.commands.list() == []


def test_timeout_streaming(sb: Sandbox) -> None:
    got: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(airlock.CommandTimeout) as ei:
        sb.commands.run("echo first; sleep 30", timeout=1, on_stdout=got.append)
    assert time.monotonic() - t0 < 5
    assert "".join(got) == "first\n" == ei.value.result.stdout
    assert "sleep 30" not in sandbox_ps(sb)


def test_timeout_as_string(sb: Sandbox) -> None:
    with pytest.raises(airlock.CommandTimeout):
        sb.commands.run("sleep 30", timeout="500ms")
    assert sb.commands.run("true").exit_code == 0


def test_command_timeout_survives_pickle_and_copy(sb: Sandbox) -> None:
    import copy
    import pickle

    with pytest.raises(airlock.CommandTimeout) as ei:
        sb.commands.run("echo p; sleep 30", timeout=0.5)
    again = pickle.loads(pickle.dumps(ei.value))
    assert isinstance(again, airlock.CommandTimeout)
    assert again.result.stdout == "p\n"
    assert copy.copy(ei.value).result.stdout == "p\n"


# --- background processes ----------------------------------------------------


def test_background_stdin_and_wait(sb: Sandbox) -> None:
    h = sb.commands.run("cat", background=True)
    assert h.is_running()
    h.send_stdin("line one\n")
    h.send_stdin(b"\x00\xffbin\n")
    h.close_stdin()
    r = h.wait(10)
    assert r.exit_code == 0
    assert r.stdout_bytes == b"line one\n\x00\xffbin\n"
    assert not h.is_running()
    out = h.output()
    assert out.data == b"line one\n\x00\xffbin\n" and out.exited
    assert h.output(start=5).data == b"one\n\x00\xffbin\n"
    with pytest.raises(airlock.Conflict):
        h.send_stdin("too late")


def test_background_kill_ends_with_signal(sb: Sandbox) -> None:
    h = sb.commands.run("sleep 1000", background=True)
    assert h.pid in sb.commands.list()
    with pytest.raises(TimeoutError):
        h.wait(0.3)
    assert h.is_running()
    h.kill()
    r = h.wait(10)
    assert r.exit_code == 128 + 9
    assert r.reason == {"kind": "signal", "signal": 9}
    assert h.pid not in sb.commands.list()
    assert not h.is_running()

    # an argv command is the process itself: the signal ends it
    h2 = sb.commands.run(["sleep", "1001"], background=True)
    same = sb.commands.connect(h2.pid)
    assert same.pid == h2.pid and same.is_running()
    assert "sleep 1001" in sandbox_ps(sb)
    sb.commands.kill(h2.pid, "TERM")
    assert h2.wait(10).exit_code == 128 + signal.SIGTERM
    assert "sleep 1001" not in sandbox_ps(sb)
    with pytest.raises(airlock.FileNotFound):
        sb.commands.connect(999999)


@pytest.mark.xfail(
    strict=True,
    reason="server: POST .../processes/{pid}/signal signals only the process "
    "(here /bin/sh), not its tree, so a child the shell forked keeps running "
    "(reparented to the exec's airlock-init) while commands.list() says nothing "
    "runs; a per-exec timeout, reset and delete do kill the whole tree",
)
def test_background_kill_of_shell_command_ends_its_children(sb: Sandbox) -> None:
    dur = unique_sleep()
    h = sb.commands.run(f"sleep {dur}", background=True)
    # wait until the shell has forked the sleep
    assert wait_until(lambda: f"sleep {dur}" in sandbox_ps(sb).replace(f"-c sleep {dur}", ""))
    h.kill()
    assert h.wait(10).exit_code == 137
    assert sb.commands.list() == []
    left = wait_until(lambda: f"sleep {dur}" not in sandbox_ps(sb), timeout=2)
    assert left, f"the shell's child outlived kill(): {sandbox_ps(sb)}"


# --- capacity ----------------------------------------------------------------


def test_capacity_exceeded_then_freed(server) -> None:
    info = listing(server)
    cap, before = int(info["max_sandboxes"]), int(info["live"])
    made: list[Sandbox] = []
    try:
        for _ in range(cap - before):
            made.append(Sandbox.create())
        assert live(server) == cap
        with pytest.raises(airlock.CapacityExceeded) as ei:
            Sandbox.create()
        e = ei.value
        assert e.status == 429 and e.code == "over_capacity"
        assert "--max-sandboxes" in e.message and str(cap) in e.message
        assert live(server) == cap
        drop(made.pop())
        again = Sandbox.create()
        made.append(again)
        assert again.commands.run("echo ok").stdout == "ok\n"
    finally:
        for s in made:
            drop(s)
    assert live(server) == before


# --- reconnect, gone ---------------------------------------------------------


def test_connect_by_id_and_list(sb: Sandbox) -> None:
    m = mark()
    sb.files.write("shared.txt", m)
    other = Sandbox.connect(sb.id)
    try:
        assert other.id == sb.id
        assert other.files.read("shared.txt") == m
        assert other.commands.run("cat shared.txt").stdout == m
        other.files.write("back.txt", "from other")
        assert sb.files.read("back.txt") == "from other"
        info = other.get_info()
        assert info.running and info.id == sb.id
    finally:
        other.close()  # closes the connection only
    listed = {s.id: s for s in Sandbox.list()}
    assert sb.id in listed and listed[sb.id].state == "running"
    assert sb.commands.run("cat back.txt").stdout == "from other"


def test_killed_sandbox_is_gone(server) -> None:
    s = Sandbox.create()
    sid = s.id
    s.files.write("x.txt", "x")
    report = s.kill()
    assert report.get("sandbox") == sid
    try:
        with pytest.raises(airlock.SandboxNotFound):
            Sandbox.connect(sid)
        for op in (
            lambda: s.commands.run("true"),
            lambda: s.commands.run("true", on_stdout=print),
            lambda: s.commands.run("sleep 1", background=True),
            lambda: s.files.read("x.txt"),
            lambda: s.files.write("y.txt", "y"),
            lambda: s.files.list(),
            lambda: s.files.exists("x.txt"),
            lambda: s.reset(),
            lambda: s.kill(),
        ):
            with pytest.raises(airlock.SandboxNotFound) as ei:
                op()
            # gone is not a missing file
            assert not isinstance(ei.value, FileNotFoundError)
        assert not s.is_running()
        assert sid not in {x.id for x in Sandbox.list()}
    finally:
        s.close()


def test_ttl_sandbox_is_reported_gone_after_expiry(server) -> None:
    s = Sandbox.create(timeout=1)
    try:
        assert s.commands.run("echo alive").stdout == "alive\n"
        t0 = time.monotonic()

        def gone() -> airlock.SandboxNotFound | None:
            try:
                s.commands.run("true")
            except airlock.SandboxNotFound as e:
                return e
            return None

        e = wait_until(gone, timeout=8, interval=0.1)
        assert e is not None, "a ttl=1 s sandbox still runs commands after 8 s"
        assert time.monotonic() - t0 < 8
        assert isinstance(e, airlock.SandboxNotFound)
        with pytest.raises(airlock.SandboxNotFound):
            Sandbox.connect(s.id)
        with pytest.raises(airlock.SandboxNotFound):
            s.files.read(".env")
        with pytest.raises(airlock.SandboxNotFound):
            s.files.write("late.txt", "x")
        assert not s.is_running()
        info = s.get_info()
        assert (info.state, info.closed_reason) == ("closed", "ttl")
    finally:
        drop(s)
    assert s.id not in {x.id for x in Sandbox.list()}


# --- nothing survives the context manager ------------------------------------


def test_context_manager_deletes_sandbox_and_processes(server) -> None:
    before = live(server)
    dur = unique_sleep()
    with Sandbox.create() as s:
        sid = s.id
        s.commands.run(f"sleep {dur}; echo never", background=True)
        assert wait_until(lambda: host_pids_with(dur)), "the marker process is not visible in /proc"
        assert live(server) == before + 1
    with pytest.raises(airlock.SandboxNotFound):
        Sandbox.connect(sid)
    assert live(server) == before
    left = wait_until(lambda: not host_pids_with(dur)) or host_pids_with(dur)
    assert left is True, f"processes outlived the sandbox: {left}"


def test_context_manager_deletes_when_body_raises(server) -> None:
    before = live(server)
    dur = unique_sleep()
    sid = None

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with Sandbox.create() as s:
            sid = s.id
            s.commands.run(["sh", "-c", f"sleep {dur}; echo never"], background=True)
            assert wait_until(lambda: host_pids_with(dur))
            raise Boom()
    assert sid is not None
    with pytest.raises(airlock.SandboxNotFound):
        Sandbox.connect(sid)
    assert live(server) == before
    left = wait_until(lambda: not host_pids_with(dur)) or host_pids_with(dur)
    assert left is True, f"processes outlived the sandbox: {left}"


def test_context_manager_after_explicit_kill(server) -> None:
    before = live(server)
    with Sandbox.create() as s:
        s.kill()  # the exit's delete finds it gone: no error
    assert live(server) == before


# --- reset and checkpoints ---------------------------------------------------


def test_reset_drops_files_and_processes(sb: Sandbox) -> None:
    initial = sorted(e.name for e in sb.files.list())
    env_before = sb.files.read(".env")
    sb.files.write("new.txt", "new")
    sb.files.write("/tmp/t.txt", "t")
    sb.files.make_dir("made/dir")
    sb.commands.run("echo x > /home/sandbox/home-file")
    h = sb.commands.run("sleep 1000", background=True)
    assert h.is_running()
    ms = sb.reset()
    assert ms >= 0
    for p in ("new.txt", "/tmp/t.txt", "made", "/home/sandbox/home-file"):
        assert not sb.files.exists(p), p
    assert sorted(e.name for e in sb.files.list()) == initial
    assert sb.files.read(".env") == env_before
    assert sb.commands.list() == []
    assert "sleep 1000" not in sandbox_ps(sb)
    assert sb.commands.run("echo after").stdout == "after\n"


def test_checkpoint_and_reset_to_it(sb: Sandbox) -> None:
    name = mark("cp")
    sb.files.write("keep.txt", "v1")
    sb.files.write("/tmp/keep2.txt", "v1-tmp")
    sb.checkpoint(name)
    sb.files.write("keep.txt", "v2")
    sb.files.remove("/tmp/keep2.txt")
    sb.files.write("later.txt", "later")
    sb.reset(checkpoint=name)
    assert sb.files.read("keep.txt") == "v1"
    assert sb.files.read("/tmp/keep2.txt") == "v1-tmp"
    assert not sb.files.exists("later.txt")
    # the checkpoint can be used again
    sb.files.write("keep.txt", "v3")
    sb.reset(checkpoint=name)
    assert sb.commands.run("cat keep.txt").stdout == "v1"
    # a plain reset goes back to create, before the checkpoint
    sb.reset()
    assert not sb.files.exists("keep.txt")
    with pytest.raises(airlock.SandboxError) as ei:
        sb.reset(checkpoint=mark("nope"))
    assert ei.value.status == 404 and ei.value.reason == "no_checkpoint"


# --- audit -------------------------------------------------------------------


def test_audit_records_execs(server, sb: Sandbox) -> None:
    m = mark()
    sb.commands.run(f"echo {m}-shell")
    sb.commands.run(["echo", f"{m}-argv"])
    sb.commands.run(f"exit 7 # {m}-fail")
    wants = {
        f"{m}-shell": ["/bin/sh", "-c", f"echo {m}-shell"],
        f"{m}-argv": ["echo", f"{m}-argv"],
        f"{m}-fail": ["/bin/sh", "-c", f"exit 7 # {m}-fail"],
    }

    def complete() -> list[dict[str, Any]] | None:
        ev = sb.audit()
        started = {
            e["data"]["id"]: e["data"]["argv"] for e in ev if e["kind"] == "exec.started"
        }
        ended = {e["data"]["id"] for e in ev if e["kind"] == "exec.ended"}
        ids = [i for i, argv in started.items() if argv in wants.values()]
        return ev if len(ids) == 3 and all(i in ended for i in ids) else None

    # the exec.ended line can land a few ms after the exec's answer
    events = wait_until(complete, timeout=5)
    assert events, f"the audit log lacks the execs: {sb.audit()}"
    assert events[0]["kind"] == "sandbox.created"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for prev, cur in zip(events, events[1:]):
        assert cur["prev"] == prev["hash"]
        assert cur["sandbox"] == sb.id
    started = {
        e["data"]["id"]: e["data"] for e in events if e["kind"] == "exec.started"
    }
    ended = {e["data"]["id"]: e["data"] for e in events if e["kind"] == "exec.ended"}
    by_text = {}
    for i, d in started.items():
        for text, argv in wants.items():
            if d["argv"] == argv:
                by_text[text] = i
    assert ended[by_text[f"{m}-shell"]]["exit_code"] == 0
    assert ended[by_text[f"{m}-fail"]]["exit_code"] == 7
    # the processes the shell ran are there too
    assert any(
        e["kind"] == "process.exec" and e["data"]["argv"] == ["echo", f"{m}-argv"]
        for e in events
    )
    # and the log is the file in the server's --audit-dir
    path = Path(server.audit_dir) / f"{sb.id}.jsonl"
    assert sb.get_info().audit == str(path)
    assert f"{m}-argv" in path.read_text()


# --- async client --------------------------------------------------------------


async def test_async_core_flows(server) -> None:
    m = mark()
    before = live(server)
    async with await AsyncSandbox.create(env={"AV": m}) as s:
        sid = s.id
        assert live(server) == before + 1
        r = await s.commands.run("echo $AV; echo e >&2; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, f"{m}\n", "e\n")
        assert (await s.commands.run(["echo", "$AV"])).stdout == "$AV\n"
        # state across commands
        await s.commands.run(f"echo {m} > st.txt")
        assert (await s.commands.run("cat st.txt")).stdout == f"{m}\n"
        # files
        data = bytes(range(256)) * 4
        info = await s.files.write("bin/all.bin", data)
        assert info.path == "/workspace/bin/all.bin" and info.size == len(data)
        assert await s.files.read("bin/all.bin", "bytes") == data
        r = await s.commands.run(["sha256sum", "bin/all.bin"])
        assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        await s.files.write("t.txt", "ünïcode ✓")
        assert await s.files.read("t.txt") == "ünïcode ✓"
        assert [e.name for e in await s.files.list("bin")] == ["all.bin"]
        assert await s.files.exists("t.txt")
        await s.files.remove("t.txt")
        assert not await s.files.exists("t.txt")
        assert (await s.files.make_dir("d/e")).is_dir
        with pytest.raises(airlock.FileNotFound):
            await s.files.read("nope.txt")
        # streaming
        chunks: list[str] = []
        r = await s.commands.run(
            "for i in 1 2 3; do echo s$i; sleep 0.1; done", on_stdout=chunks.append
        )
        assert "".join(chunks) == r.stdout == "s1\ns2\ns3\n"
        assert len(chunks) >= 2
        # connect from the async side
        other = await AsyncSandbox.connect(sid)
        assert (await other.files.read("st.txt")) == f"{m}\n"
        await other.close()
        assert sid in {x.id for x in await AsyncSandbox.list()}
    with pytest.raises(airlock.SandboxNotFound):
        await AsyncSandbox.connect(sid)
    with pytest.raises(airlock.SandboxNotFound):
        Sandbox.connect(sid)
    assert live(server) == before


async def test_async_timeout(asb: AsyncSandbox) -> None:
    t0 = time.monotonic()
    with pytest.raises(airlock.CommandTimeout) as ei:
        await asb.commands.run("echo part; sleep 30", timeout=1)
    assert time.monotonic() - t0 < 5
    assert isinstance(ei.value, TimeoutError)
    assert ei.value.result.stdout == "part\n"
    assert (await asb.commands.run("echo next")).stdout == "next\n"
    ps = (await asb.commands.run(["ps", "-eo", "args"])).stdout
    assert "sleep 30" not in ps


async def test_async_background(asb: AsyncSandbox) -> None:
    h = await asb.commands.run("cat", background=True)
    assert isinstance(h, airlock.AsyncCommandHandle)
    assert await h.is_running()
    await h.send_stdin("abc\n")
    await h.close_stdin()
    r = await h.wait(10)
    assert (r.exit_code, r.stdout) == (0, "abc\n")
    h2 = await asb.commands.run("sleep 1000", background=True)
    assert h2.pid in await asb.commands.list()
    await h2.kill()
    assert (await h2.wait(10)).exit_code == 137


async def test_async_gather_runs_concurrently(asb: AsyncSandbox) -> None:
    """Each command waits until all of them have started: they can only
    all finish if the server ran them at the same time."""
    n = 4
    tag = mark("g")
    await asb.files.make_dir(f"/tmp/{tag}")
    cmd = (
        "touch /tmp/{tag}/{i}; k=0; "
        "while [ $(ls /tmp/{tag} | wc -l) -lt {n} ]; do "
        "k=$((k+1)); [ $k -gt 100 ] && exit 9; sleep 0.05; done; echo done-{i}"
    )
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(asb.commands.run(cmd.format(tag=tag, i=i, n=n), timeout=20) for i in range(n)),
        asb.files.write(f"/tmp/{tag}-side.txt", "side"),
    )
    elapsed = time.monotonic() - t0
    for i, r in enumerate(results[:n]):
        assert (r.exit_code, r.stdout) == (0, f"done-{i}\n"), r
    assert elapsed < 4.5, elapsed
    assert await asb.files.read(f"/tmp/{tag}-side.txt") == "side"


async def test_async_context_manager_deletes_when_body_raises(server) -> None:
    before = live(server)
    dur = unique_sleep()
    sid = None
    with pytest.raises(KeyError):
        async with await AsyncSandbox.create() as s:
            sid = s.id
            await s.commands.run(f"sleep {dur}; echo never", background=True)
            assert wait_until(lambda: host_pids_with(dur))
            raise KeyError("boom")
    assert sid is not None
    with pytest.raises(airlock.SandboxNotFound):
        await AsyncSandbox.connect(sid)
    assert live(server) == before
    left = wait_until(lambda: not host_pids_with(dur)) or host_pids_with(dur)
    assert left is True, f"processes outlived the sandbox: {left}"


# --- errors ------------------------------------------------------------------


def test_missing_server_raises_server_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_URL", "unix:///nonexistent/x.sock")
    for op in (Sandbox.create, Sandbox.list, lambda: Sandbox.connect("sbx-nope")):
        with pytest.raises(airlock.ServerUnavailable) as ei:
            op()
        assert "/nonexistent/x.sock" in str(ei.value)
        assert isinstance(ei.value, ConnectionError)
        assert ei.value.status is None


async def test_missing_server_async(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_URL", "unix:///nonexistent/x.sock")
    with pytest.raises(airlock.ServerUnavailable) as ei:
        await AsyncSandbox.create()
    assert "/nonexistent/x.sock" in str(ei.value)


def test_bad_airlock_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_URL", "ftp://example")
    with pytest.raises(airlock.InvalidRequest):
        Sandbox.create()
    monkeypatch.setenv("AIRLOCK_URL", "unix://relative.sock")
    with pytest.raises(airlock.InvalidRequest):
        Sandbox.create()


def test_unknown_profile(server) -> None:
    before = live(server)
    name = mark("no-such-profile-")
    with pytest.raises(airlock.InvalidProfile) as ei:
        Sandbox.create(profile=name)
    e = ei.value
    assert isinstance(e, airlock.InvalidRequest) and isinstance(e, ValueError)
    assert e.status == 400 and e.code == "invalid_profile"
    assert name in e.message
    with pytest.raises(airlock.InvalidProfile) as ei:
        Sandbox.create(profile={"extends": "default", "limits": {"memory": "12Q"}})
    assert "limits.memory" in ei.value.message
    assert live(server) == before


def test_file_errors(sb: Sandbox) -> None:
    missing = f"{mark('missing-')}.txt"
    with pytest.raises(airlock.FileNotFound) as ei:
        sb.files.read(missing)
    assert isinstance(ei.value, FileNotFoundError)
    assert ei.value.errno == errno.ENOENT and missing in str(ei.value)
    with pytest.raises(FileNotFoundError):
        sb.files.get_info(missing)
    with pytest.raises(FileNotFoundError):
        sb.files.list(missing)

    sb.files.make_dir("adir")
    with pytest.raises(IsADirectoryError) as ei2:
        sb.files.read("adir")
    assert isinstance(ei2.value, airlock.IsADirectory)
    with pytest.raises(IsADirectoryError):
        sb.files.write("adir", "x")
    sb.files.write("afile", "x")
    with pytest.raises(NotADirectoryError):
        sb.files.list("afile")

    with pytest.raises(PermissionError) as ei3:
        sb.files.write("/etc/x", "nope")
    assert isinstance(ei3.value, airlock.PathForbidden)
    assert ei3.value.reason == "outside" and "/etc/x" in str(ei3.value)
    assert sb.commands.run("test -e /etc/x").exit_code != 0
    with pytest.raises(PermissionError):
        sb.files.read("/etc/passwd")

    with pytest.raises(ValueError):
        sb.files.read("../escape")
    with pytest.raises(airlock.InvalidRequest):
        sb.files.read("")


# --- TCP and tokens ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_server(server) -> Iterator[tuple[str, str]]:
    """A second ``airlock serve`` with ``--listen`` and a token file."""
    tmp = Path(tempfile.mkdtemp(prefix="airlock-tcp-", dir="/tmp"))
    token = secrets.token_hex(20)
    tok = tmp / "token"
    tok.write_text(token + "\n")
    tok.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen(
        [
            server.bin,
            "serve",
            "--socket",
            str(tmp / "tcp.sock"),
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(tok),
            "--max-sandboxes",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"airlock serve --listen exited: {(tmp / 'serve.log').read_text()}")
            try:
                r = httpx.get(f"{url}/healthz", headers={"authorization": f"Bearer {token}"})
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("airlock serve --listen did not come up")
            time.sleep(0.05)
        yield url, token
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_tcp_wrong_token_then_right_token(
    tcp_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = tcp_server
    monkeypatch.setenv("AIRLOCK_URL", url)
    monkeypatch.setenv("AIRLOCK_TOKEN", "wrong-" + secrets.token_hex(12))
    with pytest.raises(airlock.AuthError) as ei:
        Sandbox.create()
    assert ei.value.status == 401 and isinstance(ei.value, PermissionError)
    with pytest.raises(airlock.AuthError):
        Sandbox.list()
    monkeypatch.delenv("AIRLOCK_TOKEN")
    with pytest.raises(airlock.AuthError):
        Sandbox.create()
    with pytest.raises(airlock.AuthError):
        Sandbox.list(url=url, token="also-wrong-" + secrets.token_hex(8))

    # the right one through AIRLOCK_TOKEN, over http://
    monkeypatch.setenv("AIRLOCK_TOKEN", token)
    with Sandbox.create() as s:
        sid = s.id
        assert s.commands.run("echo over-tcp").stdout == "over-tcp\n"
        s.files.write("t.bin", bytes(range(256)))
        assert s.files.read("t.bin", "bytes") == bytes(range(256))
        assert sid in {x.id for x in Sandbox.list()}
        # a stale handle with the wrong token is refused, not "not found"
        with pytest.raises(airlock.AuthError):
            Sandbox.connect(sid, token="nope-" + secrets.token_hex(8))
        again = Sandbox.connect(sid, url=url, token=token)
        assert again.id == sid
        again.close()
    with pytest.raises(airlock.SandboxNotFound):
        Sandbox.connect(sid)
    assert Sandbox.list() == []


async def test_tcp_async_right_token(tcp_server: tuple[str, str]) -> None:
    url, token = tcp_server
    async with await AsyncSandbox.create(url=url, token=token) as s:
        assert (await s.commands.run("echo async-tcp")).stdout == "async-tcp\n"
    with pytest.raises(airlock.AuthError):
        await AsyncSandbox.create(url=url, token="bad-" + secrets.token_hex(8))
