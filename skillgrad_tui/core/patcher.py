"""The patcher: pattern-by-pattern skill edits, with every rule checked in code (method.md, step 4).

For each of the heaviest patterns the model picks one to three edits from a menu built from the
skill (edit_menu.py): a section, an operation and an anchor chosen from enums of what really
exists, and only the new text free, so every answer the schema admits is an edit that applies.
The code then runs every check, because a small model ignores rules it is only told: L1 stays
one sentence of at most 50 words, L2 stays under its size budget, no training question or
answer value is copied in, no edit replaces more than half of a file, no section heading
disappears, nothing a robust preservation signal relies on is deleted, and the edits of one
candidate must apply together and leave a skill that loads. A structural move (after 3+
recurrences despite in-place patches) only asks for the detail and the condition; the code
writes references/<slug>.md and the "Read references/<slug>.md when ..." pointer itself.

`propose` returns a pool of candidate skills for the optimiser (GEPA-style): candidate 0 combines
each pattern's simplest passing edit; the next ones are single alternatives (another edit for one
pattern, or one pattern's edit alone), and, when there are too few, edits sampled again at a
higher temperature. Every answer is counted: proposed, applied (became an edit that applies),
no change, passed the checks, rejected by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skillgrad_tui.core.edit_menu import EditMenu, NoChange
from skillgrad_tui.core.errors import BackendError, EditError, OutputInvalid
from skillgrad_tui.core.gradient import PreservationSignal, resolve_anchor, skill_context
from skillgrad_tui.core.llm.base import Backend, CompletionRequest
from skillgrad_tui.core.momentum import Pattern, rank_key
from skillgrad_tui.core.patch_checks import (DOES_NOT_APPLY, MODEL_FAILED, MODEL_INVALID, NO_CHANGE, Rejection,
                                             change_size, check_candidate, check_description, check_l2_budget,
                                             check_no_training_values, check_preservation)
from skillgrad_tui.core.patch_prompts import patch_prompt
from skillgrad_tui.core.payloads import ProposedEditPayload
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.skill_edits import Edit, Patch, apply_edits_in_memory
from skillgrad_tui.core.skill_format import Skill
from skillgrad_tui.core.textsim import truncate

STRUCTURAL_RECURRENCE = 3
SAMPLE_TEMPERATURE = 0.8  # extra candidates are sampled; the first answer per pattern is greedy


@dataclass
class ProposedEdit:
    edit: Edit
    pattern_id: str
    pattern_label: str
    rationale: str
    gradients: list[str]
    tasks: list[str]

    def to_dict(self) -> ProposedEditPayload:
        return {"layer": self.edit.layer, "path": self.edit.path, "old": self.edit.old, "new": self.edit.new,
                "pattern": self.pattern_id, "pattern_label": self.pattern_label, "rationale": self.rationale,
                "gradients": list(self.gradients), "tasks": list(self.tasks)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ProposedEdit":
        return ProposedEdit(Edit(d["layer"], d["path"], d["old"], d["new"]), d["pattern"], d["pattern_label"],
                            d.get("rationale", ""), list(d.get("gradients", [])), list(d.get("tasks", [])))


@dataclass
class Proposal:
    """The candidates of one step and the account of how they came about."""

    candidates: list[list[ProposedEdit]] = field(default_factory=list)  # each applies together, in order
    origins: list[str] = field(default_factory=list)  # how each candidate was made
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # raw answer (+reason_key), reason
    invalid_outputs: int = 0
    proposed: int = 0  # answers the model gave (each one a proposed edit)
    applied: int = 0  # answers that became edits that apply to the skill
    passed: int = 0  # ... and passed every check

    @property
    def edits(self) -> list[ProposedEdit]:
        """Candidate 0: each pattern's simplest passing edit, together."""
        return self.candidates[0] if self.candidates else []

    def reject(self, raw: Mapping[str, Any], key: str, message: str) -> None:
        self.rejected.append(({**raw, "reason_key": key}, message))

    def reasons(self) -> Counter[str]:
        return Counter(raw.get("reason_key", "other") for raw, _ in self.rejected)

    def to_patch(self, index: int = 0) -> Patch:
        rationale: list[str] = []
        gradients: list[str] = []
        tasks: list[str] = []
        chosen = self.candidates[index] if self.candidates else []
        for pe in chosen:
            line = f"{pe.pattern_label}: {pe.rationale}"
            if line not in rationale:
                rationale.append(line)
            gradients += [g for g in pe.gradients if g not in gradients]
            tasks += [t for t in pe.tasks if t not in tasks]
        return Patch([pe.edit for pe in chosen], "\n".join(rationale), gradients, tasks)


@dataclass
class _Option:
    """One answer that passed every check on its own: a possible candidate."""

    pattern: Pattern
    raw: dict[str, Any]
    edits: list[Edit]
    why: str


class Patcher:
    def __init__(self, backend: Backend, *, seed: int = 0, l2_max_chars: int = 6000, desc_max_words: int = 50,
                 max_patterns: int = 3, ngram: int = 4, max_tokens: int = 256, max_blocks: int = 40) -> None:
        self.backend = backend
        self.seed = seed
        self.l2_max_chars = l2_max_chars
        self.desc_max_words = desc_max_words
        self.max_patterns = max_patterns
        self.ngram = ngram
        self.max_tokens = max_tokens
        self.max_blocks = max_blocks

    @staticmethod
    def is_structural(pattern: Pattern) -> bool:
        """A body (L2) pattern that recurred in 3+ steps although it was patched in place before;
        L1 and L3 patterns have nothing to move out of the body."""
        return (pattern.layer == "L2" and pattern.recurrence >= STRUCTURAL_RECURRENCE
                and pattern.patch_attempts > 0)

    def menu(self, skill: Skill, pattern: Pattern) -> EditMenu:
        anchor, kind = resolve_anchor(skill, pattern.anchor, pattern.label)
        focus = anchor if kind == "section" or (kind == "file" and anchor in skill.l3_docs) else None
        return EditMenu(skill, focus=focus, structural=self.is_structural(pattern), max_blocks=self.max_blocks)

    def propose(self, skill: Skill, patterns: list[Pattern], preservation: list[PreservationSignal],
                train_tasks: list[Task], step: int, candidates: int = 1) -> Proposal:
        """Up to `candidates` candidate skills (as edit lists) for the heaviest patterns."""
        proposal = Proposal()
        order = sorted(patterns, key=rank_key)[: self.max_patterns]
        options = [self._options(skill, p, preservation, train_tasks, proposal, self.seed, 0.0) for p in order]
        seen: set[frozenset[tuple[str, str]]] = set()

        def add(chosen: list[_Option], origin: str) -> None:
            if len(proposal.candidates) >= candidates or not chosen:
                return
            edits = [e for o in chosen for e in o.edits]
            result = frozenset(apply_edits_in_memory(skill, edits).items())
            if result in seen:
                return
            seen.add(result)
            proposal.candidates.append([self._proposed(o, e) for o in chosen for e in o.edits])
            proposal.origins.append(origin)

        # Candidate 0: the simplest passing edit of each pattern, checked together.
        combined: list[_Option] = []
        accepted: list[Edit] = []
        for opts in options:
            for o in opts:
                why = self.check(skill, o.edits, accepted, preservation, train_tasks)
                if why is None:
                    combined.append(o)
                    accepted += o.edits
                    break
                proposal.reject({**o.raw, "pattern": o.pattern.id}, *why)
        add(combined, "each pattern's simplest edit")
        # Then alternatives: another edit for one pattern, then one pattern's edit alone.
        for level in range(1, 3):
            for opts in options:
                if level < len(opts):
                    add([opts[level]], f"alternative {level + 1} for {opts[level].pattern.id}")
        if len(order) > 1:
            for opts in options:
                if opts:
                    add([opts[0]], f"{opts[0].pattern.id} alone")
        # Too few: sample more answers, one pattern at a time, heaviest first.
        extra, calls = 0, candidates - len(proposal.candidates)  # one more call per missing candidate, at most
        while len(proposal.candidates) < candidates and order and extra < calls:
            pattern = order[extra % len(order)]
            extra += 1
            for o in self._options(skill, pattern, preservation, train_tasks, proposal,
                                   self.seed + 1000 * extra, SAMPLE_TEMPERATURE):
                add([o], f"sample {extra} for {pattern.id}")
        return proposal

    def _proposed(self, o: _Option, e: Edit) -> ProposedEdit:
        why = o.why
        if self.is_structural(o.pattern):
            why = f"structural move after {o.pattern.recurrence} recurrences: {why}"
        return ProposedEdit(e, o.pattern.id, o.pattern.label, why, o.pattern.gradient_ids(), o.pattern.tasks())

    def _options(self, skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal],
                 train_tasks: Sequence[Task], proposal: Proposal, seed: int, temperature: float) -> list[_Option]:
        """The model's answers for one pattern that pass every check alone, simplest first."""
        menu = self.menu(skill, pattern)
        raws = self._ask(skill, self.prompt(skill, pattern, preservation, menu), menu.schema(), pattern,
                         proposal, seed, temperature)
        scored: list[tuple[int, int, int, dict[str, Any], list[Edit]]] = []
        for i, raw in enumerate(raws):
            proposal.proposed += 1
            tagged = {**raw, "pattern": pattern.id}
            try:
                variants = menu.convert(raw, pattern.label)
                apply_edits_in_memory(skill, variants[0])
            except NoChange as exc:
                proposal.reject(tagged, NO_CHANGE, str(exc))
                continue
            except EditError as exc:  # never expected: the menu only offers edits that apply
                proposal.reject(tagged, DOES_NOT_APPLY, f"does not apply: {exc}")
                continue
            proposal.applied += 1
            size = change_size(variants[0])  # fallback variants are tried right after their answer
            scored += [(size, i, j, raw, edits) for j, edits in enumerate(variants)]
        out: list[_Option] = []
        done: set[int] = set()
        last = {i: j for _, i, j, _, _ in scored}  # the last variant of each answer
        for _, i, j, raw, edits in sorted(scored, key=lambda s: s[:3]):
            if i in done:
                continue
            why = self.check(skill, edits, [], preservation, train_tasks)
            if why is not None:
                if j == last[i]:  # no fallback variant left to try
                    proposal.reject({**raw, "pattern": pattern.id}, *why)
                    done.add(i)
                continue
            done.add(i)
            proposal.passed += 1
            out.append(_Option(pattern, raw, edits, truncate(str(raw.get("why", "")), 200) or pattern.latest_action))
        return out

    def _ask(self, skill: Skill, user: str, schema: dict[str, Any], pattern: Pattern, proposal: Proposal,
             seed: int, temperature: float) -> list[dict[str, Any]]:
        request = CompletionRequest.chat(("system", skill_context(skill)), ("user", user), json_schema=schema,
                                         max_tokens=self.max_tokens, seed=seed, temperature=temperature)
        try:
            completion = self.backend.complete(request)
        except OutputInvalid as exc:
            proposal.invalid_outputs += exc.attempts
            proposal.reject({"pattern": pattern.id}, MODEL_INVALID, f"model output invalid: {exc}")
            return []
        except BackendError as exc:
            proposal.reject({"pattern": pattern.id}, MODEL_FAILED, f"model call failed: {exc}")
            return []
        proposal.invalid_outputs += completion.invalid_outputs
        if completion.finish_reason == "cancelled" or not isinstance(completion.json, dict):
            return []
        return [c for c in completion.json.get("candidates", []) if isinstance(c, dict)]

    def check(self, skill: Skill, edits: list[Edit], accepted: list[Edit],
              preservation: Sequence[PreservationSignal], train_tasks: Sequence[Task],
              shown: str = "") -> Rejection | None:
        """None when `edits`, applied after the already accepted ones, pass every rule; else why not."""
        return check_candidate(skill, edits, accepted, preservation, train_tasks, ngram=self.ngram,
                               l2_max_chars=self.l2_max_chars, desc_max_words=self.desc_max_words, shown=shown)

    def prompt(self, skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal],
               menu: EditMenu | None = None) -> str:
        return patch_prompt(skill, pattern, preservation, menu or self.menu(skill, pattern), self.l2_max_chars)


__all__ = [
    "Patcher", "Proposal", "ProposedEdit", "check_description", "check_l2_budget", "check_no_training_values",
    "check_preservation",
]
