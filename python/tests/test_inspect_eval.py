"""``inspect eval`` of the small task in python/examples, with
``sandbox="airlock"``, Inspect's own ``bash()``, ``bash_session()`` and
``text_editor()`` tools, ``exec_remote`` in the scorer,
and the scripted ``mockllm/model``, against the real ``airlock serve``.

It checks that the commands ran in airlock (the sandbox's audit log has
their execs, and verifies), that the file the sample's setup wrote is seen
by the scorer, and that the sample's sandbox is gone afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import airlock
from inspect_ai.log import read_eval_log

from conftest import REPO

# Inspect takes a task file relative to its working directory.
TASK = "examples/inspect_task.py"


def events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if "kind" in e:
            out.append(e)
    return out


def test_inspect_eval_runs_in_airlock(server, tmp_path: Path) -> None:
    before = set(os.listdir(server.audit_dir))
    inspect = Path(sys.executable).with_name("inspect")
    env = dict(os.environ, AIRLOCK_URL=server.url, INSPECT_LOG_LEVEL="warning")
    proc = subprocess.run(
        [str(inspect), "eval", TASK, "--log-dir", str(tmp_path / "logs"), "--display", "plain"],
        cwd=REPO / "python",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"inspect eval failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    logs = glob.glob(str(tmp_path / "logs" / "*.eval"))
    assert len(logs) == 1, logs
    log = read_eval_log(logs[0])
    assert log.status == "success", log.error
    assert log.samples and len(log.samples) == 1
    sample = log.samples[0]
    assert sample.error is None, sample.error
    # The scorer saw what setup, the sample's files and both tools left.
    score = sample.scores["sandbox_state"]
    assert score.value == "C", score.explanation
    tool_out = [m.text for m in sample.messages if m.role == "tool"]
    assert any("setup ran" in t and "sandbox" in t for t in tool_out), tool_out
    assert any("42" in t for t in tool_out), tool_out

    # The sample's sandbox: its audit log (the task_init check makes one too).
    new = sorted(set(os.listdir(server.audit_dir)) - before)
    samples = [n for n in new if n.startswith("inspect-") and not n.startswith("inspect-check-")]
    assert len(samples) == 1, new
    audit = server.audit_dir / samples[0]
    sandbox_id = audit.name.removesuffix(".jsonl")
    ev = events(audit)
    argvs = [" ".join(e["data"]["argv"]) for e in ev if e["kind"] == "exec.started"]
    # Inspect's bash() tool ran its command in this sandbox ...
    assert any("echo agent-was-here >> notes.txt" in a for a in argvs), argvs
    # ... bash_session() started Inspect's injected helper here ...
    assert any("inspect-sandbox-tools" in a for a in argvs), argvs
    # ... and the scorer read the files through the files API.
    reads = [e["data"]["path"] for e in ev if e["kind"] == "file.read"]
    assert "/workspace/setup.txt" in reads and "/workspace/answer.txt" in reads, reads
    assert ev[-1]["kind"] == "sandbox.ended", ev[-1]
    # Signed with the server's own key.
    verify = subprocess.run(
        [server.bin, "audit", "verify", "--key", str(server.audit_key), str(audit)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The sample's sandbox is destroyed, and nothing is left live.
    with pytest.raises(airlock.SandboxNotFound):
        airlock.Sandbox.connect(sandbox_id)
    assert server.live() == 0
