"""The executor: runs one task with a skill on a backend and records the whole trajectory.

Two modes:
- inline (small models): L1 + L2 go into the first message, before anything task-specific, so
  the skill is a prefix that every task's prompt shares and llama.cpp evaluates it once;
- tools (models that can follow a tool protocol): only L1 is shown; the model calls
  `activate_skill` (L2), `read_reference` (L3) and `run_python` through schema-constrained JSON
  turns, so even a small model cannot emit a malformed call.
Spreadsheet tasks have the model write an openpyxl script that runs in the sandbox, on a copy.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillgrad_tui.core.errors import BackendError, Cancelled, ModelCrashed, PromptTooLong
from skillgrad_tui.core.llm.base import Backend, CancelToken, Completion, CompletionRequest, Message, Usage
from skillgrad_tui.core.records import Task, Trajectory, Turn
from skillgrad_tui.core.skill import Skill

if TYPE_CHECKING:  # imported where used: a run without spreadsheet tasks never loads the sandbox
    from skillgrad_tui.core.sandbox import Sandbox, SandboxResult

NO_SKILL_HASH = "no-skill"
OUTPUT_NAME = "output.xlsx"
_FENCE_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)
_PREFIX_RE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:：]\s*|^(?:the\s+)?answer\s+is\s+",
                        re.IGNORECASE)
ANSWER_CUE = "Answer:"
# One made-up worked example, identical for every task (so it stays inside the shared prefix).
# Without it the 270M base model mostly echoes the table instead of answering.
FORMAT_EXAMPLE = ("Example of the expected reply format:\nTable (3 rows):\nrow | City | Population\n"
                  "1 | Oslo | 700,000\n2 | Bergen | 285,000\n3 | Trondheim | 210,000\n"
                  "Question: which city has the smallest population?\nAnswer: Trondheim")
_BULLET_RE = re.compile(r"^(?:[-*•]\s+|\d+[.)]\s+)")


@dataclass
class AgentSettings:
    mode: str = "inline"  # "inline" | "tools"
    max_tokens: int = 48  # answer budget for QA tasks: answers are short, small models ramble
    table_rows: int = 40
    code_max_tokens: int = 512  # spreadsheet tasks: the script the model writes
    max_turns: int = 4
    max_answer_items: int = 10
    context_chars: int = 6000  # budget for a non-table context file
    sandbox_timeout_s: float = 30.0
    reference_chars: int = 4000  # one page of an L3 file per read_reference call: big files never fill the prompt
    temperature: float = 0.0  # 0 is greedy; above 0 the optimiser repeats validation over seeds


def skill_block(skill: Skill | None) -> str:
    """L1 + L2 as the opening system text (identical for every task: the shared prefix)."""
    if skill is None:
        return "You are a careful assistant. Follow the user's instructions exactly."
    return (f"You are a careful assistant. Use this skill.\n\n"
            f"# Skill: {skill.name}\n{skill.description.strip()}\n\n{skill.body.strip()}")


def skill_card(skill: Skill | None) -> str:
    """L1 only: what a tool-using agent sees before it activates the skill."""
    if skill is None:
        return "No skill is available."
    listing = "\n".join(f"- {p}" for p in skill.l3_docs) or "- (none)"
    return f"Skill `{skill.name}`: {skill.description.strip()}\nReference files:\n{listing}{tools_note(skill)}"


def tools_note(skill: Skill | None) -> str:
    """The skill's scripts as tools: name and one-line usage, never their code."""
    if skill is None or not skill.tools:
        return ""
    lines = "\n".join(f"- {p}" + (f": {u}" if u else "") for p, u in skill.tools.items())
    return (f"\nScripts (copies are in the working folder; run one from Python with "
            f"run_script('scripts/x.py', 'arg', ...)):\n{lines}")


def reference_page(skill: Skill, arg: str, page_chars: int) -> str:
    """An L3 file for read_reference, one page at a time ("path" or "path#2")."""
    path, _, part = arg.strip().strip("`").partition("#")
    path = path.strip()
    if path not in skill.l3_docs:
        return f"No reference named {path!r}. Available: {', '.join(skill.l3_docs) or 'none'}"
    text = skill.files[path]
    pages = max(1, -(-len(text) // page_chars))
    n = int(part) if part.strip().isdigit() else 1
    n = min(max(n, 1), pages)
    chunk = text[(n - 1) * page_chars: n * page_chars]
    return chunk if pages == 1 else f"{chunk}\n[part {n} of {pages}; read_reference {path}#{n + 1} for more]"


def parse_answer(text: str, max_items: int = 10) -> list[str]:
    """A model reply -> answer items: one per line, bullets and 'Answer:' prefixes removed.

    Stops at the first blank line after an answer began, because small models ramble on.
    """
    items: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            if items:
                break
            continue
        line = _BULLET_RE.sub("", _PREFIX_RE.sub("", line)).strip()
        line = line.strip("`*").strip()
        if line.endswith(".") and not line.endswith(".."):
            line = line[:-1].rstrip()  # a sentence's full stop (WTQ's normaliser drops it too)
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1].strip()
        if line and line not in items:
            items.append(line)
        if len(items) >= max_items:
            break
    return items


def extract_code(text: str) -> str:
    """The script in a reply: the first fenced block, else the whole reply."""
    m = _FENCE_RE.search(text)
    return (m.group(1) if m else text).strip()


class Agent:
    def __init__(self, backend: Backend, settings: AgentSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or AgentSettings()

    # -- entry point -------------------------------------------------------------------------------

    def run(self, skill: Skill | None, task: Task, *, seed: int, cancel: CancelToken | None = None,
            out_dir: Path | None = None) -> Trajectory:
        traj = Trajectory(task_id=task.id, skill_hash=skill.hash if skill else NO_SKILL_HASH,
                          model_id=self.backend.model_id, seed=seed)
        start = time.perf_counter()
        try:
            if task.kind == "spreadsheet":
                self._run_spreadsheet(skill, task, seed, cancel, out_dir, traj)
            elif self.settings.mode == "tools":
                self._run_tools(skill, task, seed, cancel, traj)
            else:
                self._run_inline_qa(skill, task, seed, cancel, traj)
        except BackendError as exc:
            traj.error = str(exc)
            traj.error_kind = "backend"
            traj.turns.append(Turn("error", str(exc)))
        except ModelCrashed as exc:  # not a failed task: the run stops (resumable) and says where
            raise exc.add_context(f"task {task.id}") from None
        finally:
            traj.seconds = time.perf_counter() - start
        if traj.answer is None:
            traj.answer = None if task.kind == "spreadsheet" else []
        return traj

    # -- model calls -------------------------------------------------------------------------------

    def _call(self, traj: Trajectory, messages: list[Message], *, seed: int, max_tokens: int,
              cancel: CancelToken | None, schema: dict[str, Any] | None = None,
              stop: tuple[str, ...] = (), stop_on_loop: bool = False) -> Completion:
        request = CompletionRequest(messages=tuple(messages), max_tokens=max_tokens, seed=seed,
                                    temperature=self.settings.temperature,
                                    json_schema=schema, stop=stop, stop_on_loop=stop_on_loop)
        if not traj.turns or traj.turns[-1].kind != "prompt":
            traj.turns.append(Turn("prompt", _show(messages)))
        completion = self.backend.complete(request, cancel)
        traj.model_calls += 1
        traj.cached_calls += completion.from_cache
        traj.usage = traj.usage + completion.usage
        traj.turns.append(Turn("model", completion.text, usage=completion.usage, finish=completion.finish_reason))
        if completion.finish_reason == "cancelled":
            raise Cancelled()
        return completion

    # -- question answering, inline ------------------------------------------------------------------

    def context_text(self, task: Task, rows: int) -> str:
        from skillgrad_tui.core.tables import format_table, read_wtq_csv

        parts: list[str] = []
        for path in task.context_files:
            if path.suffix.lower() == ".csv":
                table = format_table(read_wtq_csv(path), max_rows=rows)
                parts.append(f"Table ({table.total_rows} rows):\n{table.text}")
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
                if len(text) > self.settings.context_chars:
                    text = (text[: self.settings.context_chars]
                            + f"\n[truncated: {len(text) - self.settings.context_chars} more characters]")
                parts.append(f"File {path.name}:\n{text}")
        return "\n\n".join(parts)

    def qa_messages(self, skill: Skill | None, task: Task, rows: int) -> list[Message]:
        context = self.context_text(task, rows)
        user = (f"{context}\n\n" if context else "") + (
            f"Question: {task.question}\n"
            "Reply with only the answer value(s), one per line.")
        # The open assistant turn starting with a cue keeps base models from echoing the prompt.
        return [Message("system", f"{skill_block(skill)}\n\n{FORMAT_EXAMPLE}"), Message("user", user),
                Message("assistant", ANSWER_CUE)]

    def _run_inline_qa(self, skill: Skill | None, task: Task, seed: int,
                       cancel: CancelToken | None, traj: Trajectory) -> None:
        rows = self.settings.table_rows
        while True:
            messages = self.qa_messages(skill, task, rows)
            try:
                completion = self._call(traj, messages, seed=seed, max_tokens=self.settings.max_tokens,
                                        cancel=cancel, stop=("\n\n", "\nQuestion:"))
                break
            except PromptTooLong:
                # Fewer rows rather than no answer: the prompt says rows were cut.
                if rows <= 5:
                    raise
                rows = max(5, rows // 2)
                traj.turns.append(Turn("error", f"prompt too long; retrying with {rows} table rows"))
        traj.answer = parse_answer(completion.text, self.settings.max_answer_items)

    # -- question answering with tools -------------------------------------------------------------------

    TOOL_SCHEMA: dict[str, Any] = {
        "type": "object",
        "properties": {
            "tool": {"enum": ["activate_skill", "read_reference", "run_python", "answer"]},
            "argument": {"type": "string", "maxLength": 1500},
        },
        "required": ["tool", "argument"],
        "additionalProperties": False,
    }

    def _run_tools(self, skill: Skill | None, task: Task, seed: int, cancel: CancelToken | None,
                   traj: Trajectory) -> None:
        from skillgrad_tui.core.sandbox import Sandbox

        system = (
            f"{skill_card(skill)}\n\nYou solve the user's task by calling tools. Reply with JSON "
            '{"tool": ..., "argument": ...}. Tools: activate_skill (argument: the skill name) returns '
            "the skill's instructions; read_reference (argument: a reference file path, or path#N for "
            "part N of a long one) returns that file; "
            "run_python (argument: Python code; the task's files are in the working folder) "
            "returns its output; answer (argument: the final answer values, one per line) ends the task.")
        context = self.context_text(task, self.settings.table_rows)
        messages = [Message("system", system),
                    Message("user", (f"{context}\n\n" if context else "") + f"Task: {task.question}")]
        with Sandbox(task.context_files, skill_scripts=_scripts_dir(skill)) as box:
            traj.sandbox = box.description
            for turn in range(self.settings.max_turns):
                completion = self._call(traj, messages, seed=seed + turn, cancel=cancel,
                                        max_tokens=max(self.settings.max_tokens, 256),
                                        schema=self.TOOL_SCHEMA)
                call = completion.json
                tool, arg = call["tool"], call["argument"]
                traj.turns.append(Turn("tool_call", arg, name=tool))
                if tool == "answer":
                    traj.answer = parse_answer(arg, self.settings.max_answer_items)
                    return
                result = self._tool_result(skill, tool, arg, box)
                traj.turns.append(Turn("tool_result", result, name=tool))
                messages += [Message("assistant", completion.text),
                             Message("user", f"Result of {tool}:\n{result}")]
        traj.error = f"no answer within {self.settings.max_turns} turns"

    def _tool_result(self, skill: Skill | None, tool: str, arg: str, box: Sandbox) -> str:
        if tool == "activate_skill":
            return skill.body if skill is not None else "No skill is available."
        if tool == "read_reference":
            if skill is None:
                return "No skill is available."
            return reference_page(skill, arg, self.settings.reference_chars)
        result = box.run(arg, timeout_s=self.settings.sandbox_timeout_s)
        return _script_report(result)

    # -- spreadsheets ------------------------------------------------------------------------------------

    def spreadsheet_messages(self, skill: Skill | None, task: Task, input_name: str) -> list[Message]:
        from skillgrad_tui.core.workbook_preview import preview_workbook

        where = task.meta.get("answer_position", "")
        sheet = task.meta.get("answer_sheet")
        preview = preview_workbook(task.context_files[0], max_rows=12, max_cols=12)
        user = (
            f"Instruction: {task.question}\n\n"
            f"The workbook is the file `{input_name}` in the current folder. Write a Python script "
            f"that uses openpyxl to load it, make the change, and save the whole workbook as "
            f"`{OUTPUT_NAME}`. The result is checked in {where}"
            + (f" of sheet {sheet}" if sheet else "") + ".\n\n"
            f"Workbook preview:\n{preview}\n\n{_scripts_note(skill)}Reply with one ```python code block.")
        return [Message("system", skill_block(skill)), Message("user", user)]

    def _run_spreadsheet(self, skill: Skill | None, task: Task, seed: int, cancel: CancelToken | None,
                         out_dir: Path | None, traj: Trajectory) -> None:
        from skillgrad_tui.core.sandbox import Sandbox

        if not task.context_files:
            raise BackendError(f"spreadsheet task {task.id} has no input workbook")
        source = task.context_files[0]
        messages = self.spreadsheet_messages(skill, task, source.name)
        with Sandbox([source], skill_scripts=_scripts_dir(skill)) as box:
            traj.sandbox = box.description
            for turn in range(max(1, min(self.settings.max_turns, 3))):
                # Scripts are long; a small model that starts repeating itself is stopped early.
                completion = self._call(traj, messages, seed=seed + turn, cancel=cancel,
                                        max_tokens=self.settings.code_max_tokens, stop_on_loop=True)
                code = extract_code(completion.text)
                traj.turns.append(Turn("tool_call", code, name="run_python"))
                result = box.run(code, timeout_s=self.settings.sandbox_timeout_s)
                report = _script_report(result)
                traj.turns.append(Turn("tool_result", report, name="run_python"))
                produced = box.workdir / OUTPUT_NAME
                if result.returncode == 0 and produced.is_file():
                    target_dir = out_dir if out_dir is not None else Path(tempfile.mkdtemp(prefix="skillgrad-out-"))
                    target_dir.mkdir(parents=True, exist_ok=True)
                    target = target_dir / f"{_safe(task.id)}-{OUTPUT_NAME}"
                    shutil.copy2(produced, target)
                    traj.answer = str(target)
                    return
                problem = report if result.returncode != 0 else f"the script did not create {OUTPUT_NAME}"
                if completion.finish_reason == "loop":
                    problem += "\n(Your reply was cut off because it kept repeating the same lines.)"
                messages += [Message("assistant", completion.text),
                             Message("user", f"That failed: {problem}\nFix the script. Reply with one "
                                             "```python code block.")]
        traj.error = f"no {OUTPUT_NAME} produced"


def _scripts_dir(skill: Skill | None) -> Path | None:
    """The skill's scripts/ folder: copied into the sandbox, runnable and importable there."""
    if skill is None or not skill.tools:
        return None
    return skill.root / "scripts"


def _scripts_note(skill: Skill | None) -> str:
    if _scripts_dir(skill) is None:
        return ""  # no scripts: the prompt stays exactly as it was
    return (tools_note(skill).lstrip("\n") + "\nThey can also be imported by module name (their "
            "read-only folder is in the SKILL_SCRIPTS environment variable). New processes "
            "cannot start, so run a script with run_script(...), not `python scripts/...` in a shell.\n\n")


def _script_report(result: SandboxResult) -> str:
    parts = [f"exit code {result.returncode}"]
    if result.killed_reason:
        parts.append(f"stopped: {result.killed_reason}")
    if result.stdout.strip():
        parts.append(f"stdout:\n{result.stdout.strip()}")
    if result.stderr.strip():
        parts.append(f"stderr:\n{result.stderr.strip()[-1500:]}")
    return "\n".join(parts)


def _show(messages: list[Message]) -> str:
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in messages)


def _safe(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)


def total_usage(trajectories: list[Trajectory]) -> Usage:
    total = Usage()
    for t in trajectories:
        total = total + t.usage
    return total
