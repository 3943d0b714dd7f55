"""The patcher's prompt: its fixed words (which no edit may copy, see check_no_template_text), the
pattern's evidence, the edit menu, and one valid answer as the example."""

from __future__ import annotations

import json
from collections.abc import Sequence

from skillgrad_tui.core.edit_menu import INSERT_AFTER, MOVE, EditMenu, split_md
from skillgrad_tui.core.failures import class_by_label
from skillgrad_tui.core.gradient import PreservationSignal
from skillgrad_tui.core.momentum import Pattern
from skillgrad_tui.core.skill_format import SKILL_MD, Skill
from skillgrad_tui.core.textsim import truncate


# The fixed words of the patcher's prompt. An edit that copies them (or a <placeholder>) is rejected:
# check_no_template_text. The failure class's rule, offered as the example's text, is not among them.
RULES = ("Rules: general advice that holds for any task, never names, numbers or answers from tasks; "
         "short; never rewrite the skill; SKILL.md body stays under {limit} characters (now {now}).\n")
MOVE_ASK = ("This pattern keeps failing after {attempts} in-place edit(s). Move its detail into a new reference "
            "file that the agent reads only when needed.\n")
MOVE_REPLY = ('Reply with JSON {"candidates": [...]}, 1 to 3 items {"section": "<the section>", "op": '
              '"move_to_references", "condition": "<when to read it>", "text": "<the guidance, a few lines>", '
              '"why": "<reason>"}.\nExample: ')
EDIT_ASK = "Fix the gap with a small edit.\n"
EDIT_REPLY = ('Reply with JSON {"candidates": [...]}, 1 to 3 alternatives, each {"section", "op", "anchor", '
              '"text", "why"}: section = a section or file named above; op = insert_after (add text after the '
              "anchor line), replace (the anchor line by text), delete (the anchor line), new_section (with a "
              '"title" instead of an anchor) or new_description; anchor = the start of a line of that section, '
              "as shown; text = the new text.\nExample: ")
RULE_PLACEHOLDER = "<one short general rule>"
TEMPLATE_TEXTS = (RULES, MOVE_ASK, MOVE_REPLY, EDIT_ASK, EDIT_REPLY, RULE_PLACEHOLDER)


def patch_prompt(skill: Skill, pattern: Pattern, preservation: Sequence[PreservationSignal], menu: EditMenu,
                 l2_max_chars: int) -> str:
    history = [e["text"] for e in pattern.log if e.get("event") == "patch_failed"][-2:]
    keep = [s.what_helped for s in preservation if s.robust][:3]
    body_len = len(split_md(skill.files[SKILL_MD])[1])
    head = (f"Failure pattern {pattern.id}, seen in {len(pattern.tasks())} task(s) over {pattern.recurrence} "
            f"step(s): {pattern.label}\nWhat goes wrong: {pattern.description}\n"
            f"Latest diagnosis: {pattern.latest_action}\n")
    if history:
        head += "Edits tried before and rolled back: " + " / ".join(truncate(h, 120) for h in history) + "\n"
    if keep:
        head += "Do not remove what helped other tasks: " + " / ".join(truncate(k, 120) for k in keep) + "\n"
    head += menu.describe() + "\n"
    rules = RULES.format(limit=l2_max_chars, now=body_len)
    example = example_answer(menu, pattern)
    if menu.structural:
        return head + MOVE_ASK.format(attempts=pattern.patch_attempts) + rules + MOVE_REPLY + example
    return head + EDIT_ASK + rules + EDIT_REPLY + example


def example_answer(menu: EditMenu, pattern: Pattern) -> str:
    """One valid answer, with the failure class's usual fix as its text (a small model copies
    examples; the gate decides whether the copy helps)."""
    cls = class_by_label(pattern.label)
    text = cls.rule if cls is not None and cls.rule else RULE_PLACEHOLDER
    target = menu.focus if menu.focus in menu.targets else next(
        (t for t, bs in menu.targets.items() if bs and bs[0].layer == "L2"), None)
    if target is None:
        return json.dumps({"candidates": [{"section": "new section", "op": "new_section",
                                           "title": pattern.label, "text": text, "why": "fix"}]})
    if menu.structural:
        return json.dumps({"candidates": [{"section": target, "op": MOVE, "condition": "a task needs it",
                                           "text": text, "why": "move"}]})
    anchor = menu.targets[target][-1].key
    return json.dumps({"candidates": [{"section": target, "op": INSERT_AFTER, "anchor": anchor, "text": text,
                                       "why": "fix"}]})
