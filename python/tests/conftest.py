"""A real ``airlock serve`` for the tests: started once per session on a
socket in a temporary directory, with an audit directory, and stopped (with
a check that it leaves no sandbox behind) at the end.

The binary is ``$AIRLOCK_BIN``, else ``target/release/airlock`` or
``target/debug/airlock`` of this repository, else ``airlock`` on PATH.

With ``AIRLOCK_TEST_SERVER_UID=65534`` (and the tests run as root) the
server runs rootless, through ``setpriv`` as that uid, in a directory it
owns; the binary must then be one that uid can execute.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def airlock_bin() -> str:
    env = os.environ.get("AIRLOCK_BIN")
    if env:
        return env
    for p in (REPO / "target/release/airlock", REPO / "target/debug/airlock"):
        if p.is_file():
            return str(p)
    found = shutil.which("airlock")
    if not found:
        pytest.exit("no airlock binary: build it (cargo build --release) or set AIRLOCK_BIN", 2)
    return found


class Server:
    def __init__(self, tmp: Path, max_sandboxes: int) -> None:
        self.dir = tmp
        self.socket = tmp / "serve.sock"
        self.audit_dir = tmp / "audit"
        self.audit_dir.mkdir()
        self.log = open(tmp / "serve.log", "wb")
        self.bin = airlock_bin()
        prefix: list[str] = []
        # The public half of the key the server signs its audit logs with
        # (airlock's default key of the server's user).
        if os.geteuid() == 0:
            self.audit_key = Path("/var/lib/airlock/audit.key.pub")
        else:
            state = os.environ.get("XDG_STATE_HOME", "")
            state_dir = Path(state) if state.startswith("/") else Path.home() / ".local/state"
            self.audit_key = state_dir / "airlock/audit.key.pub"
        uid = os.environ.get("AIRLOCK_TEST_SERVER_UID")
        if uid and os.geteuid() == 0:
            for p in (tmp, self.audit_dir):
                os.chown(p, int(uid), int(uid))
            os.chmod(tmp, 0o700)
            prefix = [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "env",
                "-u",
                "XDG_STATE_HOME",
                f"HOME={tmp}",
            ]
            self.audit_key = tmp / ".local/state/airlock/audit.key.pub"
        self.proc = subprocess.Popen(
            prefix
            + [
                self.bin,
                "serve",
                "--socket",
                str(self.socket),
                "--audit-dir",
                str(self.audit_dir),
                "--max-sandboxes",
                str(max_sandboxes),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"},
        )
        self.url = f"unix://{self.socket}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airlock serve exited: {self.log_text()}")
            if self.socket.exists():
                try:
                    if self.http().get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"airlock serve did not come up: {self.log_text()}")

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url="http://airlock", transport=httpx.HTTPTransport(uds=str(self.socket))
        )

    def live(self) -> int:
        return int(self.http().get("/healthz").json()["live"])

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "serve.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    tmp = Path(tempfile.mkdtemp(prefix="airlock-pytest-"))
    srv = Server(tmp, max_sandboxes=int(os.environ.get("AIRLOCK_TEST_MAX_SANDBOXES", "4")))
    old = os.environ.get("AIRLOCK_URL")
    os.environ["AIRLOCK_URL"] = srv.url
    try:
        yield srv
        left = srv.live()
        assert left == 0, f"{left} sandboxes still live at the end of the session"
    finally:
        srv.stop()
        if old is None:
            os.environ.pop("AIRLOCK_URL", None)
        else:
            os.environ["AIRLOCK_URL"] = old
        shutil.rmtree(tmp, ignore_errors=True)
