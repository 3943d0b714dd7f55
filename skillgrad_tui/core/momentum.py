"""The momentum memory: failure patterns that persist across steps (method.md, step 3).

A step's text gradients join existing patterns when their labels (and anchors) match, in code:
merging is deterministic because a small model cannot be trusted to do it. Recurrence is what
gives a pattern weight, so one odd failure does not rewrite the skill while a pattern seen across
tasks and steps does. Weights decay geometrically: at each update every weight is multiplied by
`decay`, then each gradient that joins a pattern adds 1 (so three tasks with one pattern in one
step count as three pieces of evidence, while `recurrence` counts distinct steps).

Persisted as memory.json (the state) and memory.md (for people); both written atomically.
`MomentumMemory.step_only()` is the `--no-momentum` ablation: decay 0 and a reset at every
update, so only the current step's gradients exist.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.gradient import PreservationSignal, TextGradient
from skillgrad_tui.core.payloads import PatternSummary
from skillgrad_tui.core.textsim import jaccard, normalise_anchor, normalise_label, truncate, words

Kind = Literal["operation", "workflow", "mixed"]
MEMORY_JSON = "memory.json"
MEMORY_MD = "memory.md"
FORMAT_VERSION = 1
STRONG_LABEL_MATCH = 0.8  # labels this close are one pattern whatever their anchors say
MAX_THEMES = 3
_WORKFLOW_WORDS = frozenset({"workflow", "workflows", "steps", "procedure", "process", "order", "plan",
                             "checklist", "approach"})
PATCH_EVENTS = ("patch", "patch_failed")


def kind_of_anchor(anchor: str) -> Kind:
    return "workflow" if set(words(anchor)) & _WORKFLOW_WORDS else "operation"


def _id_key(pattern_id: str) -> tuple[int, str]:
    m = re.fullmatch(r"P(\d+)", pattern_id)
    return (int(m.group(1)), "") if m else (1 << 30, pattern_id)


def rank_key(p: "Pattern") -> tuple[float, int, tuple[int, str]]:
    """Highest weight first, then most recurrent, then oldest id."""
    return (-p.weight, -p.recurrence, _id_key(p.id))


@dataclass
class Pattern:
    id: str
    kind: Kind
    label: str
    description: str
    anchor: str
    layer: str
    iterations: list[int]  # steps it recurred in (may repeat; recurrence counts distinct ones)
    weight: float
    latest_action: str
    log: list[dict[str, Any]]  # append-only: {"step", "event", "text", "tasks", ...}
    failed_patches: int = 0

    @property
    def recurrence(self) -> int:
        return len(set(self.iterations))

    @property
    def patch_attempts(self) -> int:
        """In-place patches tried for this pattern (kept or rolled back)."""
        return sum(1 for e in self.log if e.get("event") in PATCH_EVENTS)

    def tasks(self) -> list[str]:
        """Task ids behind the pattern's diagnoses, first seen first."""
        out: list[str] = []
        for e in self.log:
            if e.get("event") == "diagnosis":
                out.extend(t for t in e.get("tasks", []) if t not in out)
        return out

    def gradient_ids(self) -> list[str]:
        return [e["gradient"] for e in self.log if e.get("event") == "diagnosis" and e.get("gradient")]

    def summary_dict(self) -> PatternSummary:
        """The fields the MemoryUpdated event carries."""
        return {"id": self.id, "label": self.label, "anchor": self.anchor, "kind": self.kind,
                "recurrence": self.recurrence, "weight": self.weight, "latest_action": self.latest_action,
                "failed_patches": self.failed_patches}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recurrence": self.recurrence}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Pattern":
        kind = d["kind"]
        if kind not in ("operation", "workflow", "mixed"):
            raise ValueError(f"pattern {d.get('id')!r} has unknown kind {kind!r}")
        return Pattern(
            id=str(d["id"]), kind=cast(Kind, kind), label=str(d["label"]), description=str(d["description"]),
            anchor=str(d["anchor"]), layer=str(d["layer"]), iterations=[int(i) for i in d["iterations"]],
            weight=float(d["weight"]), latest_action=str(d.get("latest_action", "")),
            log=[dict(e) for e in d.get("log", [])], failed_patches=int(d.get("failed_patches", 0)),
        )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


@dataclass
class Overlay:
    """What one step added: one entry per task (signal, pattern, anchor, gap, proposed change)
    and up to three themes that cut across the step's tasks."""

    step: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    themes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# Overlay, step {self.step}", ""]
        if self.entries:
            lines += ["| task | signal | pattern | anchor | gap | proposed change |",
                      "|---|---|---|---|---|---|"]
            for e in self.entries:
                pattern = f"{e['pattern']} {e['label']}".strip()
                lines.append(f"| {_cell(e['task'])} | {_cell(e['signal'])} | {_cell(pattern)} | "
                             f"{_cell(e['anchor'])} | {_cell(e['gap'])} | {_cell(e['change'])} |")
        else:
            lines.append("No failures or preservation signals in this step.")
        lines += ["", "## Themes", ""]
        lines += [f"{i}. {t}" for i, t in enumerate(self.themes, 1)] or ["(none)"]
        return "\n".join(lines) + "\n"


class MomentumMemory:
    def __init__(self, decay: float = 0.8, similarity: float = 0.5, *, reset_each_step: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if not 0.0 < similarity <= 1.0:
            raise ValueError(f"similarity must be in (0, 1], got {similarity}")
        self.decay = decay
        self.similarity = similarity
        self.reset_each_step = reset_each_step
        self.patterns: list[Pattern] = []
        self.preserved: list[PreservationSignal] = []  # latest signal per (task, anchor)
        self._next_id = 1

    @classmethod
    def step_only(cls) -> "MomentumMemory":
        """The no-momentum ablation: nothing carries over from one step to the next."""
        return cls(decay=0.0, reset_each_step=True)

    # ------------------------------------------------------------------------------- merging

    def match(self, label: str, anchor: str) -> Pattern | None:
        """The pattern a (label, anchor) joins: same or similar label at the same anchor, or a
        near-identical label anywhere. Best label similarity wins, then the same anchor, then
        weight, then the older pattern."""
        key, wanted = normalise_anchor(anchor), normalise_label(label)
        best: tuple[float, bool, float, int] | None = None
        found: Pattern | None = None
        for p in self.patterns:
            sim = 1.0 if normalise_label(p.label) == wanted else jaccard(p.label, label)
            same_anchor = normalise_anchor(p.anchor) == key
            if not ((same_anchor and sim >= self.similarity) or sim >= STRONG_LABEL_MATCH):
                continue
            rank = (sim, same_anchor, p.weight, -_id_key(p.id)[0])
            if best is None or rank > best:
                best, found = rank, p
        return found

    def update(self, gradients: Sequence[TextGradient], step: int,
               preservation: Iterable[PreservationSignal] = ()) -> Overlay:
        """Decay every weight, merge the step's gradients into patterns, record preservation
        signals, and return the step's overlay."""
        if self.reset_each_step:
            self.patterns, self.preserved = [], []
        for pattern in self.patterns:
            pattern.weight = round(pattern.weight * self.decay, 6)
        overlay = Overlay(step)
        touched: dict[str, int] = {}  # pattern id -> gradients this step
        for g in gradients:
            p = self.match(g.label, g.anchor)
            if p is None:
                p = Pattern(id=f"P{self._next_id}", kind=kind_of_anchor(g.anchor), label=normalise_label(g.label),
                            description=truncate(g.diagnosis, 160) or g.label, anchor=g.anchor, layer=g.layer,
                            iterations=[], weight=0.0, latest_action="", log=[])
                self._next_id += 1
                self.patterns.append(p)
            elif kind_of_anchor(g.anchor) != p.kind and p.kind != "mixed":
                p.kind = "mixed"
            p.iterations.append(step)
            p.weight = round(p.weight + 1.0, 6)
            p.latest_action = g.diagnosis or p.latest_action
            p.log.append({"step": step, "event": "diagnosis", "text": g.diagnosis, "tasks": list(g.evidence),
                          "gradient": g.id, "label": g.label, "anchor": g.anchor})
            touched[p.id] = touched.get(p.id, 0) + 1
            gap = g.diff.splitlines()[0] if g.diff else ""
            overlay.entries.append({"task": g.task_id, "signal": "failure", "pattern": p.id, "label": p.label,
                                    "anchor": g.anchor, "gap": truncate(gap, 160), "change": g.diagnosis})
        for s in preservation:
            self._preserve(s, step, overlay)
        by_id = {p.id: p for p in self.patterns}
        ranked = sorted(touched, key=lambda i: (-touched[i], -by_id[i].weight, _id_key(i)))
        for pid in ranked[:MAX_THEMES]:
            p = by_id[pid]
            overlay.themes.append(f"{p.label} ({p.kind}, at {p.anchor}): {touched[pid]} task(s) this step, "
                                  f"seen in {p.recurrence} step(s), weight {p.weight:g}")
        return overlay

    def _preserve(self, s: PreservationSignal, step: int, overlay: Overlay) -> None:
        key = (s.task_id, normalise_anchor(s.anchor))
        self.preserved = [x for x in self.preserved if (x.task_id, normalise_anchor(x.anchor)) != key]
        self.preserved.append(s)
        linked = [p for p in self.patterns if normalise_anchor(p.anchor) == key[1]]
        note = "robust" if s.robust else "looks lucky"
        for p in linked:
            p.log.append({"step": step, "event": "preserve", "text": f"{s.what_helped} ({note})",
                          "tasks": [s.task_id]})
        overlay.entries.append({"task": s.task_id, "signal": f"preserve ({note})",
                                "pattern": ", ".join(p.id for p in linked), "label": "", "anchor": s.anchor,
                                "gap": "", "change": f"keep: {s.what_helped}"})

    def record_patch(self, pattern_id: str, step: int, summary: str, kept: bool) -> None:
        """Log a patch made for a pattern; a rolled-back one also counts as a failed patch."""
        p = self.get(pattern_id)
        p.log.append({"step": step, "event": "patch" if kept else "patch_failed", "text": summary, "tasks": []})
        if not kept:
            p.failed_patches += 1

    def get(self, pattern_id: str) -> Pattern:
        for p in self.patterns:
            if p.id == pattern_id:
                return p
        raise KeyError(f"no pattern {pattern_id!r} in the momentum memory")

    def ranked(self) -> list[Pattern]:
        return sorted(self.patterns, key=rank_key)

    def robust_preserved(self) -> list[PreservationSignal]:
        return [s for s in self.preserved if s.robust]

    # ----------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "decay": self.decay, "similarity": self.similarity,
                "reset_each_step": self.reset_each_step, "next_id": self._next_id,
                "patterns": [p.to_dict() for p in self.patterns],
                "preserved": [s.to_dict() for s in self.preserved]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "MomentumMemory":
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format version {d.get('version')!r} (expected {FORMAT_VERSION})")
        mem = MomentumMemory(float(d["decay"]), float(d["similarity"]),
                             reset_each_step=bool(d.get("reset_each_step", False)))
        mem.patterns = [Pattern.from_dict(p) for p in d["patterns"]]
        mem.preserved = [PreservationSignal.from_dict(s) for s in d.get("preserved", [])]
        highest = max((_id_key(p.id)[0] for p in mem.patterns if _id_key(p.id)[0] < 1 << 30), default=0)
        mem._next_id = max(int(d.get("next_id", 1)), highest + 1)
        return mem

    def to_markdown(self) -> str:
        lines = ["# Momentum memory", "",
                 f"decay {self.decay:g}, similarity {self.similarity:g}, {len(self.patterns)} pattern(s), "
                 "highest weight first.", ""]
        for p in self.ranked():
            steps = ", ".join(str(i) for i in sorted(set(p.iterations)))
            lines += [f"## {p.id}: {p.label}", "",
                      f"- weight {p.weight:g}, recurrence {p.recurrence} (steps {steps}), "
                      f"failed patches {p.failed_patches}",
                      f"- kind {p.kind}, layer {p.layer}, anchor: {p.anchor}",
                      f"- description: {p.description}",
                      f"- latest action: {p.latest_action}", "", "Log:", ""]
            for e in p.log:
                tasks = f" [{', '.join(e.get('tasks', []))}]" if e.get("tasks") else ""
                lines.append(f"- step {e['step']} {e['event']}{tasks}: {_cell(str(e.get('text', '')))}")
            lines.append("")
        if self.preserved:
            lines += ["## Preserved", ""]
            for s in self.preserved:
                note = "robust" if s.robust else "looks lucky"
                lines.append(f"- {s.task_id} (step {s.step}, {note}) at {s.anchor}: {s.what_helped}")
            lines.append("")
        return "\n".join(lines)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / MEMORY_JSON, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        _write_atomic(directory / MEMORY_MD, self.to_markdown())

    @staticmethod
    def load(directory: Path) -> "MomentumMemory":
        """The memory saved in `directory`; an empty one when there is none yet."""
        path = directory / MEMORY_JSON
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return MomentumMemory()
        except (OSError, UnicodeDecodeError) as exc:
            raise SkillgradError(f"cannot read the momentum memory: {exc}", path) from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            return MomentumMemory.from_dict(data)
        except json.JSONDecodeError as exc:
            raise SkillgradError(f"corrupt momentum memory: {exc.msg}", path, exc.lineno) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SkillgradError(f"corrupt momentum memory: {exc}", path) from None


def _write_atomic(path: Path, text: str) -> None:
    # A crash mid-save must leave the previous memory readable, never half a file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
