"""Schemas built from a skill admit only edits that apply.

The property test draws random instances of each schema (a hypothesis strategy built from the
schema itself: any target, any operation, any anchor, any free text, control characters and '---'
lines included) and checks
that every one converts into edits that apply to the skill and leave a skill that loads, or is a
declared no-op (nothing to add, text equal to the old). Skills: the repository's table-qa skill
with a reference file, a real third-party skill (webapp-testing), and a skill written to be
awkward: CRLF line ends, repeated lines, a fenced block, nested lists, a duplicate heading, an
empty section.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skillgrad_tui.core.edit_menu import (DELETE, INSERT_AFTER, NEW_DESCRIPTION, NEW_SECTION, REPLACE, EditMenu,
                                          NoChange, branch_for)
from skillgrad_tui.core.skill import Edit, Skill, apply_edits_in_memory, load_skill

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

AWKWARD = (
    "---\r\nname: awkward\r\ndescription: A skill written to be hard to edit.\r\n---\r\n"
    "Intro line before any heading.\r\n\r\n"
    "# Awkward\r\n\r\n## Rules\r\n- Be careful.\r\n- Be careful.\r\n- Nested:\r\n  - Be careful.\r\n"
    "  continued line\r\n\r\nBe careful.\r\n\r\n"
    "## Example\r\n```text\r\n## not a heading\r\n- Be careful.\r\n```\r\n\r\n"
    "## Rules\r\n- Second section with the same title.\r\n\r\n## Empty\r\n"
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of the JSON-schema subset the menus use; any other keyword is an error, so the
    strategy cannot silently generate less than the schema admits."""
    known = {"type", "properties", "required", "additionalProperties", "anyOf", "enum", "const", "minLength",
             "maxLength", "items", "minItems", "maxItems"}
    unknown = set(schema) - known
    assert not unknown, f"schema keyword(s) the strategy does not know: {unknown}"
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        assert schema.get("additionalProperties") is False and set(schema["required"]) == set(schema["properties"])
        return st.fixed_dictionaries({k: from_schema(v) for k, v in schema["properties"].items()})
    if kind == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 5))
    if kind == "string":
        text = st.text(st.characters(codec="utf-8"), min_size=schema.get("minLength", 0),
                       max_size=min(schema.get("maxLength", 80), 80))
        lines = st.lists(st.sampled_from(["---", "", "  ", "- item", "## Heading", "\r", "x"]), max_size=4).map(
            "\n".join)
        return st.one_of(text, lines, st.just("  \n\t ")).filter(
            lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**6))
    raise AssertionError(f"unsupported schema {schema}")


def _copy(tmp: Path, src: Path, name: str) -> Path:
    root = tmp / name
    shutil.copytree(src, root)
    return root


@pytest.fixture(params=["table-qa", "webapp-testing", "awkward"])
def skill(request: pytest.FixtureRequest, tmp_path: Path) -> Skill:
    name = request.param
    if name == "table-qa":
        root = _copy(tmp_path, REPO / "skills" / "table-qa", name)
        (root / "references").mkdir()
        (root / "references" / "dates.md").write_text("# Dates\n\n- Compare years as numbers.\n- Compare years as "
                                                      "numbers.\n", encoding="utf-8")
        md = root / "SKILL.md"
        md.write_text(md.read_text(encoding="utf-8") + "\nRead references/dates.md when dates are compared.\n",
                      encoding="utf-8")
    elif name == "webapp-testing":
        src = SHARED / "third-party-skills" / name
        if not src.is_dir():
            pytest.skip(f"shared third-party skills not found at {src}")
        root = _copy(tmp_path, src, name)
    else:
        root = tmp_path / name
        root.mkdir()
        (root / "SKILL.md").write_bytes(AWKWARD.encode("utf-8"))
    return load_skill(root)


def _applies(skill: Skill, edits: list[Edit]) -> None:
    changed = apply_edits_in_memory(skill, edits)  # raises EditError when an edit misses
    assert changed, edits


def _check_answers(skill: Skill, menu: EditMenu, answers: list[dict[str, Any]]) -> tuple[int, int]:
    applied = noop = 0
    for answer in answers:
        try:
            variants = menu.convert(answer, "some pattern label")
        except NoChange:
            noop += 1
            continue
        assert variants
        for edits in variants:
            _applies(skill, edits)
        applied += 1
    return applied, noop


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_every_answer_the_schema_admits_is_an_edit_that_applies(skill: Skill, data: st.DataObject) -> None:
    focus = data.draw(st.sampled_from([None, *EditMenu(skill).all_blocks]))
    structural = data.draw(st.booleans())
    menu = EditMenu(skill, focus=focus, structural=structural)
    schema = menu.schema()
    answer = data.draw(from_schema(schema))
    jsonschema.validate(answer, schema)
    applied, noop = _check_answers(skill, menu, answer["candidates"])
    assert applied + noop == len(answer["candidates"])


def test_each_operation_on_each_offered_anchor_applies(skill: Skill) -> None:
    """Exhaustive over anchors, with plain text: no answer is a no-op here, every one applies."""
    n = 0
    for focus in [None, *EditMenu(skill).all_blocks]:
        menu = EditMenu(skill, focus=focus)
        validator = jsonschema.Draft202012Validator(menu.schema())
        answers: list[dict[str, Any]] = []
        for target, blocks in menu.targets.items():
            if focus is not None and target != focus:
                continue  # the other targets' anchors were all checked with focus None
            for b in blocks:
                for op in [INSERT_AFTER] + ([] if b.heading else [REPLACE, DELETE]):
                    answers.append({"section": target, "op": op, "anchor": b.key, "text": "Check the unit twice.",
                                    "why": "x"})
        if focus is None:
            answers += [{"section": "new section", "op": NEW_SECTION, "title": "Units", "text": "Say the unit.",
                         "why": "x"},
                        {"section": "description", "op": NEW_DESCRIPTION, "text": "Answers questions.", "why": "x"}]
        for answer in answers:
            validator.validate({"candidates": [answer]})
            for edits in menu.convert(answer):
                _applies(skill, edits)
                n += 1
    assert n > 20


def test_insert_after_keeps_the_list_style_and_replace_keeps_the_bullet(tmp_path: Path) -> None:
    root = _copy(tmp_path, REPO / "skills" / "table-qa", "table-qa")
    skill = load_skill(root)
    menu = EditMenu(skill, focus="Answer format")
    keys = [b.key for b in menu.targets["Answer format"]]
    assert keys[0] == "## Answer format" and keys[1].startswith("- Reply with only the answer value(s)")
    assert all(len(k) <= 48 for k in keys)
    (edit,) = menu.convert({"section": "Answer format", "op": INSERT_AFTER, "anchor": keys[1],
                            "text": "Never add units."})[0]
    assert edit.new.endswith("\n- Never add units.") and edit.old.startswith("- Reply with only")
    (edit,) = menu.convert({"section": "Answer format", "op": REPLACE, "anchor": keys[2],
                            "text": "Copy cell text exactly."})[0]
    assert edit == Edit("L2", "SKILL.md", "- Copy names and text exactly as they appear in the table cell.",
                        "- Copy cell text exactly.")
    with pytest.raises(NoChange):
        menu.convert({"section": "Answer format", "op": REPLACE, "anchor": keys[2],
                      "text": "Copy names and text exactly as they appear in the table cell."})
    # A multi-line list item is one block: replacing it replaces its continuation line too.
    menu = EditMenu(skill, focus="Read the table first")
    block = menu.targets["Read the table first"][2]
    assert "abbreviated" in skill.files["SKILL.md"][block.start : block.end]
    # Other sections offer their heading and their last block only.
    assert len(menu.targets["Comparisons"]) == 2
    schema = menu.schema()
    assert branch_for(schema, "Comparisons", INSERT_AFTER) is not None
    assert branch_for(schema, "new section", NEW_SECTION) is not None


def test_repeated_lines_get_unique_keys_and_unique_old_text(tmp_path: Path) -> None:
    root = tmp_path / "awkward"
    root.mkdir()
    (root / "SKILL.md").write_bytes(AWKWARD.encode("utf-8"))
    skill = load_skill(root)
    menu = EditMenu(skill, focus="Rules")
    keys = [b.key for b in menu.targets["Rules"]]
    assert len(keys) == len(set(keys)) and "- Be careful. #2" in keys
    (edit,) = menu.convert({"section": "Rules", "op": DELETE, "anchor": "- Be careful. #2", "text": ""})[0]
    after = apply_edits_in_memory(skill, [edit])["SKILL.md"]
    assert after.count("- Be careful.") == skill.files["SKILL.md"].count("- Be careful.") - 1
    assert "\r\n\r\n\r\n" not in after


def test_structural_menu_offers_only_moves_and_the_move_creates_a_pointed_reference(tmp_path: Path) -> None:
    skill = load_skill(_copy(tmp_path, REPO / "skills" / "table-qa", "table-qa"))
    menu = EditMenu(skill, focus="Counting and arithmetic", structural=True)
    schema = menu.schema()
    branches = schema["properties"]["candidates"]["items"]["anyOf"]
    assert {b["properties"]["op"]["const"] for b in branches} == {"move_to_references"}
    variants = menu.convert({"section": "Counting and arithmetic", "op": "move_to_references",
                             "condition": "when a question needs counting",
                             "text": "To count, list the matching rows to yourself one by one, then count them."},
                            "miscounted rows")
    create, pointer = variants[0]
    assert create.path == "references/miscounted-rows.md" and create.old == ""
    after = apply_edits_in_memory(skill, variants[0])
    assert "Read references/miscounted-rows.md when a question needs counting." in after["SKILL.md"]
