"""The Python examples of the READMEs run as written, against the real
server: README.md's "From Python" block and every block of
python/README.md that is a whole program (not the Inspect fragments, whose
``...`` stand for a user's own dataset and solver)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import airlock

REPO = Path(__file__).resolve().parents[2]


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _examples() -> list[tuple[str, str]]:
    out = [
        (f"README.md#From Python[{i}]", b)
        for i, b in enumerate(_blocks(_section((REPO / "README.md").read_text(), "From Python")))
    ]
    for i, b in enumerate(_blocks((REPO / "python/README.md").read_text())):
        if "inspect_ai" not in b:
            out.append((f"python/README.md[{i}]", b))
    return out


EXAMPLES = _examples()


def test_the_readmes_have_examples() -> None:
    names = [n for n, _ in EXAMPLES]
    assert len(EXAMPLES) >= 4, names
    assert any(n.startswith("README.md") for n in names), names


@pytest.mark.parametrize("name,code", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_readme_example_runs(server, name: str, code: str) -> None:
    before = {s.id for s in airlock.Sandbox.list()}
    exec(compile(code, name, "exec"), {"__name__": "__readme__"})
    # Each example leaves no sandbox behind.
    assert {s.id for s in airlock.Sandbox.list() if s.running} <= before
