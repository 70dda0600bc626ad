"""Drives `airlock mcp` with the official MCP Python SDK's stdio client.

Run by crates/airlock/tests/mcp/main.rs, once as root and once rootless:

    python client.py --mode root --work DIR -- AIRLOCK_COMMAND...

AIRLOCK_COMMAND is how to start the airlock binary (possibly behind
setpriv); this script adds `mcp ...`. DIR is a directory the server may
write (audit logs, its stderr). Every check prints a line; the first failed
assertion ends the script with a non-zero status and its message.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

TOOLS = {"run_code", "exec", "read_file", "write_file", "list_files", "reset"}


def log(msg):
    print(f"[{ARGS.mode}] {msg}", flush=True)


def check(cond, msg, *context):
    if not cond:
        details = "\n".join(
            json.dumps(c, indent=1, default=str) if not isinstance(c, str) else c for c in context
        )
        raise AssertionError(f"{msg}\n{details}")


def structured(res):
    check(res.structured_content is not None, "a result without structured content", str(res))
    return res.structured_content


def text(res):
    check(res.content and res.content[0].type == "text", "a result without text content", str(res))
    return res.content[0].text


def ok(res, what):
    check(not res.is_error, f"{what}: isError", text(res), res.structured_content)
    return structured(res)


def failed(res, what):
    check(res.is_error is True, f"{what}: expected isError true", text(res), res.structured_content)
    return structured(res)["error"]


# --- processes -------------------------------------------------------------


def proc_stat(pid):
    """(ppid, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has ended
        return None
    return int(fields[1]), int(fields[19])


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st:
                out[int(d)] = st
    return out


def server_pid():
    """The `airlock mcp` child of this script."""
    me = os.getpid()
    for pid, (ppid, _) in all_procs().items():
        if ppid != me:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mcp" in argv:
            return pid
    raise AssertionError("no airlock mcp process among this script's children")


def descendants(root):
    """{pid: starttime} of every live descendant of `root`."""
    procs = all_procs()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def still_alive(procs):
    return {p: s for p, s in procs.items() if (proc_stat(p) or (None, None))[1] == s}


def wait_gone(procs, what, limit=10.0):
    until = time.monotonic() + limit
    while still_alive(procs) and time.monotonic() < until:
        time.sleep(0.05)
    check(not still_alive(procs), f"{what}: processes left behind", still_alive(procs))


# --- audit -----------------------------------------------------------------


def audit_lines(audit_dir):
    logs = sorted(Path(audit_dir).glob("*.jsonl"))
    check(len(logs) == 1, f"one audit log in {audit_dir}", [str(p) for p in logs])
    return [json.loads(l) for l in logs[0].read_text().splitlines() if l.strip()]


def check_closed(audit_dir, reason, what):
    """The log ends with the sandbox's end and the signed head (written at
    close), and the sandbox's cgroup is gone."""
    until = time.monotonic() + 10
    while True:
        lines = audit_lines(audit_dir)
        events = [l for l in lines if "kind" in l]
        if lines and "head" in lines[-1] and events and events[-1]["kind"] == "sandbox.ended":
            break
        check(time.monotonic() < until, f"{what}: the log does not end with sandbox.ended and its head", lines[-3:])
        time.sleep(0.05)
    ended = events[-1]["data"]
    check(ended["reason"] == reason, f"{what}: ended because {reason}", ended)
    check(ended.get("error") is None, f"{what}: closed with an error", ended)
    started = [e for e in events if e["kind"] == "sandbox.started"]
    check(len(started) == 1, f"{what}: one sandbox.started", started)
    return events


def cgroups_of(pid):
    """Sandbox cgroups a server with this pid made, under every hierarchy
    (named airlock-PID-...; see the jail's cgroup module)."""
    bases = [Path("/sys/fs/cgroup/airlock")]
    try:
        bases += [p / "airlock" for p in Path("/sys/fs/cgroup").iterdir()]
    except OSError:
        pass
    out = []
    for b in bases:
        try:
            out += [str(e) for e in b.iterdir() if e.name.startswith(f"airlock-{pid}-")]
        except OSError:
            pass
    return out


def wait_no_cgroups(pid, what):
    until = time.monotonic() + 10
    while cgroups_of(pid) and time.monotonic() < until:
        time.sleep(0.05)
    check(not cgroups_of(pid), f"{what}: sandbox cgroups left behind", cgroups_of(pid))


# --- sessions --------------------------------------------------------------


def server(args, name):
    errlog = open(Path(ARGS.work) / f"{name}.stderr", "w")
    params = StdioServerParameters(
        command=ARGS.airlock[0],
        args=ARGS.airlock[1:] + ["mcp", "--log", "info"] + args,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    return stdio_client(params, errlog=errlog), errlog


def audit_dir(name):
    d = Path(ARGS.work) / name
    d.mkdir()
    if ARGS.owner is not None:
        os.chown(d, ARGS.owner, ARGS.owner)
    return str(d)


async def main_session():
    """Every tool under the default profile, then stdin EOF."""
    adir = audit_dir("audit-main")
    client, errlog = server(["--audit-dir", adir], "main")
    async with client as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            tools = (await s.list_tools()).tools
            names = {t.name for t in tools}
            check(names == TOOLS, "the six tools", sorted(names))
            for t in tools:
                check(t.input_schema.get("type") == "object", f"{t.name}: an object input schema", t.input_schema)
                check(t.description, f"{t.name}: a description")
            rc = next(t for t in tools if t.name == "run_code").input_schema
            check(set(rc["required"]) == {"language", "code"}, "run_code requires language and code", rc)
            check({"python", "bash", "sh"} <= set(json.dumps(rc["$defs"]).replace('"', " ").split()),
                  "run_code's languages in its schema", rc)
            ex = next(t for t in tools if t.name == "exec").input_schema
            check(ex["required"] == ["cmd"] and {"cwd", "timeout"} <= set(ex["properties"]), "exec's schema", ex)
            log("tools listed: six, each with an input schema")

            # No sandbox until a tool needs one.
            pid = server_pid()
            check(not descendants(pid), "a sandbox before any tool call", descendants(pid))
            res = await s.call_tool("reset", {})
            check(ok(res, "reset before any call")["reset"] is False, "reset without a sandbox", res.structured_content)
            check(not descendants(pid), "reset made a sandbox")

            res = await s.call_tool("run_code", {"language": "python", "code": "print(sum(i * i for i in range(10)))"})
            sc = ok(res, "run_code python")
            check(sc["exit_code"] == 0 and sc["stdout"] == "285\n", "python's computed value", sc)
            check("285" in text(res) and "exit code 0" in text(res), "the value in the text", text(res))
            sandbox_procs = descendants(pid)
            check(sandbox_procs, "no sandbox processes under the server after a call")
            log(f"run_code python: 285 (sandbox {sc['sandbox']}, {len(sandbox_procs)} processes under the server)")

            res = await s.call_tool("run_code", {"language": "bash", "code": "x=6; echo $((x * 7)); echo warn >&2"})
            sc = ok(res, "run_code bash")
            check((sc["stdout"], sc["stderr"]) == ("42\n", "warn\n"), "bash's output", sc)
            res = await s.call_tool("run_code", {"language": "sh", "code": "exit 9"})
            check(ok(res, "run_code sh")["exit_code"] == 9, "sh's exit code", res.structured_content)
            log("run_code bash and sh")

            res = await s.call_tool("exec", {"cmd": ["sh", "-c", "echo out; echo 'it failed' >&2; exit 3"]})
            sc = ok(res, "exec failing (a command's failure is a result)")
            check(sc["exit_code"] == 3 and sc["stderr"] == "it failed\n" and sc["stdout"] == "out\n", "exec's failure", sc)
            check(sc["reason"] == {"kind": "exit", "code": 3}, "exit reason", sc)
            check("exit code 3" in text(res) and "it failed" in text(res), "failure in the text", text(res))
            res = await s.call_tool("exec", {"cmd": "ls /no/such/dir"})
            sc = ok(res, "exec string")
            check(sc["exit_code"] != 0 and "No such file" in sc["stderr"], "ls's stderr", sc)
            check(sc["network"]["note"] is None, "a network note for a failure that is not one", sc)
            res = await s.call_tool("exec", {"cmd": ["no-such-command-xyz"]})
            check(ok(res, "exec not found")["exit_code"] == 127, "127 for not found", res.structured_content)
            res = await s.call_tool("exec", {"cmd": "pwd", "cwd": "/tmp"})
            check(ok(res, "exec cwd")["stdout"] == "/tmp\n", "cwd", res.structured_content)
            log("exec: exit codes, stderr, 127, cwd")

            res = await s.call_tool("exec", {"cmd": ["sleep", "30"], "timeout": 0.5})
            sc = ok(res, "exec timeout")
            check(sc["exit_code"] == 124 and sc["timed_out"] is True and "timeout" in sc["limits_hit"],
                  "a timeout is visible", sc)
            check("limit hit: timeout" in text(res), "the timeout in the text", text(res))
            check(sc["wall_ms"] < 10_000, "the timeout was enforced", sc)
            log(f"exec timeout: 124 after {sc['wall_ms']} ms, limits_hit {sc['limits_hit']}")

            content = "hello, sandbox\nünïcode ✓\n"
            res = await s.call_tool("write_file", {"path": "notes/a.txt", "content": content})
            sc = ok(res, "write_file")
            check(sc["size"] == len(content.encode()), "written size", sc)
            res = await s.call_tool("read_file", {"path": "notes/a.txt"})
            check(ok(res, "read_file")["content"] == content and text(res) == content, "read back", res.structured_content)
            res = await s.call_tool("list_files", {"path": "notes"})
            entries = ok(res, "list_files")["entries"]
            check([(e["name"], e["kind"], e["size"]) for e in entries] == [("a.txt", "file", len(content.encode()))],
                  "the listing", entries)
            check("a.txt" in text(res), "the listing's text", text(res))
            res = await s.call_tool("list_files", {})
            check(any(e["name"] == "notes" and e["kind"] == "dir" for e in ok(res, "list_files")["entries"]),
                  "the workspace listing", res.structured_content)
            res = await s.call_tool("exec", {"cmd": "cat notes/a.txt"})
            check(ok(res, "exec cat")["stdout"] == content, "the sandbox sees the file", res.structured_content)
            res = await s.call_tool("run_code", {"language": "python", "code": "open('/tmp/made.txt','w').write('x')"})
            ok(res, "python writes a file")
            res = await s.call_tool("read_file", {"path": "/tmp/made.txt"})
            check(ok(res, "read_file /tmp")["content"] == "x", "a file the code made", res.structured_content)
            log("write_file, read_file, list_files round trip")

            err = failed(await s.call_tool("read_file", {"path": "/etc/passwd"}), "read outside")
            check(err["kind"] == "request" and "outside" in err["message"], "outside the writable places", err)
            err = failed(await s.call_tool("read_file", {"path": "../x"}), "read ..")
            check(err["kind"] == "request" and ".." in err["message"], "'..' refused", err)
            err = failed(await s.call_tool("exec", {"cmd": "true", "cwd": "/nonexistent"}), "exec bad cwd")
            check(err["code"] == "cannot_start", "a cwd that does not exist", err)
            err = failed(await s.call_tool("exec", {"cmd": []}), "exec empty")
            check(err["code"] == "bad_request" and "cmd" in err["message"], "an empty command", err)
            err = failed(await s.call_tool("exec", {"cmd": "true", "timeout": -1}), "exec bad timeout")
            check("timeout" in err["message"], "a negative timeout", err)
            log("refused requests are isError results with the message")

            res = await s.call_tool("reset", {})
            sc = ok(res, "reset")
            check(sc["reset"] is True and sc["sandbox"], "reset of the sandbox", sc)
            err = failed(await s.call_tool("read_file", {"path": "notes/a.txt"}), "read after reset")
            check("no such file" in err["message"], "reset removed the written file", err)
            err = failed(await s.call_tool("read_file", {"path": "/tmp/made.txt"}), "read /tmp after reset")
            check("no such file" in err["message"], "reset emptied /tmp", err)
            res = await s.call_tool("exec", {"cmd": "test -e notes || echo gone"})
            check(ok(res, "exec after reset")["stdout"] == "gone\n", "the sandbox agrees", res.structured_content)
            log("reset removed the written files")

            code = (
                "import socket\n"
                "try:\n"
                "    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
                "    print('CONNECTED')\n"
                "except OSError as e:\n"
                "    raise SystemExit(f'connect failed: {e}')\n"
            )
            res = await s.call_tool("run_code", {"language": "python", "code": code})
            sc = ok(res, "run_code connect")
            check(sc["exit_code"] != 0 and "CONNECTED" not in sc["stdout"], "a connection under the default profile", sc)
            check("Network is unreachable" in sc["stderr"], "the kernel's refusal in stderr", sc)
            check(sc["network"]["mode"] == "none" and sc["network"]["note"], "the network note", sc)
            check("has no network" in text(res), "the denial explained in the text", text(res))
            res = await s.call_tool("run_code", {"language": "python", "code": "import socket; socket.getaddrinfo('example.com', 80)"})
            sc = ok(res, "run_code lookup")
            check(sc["exit_code"] != 0 and "gaierror" in sc["stderr"], "a name lookup under the default profile", sc)
            check("has no network" in text(res), "the lookup's denial explained", text(res))
            log("network: connect and lookup fail, and the result says there is no network")

            sandbox_procs = descendants(pid)
            check(sandbox_procs, "sandbox processes before close")
            cgroups = cgroups_of(pid)
            check(cgroups or ARGS.mode == "rootless", "no sandbox cgroup as root", cgroups)
    # The client closed stdin and waited; the server closed the sandbox itself.
    errlog.close()
    err = (Path(ARGS.work) / "main.stderr").read_text()
    check('why="stdin closed"' in err and "sandbox closed" in err, "the server saw stdin end and closed", err)
    wait_gone(sandbox_procs, "after stdin EOF")
    wait_gone({pid: proc_stat(pid)[1]} if proc_stat(pid) else {}, "the server after stdin EOF")
    wait_no_cgroups(pid, "after stdin EOF")
    events = check_closed(adir, "closed", "after stdin EOF")
    kinds = {e["kind"] for e in events}
    check({"exec.started", "exec.ended", "file.write", "file.read", "sandbox.reset"} <= kinds, "audited calls", sorted(kinds))
    log(f"stdin EOF: sandbox closed, nothing left (cgroups were {cgroups}; {len(events)} audit events)")


async def allowlist_session():
    """An allowlist profile: a refused lookup and a mock appear as decisions."""
    profile = Path(ARGS.work) / "allow.toml"
    profile.write_text(
        'extends = "default"\nname = "mcp-allow"\n'
        '[network]\nmode = "allowlist"\nallow = ["allowed.example.test:443"]\non_deny = "deny"\n'
        '[[network.mock]]\nhost = "api.example.test"\nkind = "static"\n'
        'routes = [{ path = "/v1/ping", body = "pong" }]\n'
    )
    profile.chmod(0o644)
    client, errlog = server(["--profile", str(profile)], "allow")
    async with client as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            code = (
                "import socket, urllib.request\n"
                "print(urllib.request.urlopen('http://api.example.test/v1/ping', timeout=10).read().decode())\n"
                "try:\n"
                "    socket.getaddrinfo('denied.example.com', 443)\n"
                "    print('RESOLVED')\n"
                "except OSError as e:\n"
                "    raise SystemExit(f'lookup failed: {e}')\n"
            )
            res = await s.call_tool("run_code", {"language": "python", "code": code})
            sc = ok(res, "run_code under the allowlist")
            check(sc["stdout"].startswith("pong") and "RESOLVED" not in sc["stdout"], "mock answered, lookup refused", sc)
            check(sc["exit_code"] != 0, "the refused lookup failed the program", sc)
            net = sc["network"]
            # The decision may race the program's end; it is then in the next call's result.
            if not any(d.get("name") == "denied.example.com" for d in net["decisions"]):
                res2 = await s.call_tool("exec", {"cmd": "true"})
                net = ok(res2, "exec true")["network"]
                res = res2
            check(net["mode"] == "allowlist", "allowlist mode", net)
            denied = [d for d in net["decisions"] if d.get("name") == "denied.example.com"]
            check(denied and all(d["verdict"] == "deny" for d in denied) and denied[0]["reason"],
                  "the refused lookup with its reason", net)
            check(net["denied"] >= 1 and "egress denied" in text(res) and "denied.example.com" in text(res),
                  "the denial in the text", text(res))
            res = await s.call_tool("exec", {"cmd": "true"})
            check(ok(res, "exec true")["network"]["decisions"] == [], "decisions are reported once", res.structured_content)
            log(f"allowlist: denied.example.com refused ({denied[0]['reason']}); reported once")
    errlog.close()


async def sigterm_session():
    """SIGTERM to the server closes the sandbox, even with a command running."""
    adir = audit_dir("audit-term")
    client, errlog = server(["--audit-dir", adir], "term")
    async with client as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            ok(await s.call_tool("exec", {"cmd": "echo up"}), "exec")
            pid = server_pid()
            procs = descendants(pid)
            check(procs, "sandbox processes under the server")
            async with anyio.create_task_group() as tg:
                async def long_call():
                    try:
                        await s.call_tool("exec", {"cmd": ["sleep", "60"]}, read_timeout_seconds=20)
                    except Exception:  # the server went away mid-call
                        pass
                tg.start_soon(long_call)
                await anyio.sleep(0.5)
                during = descendants(pid)
                check(len(during) > len(procs), "the sleep is running", procs, during)
                os.kill(pid, signal.SIGTERM)
                await anyio.to_thread.run_sync(wait_gone, during, "after SIGTERM")
                tg.cancel_scope.cancel()
            check(proc_stat(pid) is None, "the server exited on SIGTERM")
    errlog.close()
    err = (Path(ARGS.work) / "term.stderr").read_text()
    check('why="SIGTERM"' in err and "sandbox closed" in err, "the server closed on SIGTERM", err)
    wait_no_cgroups(pid, "after SIGTERM")
    check_closed(adir, "closed", "after SIGTERM")
    log("SIGTERM: sandbox and running command gone, audit log closed")


async def main():
    t = time.monotonic()
    await main_session()
    await allowlist_session()
    await sigterm_session()
    log(f"all checks passed in {time.monotonic() - t:.1f}s")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--owner", type=int, default=None, help="chown audit dirs to this uid")
    p.add_argument("airlock", nargs="+")
    ARGS = p.parse_args()
    try:
        anyio.run(main)
    except BaseException as e:  # unwrap task groups to the failure itself
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        import traceback

        traceback.print_exception(e)
        print(f"[{ARGS.mode}] FAILED: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
