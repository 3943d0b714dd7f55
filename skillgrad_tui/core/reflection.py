"""The one-shot reflection baseline: one rewrite of the skill body from the seed skill's
failures, with no momentum memory and no gate. The quality benchmark compares SkillGrad with it."""

from __future__ import annotations

from skillgrad_tui.core.errors import BackendError, EditError, SkillError
from skillgrad_tui.core.llm.base import Backend, CompletionRequest
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.skill import Edit, Patch, Skill, apply_edits_in_memory

SCHEMA = {
    "type": "object",
    "properties": {"body": {"type": "string", "minLength": 40, "maxLength": 4000}},
    "required": ["body"],
    "additionalProperties": False,
}


def failure_digest(tasks: dict[str, Task], failures: list[Trajectory], limit: int = 6) -> str:
    lines = []
    for traj in failures[:limit]:
        task = tasks[traj.task_id]
        diff = traj.verdict.summary(limit=3) if traj.verdict else traj.error or ""
        lines.append(f"- Question: {task.question}\n  Model answer: {traj.answer}\n  {diff}")
    return "\n".join(lines)


def reflect_once(skill: Skill, tasks: dict[str, Task], failures: list[Trajectory], backend: Backend,
                 *, seed: int = 0, max_tokens: int = 768) -> Patch | None:
    """Ask for a whole new body; return a checked patch, or None when the model gave nothing usable."""
    if not failures:
        return None
    request = CompletionRequest.chat(
        ("system", f"You improve agent skills. Current SKILL.md body:\n\n{skill.body}"),
        ("user", "The agent failed these tasks with the skill:\n" + failure_digest(tasks, failures)
         + "\n\nRewrite the skill body so that an agent would avoid these mistakes. Keep it generic: "
           "no values from these tasks. Reply as JSON {\"body\": \"...\"}."),
        max_tokens=max_tokens, seed=seed, json_schema=SCHEMA)
    try:
        body = backend.complete(request).json["body"].strip()
    except BackendError:
        return None
    if not body or body == skill.body.strip():
        return None
    patch = Patch([Edit("L2", "SKILL.md", skill.body, "\n" + body + "\n")],
                  rationale="one-shot reflection over the seed skill's failures",
                  tasks=[t.task_id for t in failures])
    try:
        apply_edits_in_memory(skill, patch.edits)
    except (EditError, SkillError):
        return None
    return patch
