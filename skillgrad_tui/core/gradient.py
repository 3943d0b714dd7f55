"""Text gradients: the failure diagnoser and the contrastive diagnoser (method.md, step 2).

A diagnoser reads one task, the evaluator's structured diff and the trajectory, and writes a short
task-independent label, the anchor it concerns (the layer follows from the anchor) and a
diagnosis. It never writes skill edits. Before the model reads anything, the code classifies the
failure from the diff (failures.py); the class is evidence in the prompt, and the label is
chosen from the class vocabulary, so labels are reusable and momentum merges patterns on meaning.
The schema is built from the skill: the anchor is an enum of its real section titles and files,
and the contrastive diagnoser's "what helped" is one of the skill's real lines (helped_lines.py).
The model's output is still untrusted: label and anchor are checked here again. When the model
gives nothing usable, the failure class itself becomes the gradient (`source` "code"), so a
failed task is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from skillgrad_tui.core.errors import BackendError, OutputInvalid
from skillgrad_tui.core.failures import Failure, classify, vocabulary
from skillgrad_tui.core.helped_lines import LineChoice, helped_choices
from skillgrad_tui.core.llm.base import Backend, CompletionRequest
from skillgrad_tui.core.payloads import GradientPayload, PreservationPayload
from skillgrad_tui.core.records import Task, Trajectory
from skillgrad_tui.core.skill import SKILL_MD, Skill
from skillgrad_tui.core.textsim import (STOPWORDS, content_words, jaccard, normalise_anchor, quoted_strings,
                                        stems, truncate, words)

Layer = Literal["L1", "L2", "L3"]
LABEL_MIN_WORDS = 3
LABEL_MAX_WORDS = 6
DIAGNOSIS_MAX = 300
NEW_SECTION = "new section"
DESCRIPTION_ANCHOR = "description"
_TURN_CHARS = 500  # enough of the final turn to see the mistake, small enough for a 2k context


@dataclass
class TextGradient:
    id: str
    step: int
    task_id: str
    label: str  # 3-6 lowercase words, no task values
    layer: Layer
    anchor: str  # a section title of SKILL.md, an L3 path, "new section" or "description"
    diagnosis: str
    evidence: list[str]  # task ids
    diff: str  # the evaluator's diff summary: hard evidence, filled by code, never by the model
    failure_class: str = ""  # failures.FailureClass.key, computed from the diff
    source: str = "model"  # "model", or "code" when the model gave nothing usable

    def to_dict(self) -> GradientPayload:
        return GradientPayload(id=self.id, step=self.step, task_id=self.task_id, label=self.label, layer=self.layer,
                               anchor=self.anchor, diagnosis=self.diagnosis, evidence=list(self.evidence),
                               diff=self.diff, failure_class=self.failure_class, source=self.source)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TextGradient":
        return TextGradient(
            id=d["id"], step=int(d["step"]), task_id=d["task_id"], label=d["label"],
            layer=cast(Layer, d["layer"]), anchor=d["anchor"], diagnosis=d.get("diagnosis", ""),
            evidence=list(d.get("evidence", [])), diff=d.get("diff", ""),
            failure_class=d.get("failure_class", ""), source=d.get("source", "model"),
        )


@dataclass
class PreservationSignal:
    id: str
    step: int
    task_id: str
    what_helped: str
    anchor: str
    robust: bool

    def to_dict(self) -> PreservationPayload:
        return PreservationPayload(id=self.id, step=self.step, task_id=self.task_id, what_helped=self.what_helped,
                                   anchor=self.anchor, robust=self.robust)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "PreservationSignal":
        return PreservationSignal(id=d["id"], step=int(d["step"]), task_id=d["task_id"],
                                  what_helped=d.get("what_helped", ""), anchor=d["anchor"],
                                  robust=bool(d.get("robust", False)))


# ------------------------------------------------------------------------------ shared helpers


def skill_context(skill: Skill) -> str:
    """The system message of every optimiser role: identical across calls, so llama.cpp keeps
    it in the KV cache and evaluates only the task-specific user message."""
    l3 = sorted(p for p in skill.files if p != SKILL_MD)
    listing = "\n".join(f"- {p}" for p in l3) if l3 else "(none)"
    return (f"The skill being improved ({SKILL_MD} of '{skill.name}'):\n\n"
            f"{skill.files[SKILL_MD].strip()}\n\n"
            f"Its L3 files (loaded on demand):\n{listing}")


def section_titles(skill: Skill) -> list[str]:
    return [s.title for s in skill.sections() if s.title]


def anchor_choices(skill: Skill, first: str | None = None) -> list[str]:
    """What an anchor may be: the skill's section titles and L3 files, a new section, the
    description (the enum of every diagnoser's anchor); `first` leads (a small model tends to
    take the first choice, so the likeliest one goes there)."""
    l3 = sorted(p for p in skill.files if p != SKILL_MD)
    return list(dict.fromkeys([*([first] if first else []), *section_titles(skill), *l3, NEW_SECTION,
                               DESCRIPTION_ANCHOR]))


def resolve_anchor(skill: Skill, raw: str, hint: str = "") -> tuple[str, str]:
    """Map a model's anchor to something that exists: (anchor, kind), kind in
    "section" | "file" | "new" | "description". Falls back to the section whose title shares
    most words with the anchor (then with `hint`, e.g. the label and diagnosis), and to
    "new section" only when no title shares a word."""
    titles = section_titles(skill)
    key = normalise_anchor(raw)
    for t in titles:
        if normalise_anchor(t) == key:
            return t, "section"
    l3 = [p for p in skill.files if p != SKILL_MD]
    for p in l3:
        if key in (p.lower(), p.lower().rsplit("/", 1)[-1]) or (key and key.endswith("/" + p.lower())):
            return p, "file"
    if key in (NEW_SECTION, "new", "new heading", "add section"):
        return NEW_SECTION, "new"
    if key in ("description", "skill description", "metadata", "front matter", "l1", "name and description"):
        return DESCRIPTION_ANCHOR, "description"
    for text in (raw, hint):
        best = _closest_title(titles, text)
        if best is not None:
            return best, "section"
    return NEW_SECTION, "new"


def _closest_title(titles: list[str], text: str) -> str | None:
    scored = [(jaccard(stems(t), stems(text)), -i, t) for i, t in enumerate(titles)]
    scored = [s for s in scored if s[0] > 0]
    return max(scored)[2] if scored else None


def layer_for(kind: str) -> Layer:
    """The layer follows the anchor: a references/ file is L3, the description is L1, a section
    or a new section is L2 (a model's 'L3' for a body section is read as 'this needs detail',
    which is the patcher's structural move, not the diagnoser's call)."""
    if kind == "file":
        return "L3"
    if kind == "description":
        return "L1"
    return "L2"


def task_value_words(task: Task, skill_text: str) -> set[str]:
    """Words of a label that would tie it to one task: quoted strings and names from the
    question, and answer words the skill itself never uses. Numbers are handled separately."""
    vocab = set(words(skill_text))
    out: set[str] = set()
    for q in quoted_strings(task.question):
        out.update(words(q))
    tokens = task.question.split()
    for tok in tokens[1:]:  # a capital after the first word is a name
        if tok[:1].isupper():
            out.update(words(tok))
    for item in task.expected or []:
        out.update(w for w in words(item) if len(w) >= 3 and w not in STOPWORDS and w not in vocab)
    return {w for w in out if w not in STOPWORDS}


def clean_label(raw: str, task: Task, skill_text: str) -> tuple[str | None, bool]:
    """(label, repaired): the normalised label with task values removed and cut to 6 words;
    None when fewer than 3 words are left."""
    banned = task_value_words(task, skill_text)
    original = words(raw)
    kept = [w for w in original if not any(c.isdigit() for c in w) and w not in banned]
    edge = STOPWORDS - {"not", "no"}  # negations carry the meaning ("not counted")
    while kept and kept[0] in edge:
        kept.pop(0)
    kept = kept[:LABEL_MAX_WORDS]
    while kept and kept[-1] in edge:  # "wrong count of" -> "wrong count"
        kept.pop()
    if len(kept) < LABEL_MIN_WORDS:
        return None, True
    return " ".join(kept), kept != original


def _answer_text(answer: Any) -> str:
    if answer is None:
        return "(no answer)"
    if isinstance(answer, (list, tuple)):
        return " | ".join(str(a) for a in answer) or "(empty)"
    return str(answer) or "(empty)"


def _final_turn(trajectory: Trajectory) -> str:
    for turn in reversed(trajectory.turns):
        if turn.kind == "model":
            return truncate(turn.content, _TURN_CHARS)
    return "(no model turn)"


def _expected_text(task: Task) -> str:
    return " | ".join(task.expected) if task.expected else "(see the diff)"


def _diff_text(trajectory: Trajectory) -> str:
    if trajectory.verdict is None:
        return "(not scored)"
    return trajectory.verdict.summary()


class _Role:
    """Shared plumbing: one schema-constrained call, failures counted instead of raised."""

    def __init__(self, backend: Backend, seed: int, max_tokens: int) -> None:
        self.backend = backend
        self.seed = seed
        self.max_tokens = max_tokens
        self.invalid_outputs = 0  # outputs that did not parse/validate, retries included
        self.backend_errors = 0
        self.last_error: str | None = None
        self.repaired_labels = 0
        self.from_code = 0  # gradients made from the failure class because the model's answer was unusable

    def _ask(self, skill: Skill, user: str, schema: dict[str, Any]) -> Any | None:
        request = CompletionRequest.chat(("system", skill_context(skill)), ("user", user),
                                         json_schema=schema, max_tokens=self.max_tokens, seed=self.seed)
        try:
            completion = self.backend.complete(request)
        except OutputInvalid as exc:
            self.invalid_outputs += exc.attempts
            self.last_error = str(exc)
            return None
        except BackendError as exc:
            self.backend_errors += 1
            self.last_error = str(exc)
            return None
        self.invalid_outputs += completion.invalid_outputs
        if completion.finish_reason == "cancelled" or not isinstance(completion.json, dict):
            return None
        return completion.json


# ------------------------------------------------------------------------------ failure diagnoser

def gradient_schema(skill: Skill, labels: list[str], first_anchor: str | None = None) -> dict[str, Any]:
    """The failure diagnoser's schema: label from the failure-class vocabulary, anchor from the skill."""
    return {
        "type": "object",
        "properties": {
            "label": {"enum": labels},
            "anchor": {"enum": anchor_choices(skill, first_anchor)},
            "diagnosis": {"type": "string", "minLength": 1, "maxLength": DIAGNOSIS_MAX},
        },
        "required": ["label", "anchor", "diagnosis"],
        "additionalProperties": False,
    }


class FailureDiagnoser(_Role):
    def __init__(self, backend: Backend, *, seed: int = 0, max_tokens: int = 160) -> None:
        super().__init__(backend, seed, max_tokens)

    def prompt(self, skill: Skill, task: Task, trajectory: Trajectory, failure: Failure | None = None) -> str:
        titles = "; ".join(section_titles(skill)) or "(none)"
        error = f"Run error: {truncate(trajectory.error, 200)}\n" if trajectory.error else ""
        failure = failure or classify(task, trajectory)
        evidence = (f"Failure class (computed from the diff): {failure.cls.label}. {failure.evidence}\n"
                    if failure else "")
        labels = "; ".join(self.labels(task, failure))
        return (
            "A task failed with this skill. Find what the skill lacks or gets wrong, in general terms.\n"
            f"Task ({task.kind}): {truncate(task.question, 400)}\n"
            f"Expected answer: {truncate(_expected_text(task), 200)}\n"
            f"Model answer: {truncate(_answer_text(trajectory.answer), 200)}\n"
            f"{error}"
            f"Evaluator diff:\n{_diff_text(trajectory)}\n"
            f"{evidence}"
            f"Final model turn (cut): {_final_turn(trajectory)}\n"
            f"Skill sections: {titles}\n"
            'Reply with JSON {"label", "anchor", "diagnosis"}: label = one of: ' + labels + " (the computed "
            "class unless the trajectory shows another); anchor = the section title or file to fix, or "
            '"new section"; diagnosis = one sentence on what the skill lacks.'
        )

    @staticmethod
    def labels(task: Task, failure: Failure | None, allowed: Sequence[str] | None = None) -> list[str]:
        """The label vocabulary, the computed class first (a small model tends to take the first).
        `allowed` narrows it to the classes the step's failures actually have, so that no label
        contradicts the evidence of every task it stands for."""
        vocab = [c.label for c in vocabulary(task) if allowed is None or c.key in allowed]
        if failure is not None:
            if failure.cls.label in vocab:
                vocab.remove(failure.cls.label)
            vocab.insert(0, failure.cls.label)
        return vocab

    def diagnose(self, skill: Skill, task: Task, trajectory: Trajectory, step: int,
                 allowed: Sequence[str] | None = None) -> TextGradient | None:
        """A gradient for one failed task: the model's, or (when it gave nothing usable, counted
        in invalid_outputs) one made from the failure class. None only for a task that passed.
        `allowed`: the failure-class keys the label may take (default: the whole vocabulary)."""
        failure = classify(task, trajectory)
        if failure is None:
            return None
        prompt = self.prompt(skill, task, trajectory, failure)
        where, _ = resolve_anchor(skill, "", f"{failure.cls.where} {failure.cls.label}")
        out = self._ask(skill, prompt, gradient_schema(skill, self.labels(task, failure, allowed), where))
        label: str | None = None
        if out is not None:
            label, repaired = clean_label(str(out["label"]), task, skill.files[SKILL_MD])
            if label is None:
                self.invalid_outputs += 1
                self.last_error = f"label {out['label']!r} has fewer than {LABEL_MIN_WORDS} task-independent words"
            else:
                self.repaired_labels += repaired
        if out is None or label is None:
            self.from_code += 1
            anchor, kind = resolve_anchor(skill, where)
            return TextGradient(
                id=f"g{step}-{task.id}", step=step, task_id=task.id, label=failure.cls.label,
                layer=layer_for(kind), anchor=anchor, diagnosis=failure.cls.hint, evidence=[task.id],
                diff=_diff_text(trajectory), failure_class=failure.cls.key, source="code")
        diagnosis = truncate(str(out["diagnosis"]), DIAGNOSIS_MAX)
        asked = set(words(prompt.split("\n", 1)[0] + " " + prompt[prompt.find("Reply with JSON"):]))
        if set(content_words(diagnosis)) <= asked:
            diagnosis = failure.cls.hint  # it repeated the question: the class says more
            self.repaired_labels += 1
        anchor, kind = resolve_anchor(skill, str(out["anchor"]), f"{label} {diagnosis}")
        return TextGradient(
            id=f"g{step}-{task.id}", step=step, task_id=task.id, label=label,
            layer=layer_for(kind), anchor=anchor, diagnosis=diagnosis,
            evidence=[task.id], diff=_diff_text(trajectory), failure_class=failure.cls.key,
        )


# -------------------------------------------------------------------------- contrastive diagnoser

def preservation_schema(choices: Sequence[LineChoice]) -> dict[str, Any]:
    """what_helped is one of the skill's real lines (helped_lines.py), never free text."""
    return {
        "type": "object",
        "properties": {
            "what_helped": {"enum": [c.key for c in choices]},
            "robust": {"type": "boolean"},
        },
        "required": ["what_helped", "robust"],
        "additionalProperties": False,
    }


class ContrastiveDiagnoser(_Role):
    def __init__(self, backend: Backend, *, seed: int = 0, max_tokens: int = 120) -> None:
        super().__init__(backend, seed, max_tokens)

    def prompt(self, task: Task, now: Trajectory, before: Trajectory, choices: Sequence[LineChoice]) -> str:
        listed = "\n".join(f"- {c.text}" + ("   (new since the failing version)" if c.new else "")
                           for c in choices)
        return (
            "This task failed with an earlier version of the skill and passes with the skill above.\n"
            f"Task ({task.kind}): {truncate(task.question, 400)}\n"
            f"Expected answer: {truncate(_expected_text(task), 200)}\n"
            f"Before (failed): {truncate(_answer_text(before.answer), 200)}; diff: {_diff_text(before)}\n"
            f"Final model turn before (cut): {_final_turn(before)}\n"
            f"Now (passed): {truncate(_answer_text(now.answer), 200)}\n"
            f"Final model turn now (cut): {_final_turn(now)}\n"
            f"Lines of the skill:\n{listed}\n"
            'Reply with JSON {"what_helped", "robust"}: what_helped = the start of the line of the skill '
            "above that made the difference; robust = true if it would hold on similar tasks, "
            "false if the pass looks lucky."
        )

    def compare(self, skill: Skill, task: Task, now: Trajectory, before: Trajectory,
                step: int, before_skill: Skill | None = None) -> PreservationSignal | None:
        """`before_skill`, the version the task failed with, puts the lines added since first."""
        choices = helped_choices(skill, before_skill)
        if not choices:  # a skill with nothing to name: no call, and nothing to preserve
            return None
        out = self._ask(skill, self.prompt(task, now, before, choices), preservation_schema(choices))
        if out is None:
            return None
        chosen = next((c for c in choices if c.key == out["what_helped"]), None)
        if chosen is None:  # the schema's enum, checked again: model output is never trusted
            self.invalid_outputs += 1
            self.last_error = f"what_helped {str(out['what_helped'])[:80]!r} is not a line of the skill"
            return None
        anchor, _ = resolve_anchor(skill, chosen.where, chosen.text)
        return PreservationSignal(id=f"p{step}-{task.id}", step=step, task_id=task.id,
                                  what_helped=chosen.text, anchor=anchor, robust=bool(out["robust"]))


__all__ = [
    "ContrastiveDiagnoser", "FailureDiagnoser", "PreservationSignal", "TextGradient", "anchor_choices",
    "clean_label", "gradient_schema", "layer_for", "preservation_schema", "resolve_anchor",
    "section_titles", "skill_context",
]
