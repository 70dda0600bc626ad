"""A small Inspect AI task in an airlock sandbox, with a scripted model.

    AIRLOCK_URL=unix:///run/airlock/serve.sock inspect eval python/examples/inspect_task.py

The model is Inspect's built-in ``mockllm/model`` with scripted tool calls,
so no real model is needed: it calls Inspect's ``bash()`` tool, then
``bash_session()`` (which makes Inspect inject its sandbox-tools helper into
the sandbox and drive it through repeated execs), then ``text_editor()``,
then answers. The scorer also runs ``exec_remote``, awaited and streamed. The sample's
``files`` and ``setup`` run before it; the scorer reads what the commands
left in the sandbox.
"""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import TaskState, generate, use_tools
from inspect_ai.tool import bash, bash_session, text_editor
from inspect_ai.util import ExecCompleted, ExecStdout
from inspect_ai.util import sandbox

MODEL = "mockllm/model"


def _usage(out: ModelOutput) -> ModelOutput:
    # Given usage, mockllm does not count tokens with tiktoken (whose
    # encoding it would download).
    out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    return out


def scripted_model():
    outputs = [
            ModelOutput.for_tool_call(
                MODEL,
                "bash",
                {"command": "cat setup.txt notes.txt; echo agent-was-here >> notes.txt; id -un"},
            ),
            ModelOutput.for_tool_call(
                MODEL,
                "bash_session",
                {"action": "type_submit", "input": "echo $((6*7)) > answer.txt; cat answer.txt"},
            ),
            ModelOutput.for_tool_call(
                MODEL,
                "text_editor",
                {"command": "create", "path": "/workspace/edited.txt", "file_text": "made by the editor\n"},
            ),
            ModelOutput.from_content(MODEL, "done"),
    ]
    return get_model(MODEL, custom_outputs=[_usage(o) for o in outputs])


@scorer(metrics=[accuracy()])
def sandbox_state():
    async def score(state: TaskState, target: Target) -> Score:
        notes = await sandbox().read_file("notes.txt")
        setup = await sandbox().read_file("setup.txt")
        answer = await sandbox().read_file("answer.txt")
        # exec_remote, awaited and streamed (Inspect drives it through its
        # injected helper, polling with repeated execs).
        edited = await sandbox().exec_remote(["cat", "edited.txt"], stream=False)
        streamed, code = "", None
        async for ev in await sandbox().exec_remote(["sh", "-c", "echo one; echo two; exit 3"]):
            if isinstance(ev, ExecStdout):
                streamed += ev.data
            elif isinstance(ev, ExecCompleted):
                code = ev.exit_code
        ok = (
            "from the sample's files" in notes
            and "agent-was-here" in notes
            and setup.strip() == "setup ran"
            and answer.strip() == "42"
            and edited.success
            and edited.stdout == "made by the editor\n"
            and (streamed, code) == ("one\ntwo\n", 3)
        )
        return Score(
            value=CORRECT if ok else INCORRECT,
            explanation=f"notes={notes!r} setup={setup!r} answer={answer!r} "
            f"edited={edited!r} streamed={streamed!r} code={code!r}",
        )

    return score


@task
def airlock_smoke() -> Task:
    return Task(
        dataset=[
            Sample(
                input="Append a line to notes.txt, then compute 6*7 into answer.txt.",
                target="42",
                files={"notes.txt": "from the sample's files\n"},
                setup="echo 'setup ran' > setup.txt",
            )
        ],
        solver=[use_tools([bash(timeout=60), bash_session(), text_editor()]), generate()],
        scorer=sandbox_state(),
        sandbox="airlock",
        model=scripted_model(),
    )
