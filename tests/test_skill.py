"""Skill package: loading and its refusals, validation warnings, hashing, checked edits, patches,
snapshots. Every skill is a real folder in tmp_path; assets come from the shared benchmark data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skillgrad_tui.core.errors import EditError, SkillError
from skillgrad_tui.core.skill import (
    Edit,
    Patch,
    Section,
    apply_edits_in_memory,
    apply_patch,
    check_edit,
    content_hash,
    default_journal_dir,
    load_skill,
    restore_snapshot,
    snapshot,
    validate_skill,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SSB = SHARED / "benchmarks" / "spreadsheetbench" / "spreadsheet"

SKILL_MD = """---
name: table-qa
description: Answer questions about a table by filtering and counting its rows.
license: MIT
---
# Table QA

Read references/columns.md when a column name is ambiguous; skip it otherwise.
Run scripts/count.py to count rows.

## Filter rows
Keep rows whose cell matches the question.

### Example
Only rows from 1990.

## Common pitfalls
- Counting the header row.
"""

FILES = {
    "references/columns.md": "# Columns\n\nUse the header row.\nDates are yyyy-mm-dd.\n",
    "scripts/count.py": "import sys\nprint(len(sys.stdin.readlines()))\n",
}


def make_skill(parent: Path, name: str = "table-qa", skill_md: str | bytes = SKILL_MD, files: dict[str, str | bytes] | None = None) -> Path:
    root = parent / name
    root.mkdir(parents=True)
    for rel, content in {"SKILL.md": skill_md, **(FILES if files is None else files)}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root (hidden ones and links included), to prove a refusal changed nothing."""
    out: dict[str, bytes] = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            out[p.relative_to(root).as_posix()] = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
    return out


def refuse(root: Path, fragment: str, rel: str, line: int | None, **kw: int) -> SkillError:
    before = tree(root.parent)
    with pytest.raises(SkillError) as info:
        load_skill(root, **kw)
    err = info.value
    assert fragment in err.message
    assert err.path == root.resolve() / rel
    assert err.line == line
    where = f"{root.resolve() / rel}:{line}" if line is not None else str(root.resolve() / rel)
    assert str(err).startswith(where)
    assert tree(root.parent) == before
    return err


# ------------------------------------------------------------------------------------ loading


def test_load_good_skill(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    s = load_skill(root)
    assert (s.name, s.root) == ("table-qa", root.resolve())
    assert s.description.startswith("Answer questions")
    assert s.front_matter["license"] == "MIT"
    assert s.body.startswith("# Table QA\n")
    assert sorted(s.files) == ["SKILL.md", "references/columns.md", "scripts/count.py"]
    assert s.files["scripts/count.py"] == FILES["scripts/count.py"]
    assert s.problems == []
    assert validate_skill(s) == []
    assert s.layer_of("SKILL.md") == "L2" and s.layer_of("references/columns.md") == "L3"
    assert s.sections() == [
        Section("Table QA", 1, 6, 18),
        Section("Filter rows", 2, 11, 16),
        Section("Example", 3, 14, 16),
        Section("Common pitfalls", 2, 17, 18),
    ]
    assert SKILL_MD.splitlines()[10] == "## Filter rows"  # line 11 of the file
    size = s.text_size()
    assert size["L2"] == len(s.body)
    assert size["L3"] + size["tools"] == sum(len(t) for t in FILES.values())  # scripts are tools, not L3 text
    assert size["L1"] == len("name: table-qa\ndescription: Answer questions about a table by filtering and counting its rows.\nlicense: MIT\n")


def test_assets_listed_not_loaded(tmp_path: Path) -> None:
    xlsx = next(SSB.glob("*/*_init.xlsx"), None) if SSB.is_dir() else None
    if xlsx is None:
        pytest.skip(f"no SpreadsheetBench workbook under {SSB}")
    root = make_skill(tmp_path, files={**FILES, "assets/template.xlsx": xlsx.read_bytes(), "LICENSE.txt": "MIT\n"})
    s = load_skill(root)
    assert s.assets == ["LICENSE.txt", "assets/template.xlsx"]
    assert "assets/template.xlsx" not in s.files
    size = s.text_size()
    assert size["L3"] + size["tools"] == sum(len(t) for t in FILES.values())


def test_sections_ignore_fenced_code(tmp_path: Path) -> None:
    md = SKILL_MD.replace("## Common pitfalls", "```markdown\n# not a heading\n```\n## Common pitfalls")
    s = load_skill(make_skill(tmp_path, skill_md=md))
    assert [x.title for x in s.sections()] == ["Table QA", "Filter rows", "Example", "Common pitfalls"]


def test_example_skills_load() -> None:
    folders = sorted(p.parent for p in (REPO / "skills").glob("*/SKILL.md"))
    if not folders:
        pytest.skip("no example skills under skills/ yet")
    for folder in folders:
        s = load_skill(folder)
        assert s.name == folder.name
        assert not [p for p in validate_skill(s) if p.severity == "error"]


def test_refuse_missing_skill_md(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    (root / "SKILL.md").rename(root / "skill.md")
    err = refuse(root, "missing SKILL.md", "SKILL.md", None)
    assert "case-sensitive" in err.message


def test_refuse_no_front_matter(tmp_path: Path) -> None:
    refuse(make_skill(tmp_path, skill_md="# Table QA\nno front matter\n"), "no YAML front matter", "SKILL.md", 1)


def test_refuse_unterminated_front_matter(tmp_path: Path) -> None:
    md = "---\nname: table-qa\ndescription: x\n# Table QA\n"
    refuse(make_skill(tmp_path, skill_md=md), "unterminated front matter", "SKILL.md", 1)


def test_refuse_yaml_error_gives_file_line(tmp_path: Path) -> None:
    md = "---\nname: table-qa\ndescription: x\nmetadata: [unclosed, list\n---\nbody\n"
    err = refuse(make_skill(tmp_path, skill_md=md), "not valid YAML", "SKILL.md", 5)
    assert "YAML" in str(err)


def test_refuse_yaml_error_after_bom(tmp_path: Path) -> None:
    md = "\ufeff---\nname: table-qa\ndescription: x\n  bad: indent\n---\nbody\n"
    refuse(make_skill(tmp_path, skill_md=md), "not valid YAML", "SKILL.md", 4)


def test_refuse_front_matter_not_mapping(tmp_path: Path) -> None:
    refuse(make_skill(tmp_path, skill_md="---\n- name\n- description\n---\nbody\n"), "must be a YAML mapping", "SKILL.md", 2)
    md = "---\n---\nbody\n"
    refuse(make_skill(tmp_path / "b", skill_md=md), "got empty", "SKILL.md", 2)


def test_refuse_duplicate_key(tmp_path: Path) -> None:
    md = "---\nname: table-qa\ndescription: x\nname: table-qa\n---\nbody\n"
    refuse(make_skill(tmp_path, skill_md=md), "duplicate key 'name'", "SKILL.md", 4)


@pytest.mark.parametrize(
    ("front", "fragment", "line"),
    [
        ("description: x\n", "no 'name'", 2),
        ("name: Table-QA\ndescription: x\n", "lowercase letters", 2),
        ("description: x\nname: -table-qa\n", "lowercase letters", 3),
        ("name: table--qa\ndescription: x\n", "lowercase letters", 2),
        ("name: " + "a" * 65 + "\ndescription: x\n", "at most 64", 2),
        ("name: 12\ndescription: x\n", "must be a string", 2),
        ("name: table-qa\n", "no 'description'", 2),
        ("name: table-qa\ndescription: '   '\n", "non-empty string", 3),
    ],
)
def test_refuse_bad_l1(tmp_path: Path, front: str, fragment: str, line: int) -> None:
    refuse(make_skill(tmp_path, skill_md=f"---\n{front}---\nbody\n"), fragment, "SKILL.md", line)


@pytest.mark.parametrize(
    ("front", "fragment", "line"),
    [
        ("name: other-skill\ndescription: x\n", "differs from the folder name 'table-qa'", 2),
        ("name: table-qa\nlicense: MIT\ndescription: " + "d" * 1025 + "\n", "at most 1024", 4),
    ],
)
def test_format_limits_load_with_a_warning(tmp_path: Path, front: str, fragment: str, line: int) -> None:
    """Published skills break these two limits (claude-api's description is 1,068 characters): they
    load, flagged as format defects for the optimiser to repair; an edit may not introduce one."""
    s = load_skill(make_skill(tmp_path, skill_md=f"---\n{front}---\nbody\n"))
    [v] = s.format_violations()
    assert fragment in v.message and v.line == line and v.severity == "warning"
    assert check_edit(s, Edit("L2", "SKILL.md", "body", "body text")) is None  # other edits still apply


def test_long_name_at_limit_loads(tmp_path: Path) -> None:
    name = "a" * 64
    s = load_skill(make_skill(tmp_path, name=name, skill_md=f"---\nname: {name}\ndescription: x\n---\nbody\n", files={}))
    assert s.name == name


def test_refuse_non_utf8_reference(tmp_path: Path) -> None:
    data = "# Columns\nline two\nna\u00efve ".encode("utf-8") + b"\xff\xfe tail\n"
    root = make_skill(tmp_path, files={**FILES, "references/columns.md": data})
    err = refuse(root, "not UTF-8", "references/columns.md", 3)
    bad_at = data.index(b"\xff")
    assert f"byte offset {bad_at}" in err.message


def test_refuse_binary_script(tmp_path: Path) -> None:
    root = make_skill(tmp_path, files={**FILES, "scripts/count.py": b"print(1)\n\x00\x01\x02"})
    refuse(root, "binary content", "scripts/count.py", 2)


def test_refuse_binary_skill_md(tmp_path: Path) -> None:
    refuse(make_skill(tmp_path, skill_md=SKILL_MD.encode() + b"\x00"), "binary content", "SKILL.md", 19)


def test_refuse_oversize_file(tmp_path: Path) -> None:
    root = make_skill(tmp_path, files={**FILES, "references/big.md": "x" * 5000})
    err = refuse(root, "over the limit of 4000", "references/big.md", None, max_file_bytes=4000)
    assert "5000 bytes" in err.message
    assert load_skill(root, max_file_bytes=6000).files["references/big.md"] == "x" * 5000


def test_refuse_symlink_outside(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    root = make_skill(tmp_path / "a")
    (root / "references" / "deep").mkdir()
    (root / "references" / "deep" / "leak.md").symlink_to(outside)
    refuse(root, "symlink resolves outside the skill folder", "references/deep/leak.md", None)


def test_refuse_dir_symlink_outside_and_broken_link(tmp_path: Path) -> None:
    root = make_skill(tmp_path / "a")
    (root / "assets").symlink_to(tmp_path, target_is_directory=True)
    refuse(root, "outside the skill folder", "assets", None)
    root2 = make_skill(tmp_path / "b")
    (root2 / "references" / "gone.md").symlink_to(root2 / "references" / "nothing.md")
    refuse(root2, "broken symlink", "references/gone.md", None)


def test_symlink_inside_is_followed(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    (root / "references" / "alias.md").symlink_to(root / "references" / "columns.md")
    s = load_skill(root)
    assert s.files["references/alias.md"] == FILES["references/columns.md"]


def test_temp_files_and_caches_ignored(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    h = load_skill(root).hash
    (root / "references" / ".columns.md.sgtmp-abc123").write_bytes(b"\x00half written")
    (root / "scripts" / "__pycache__").mkdir()
    (root / "scripts" / "__pycache__" / "count.cpython-311.pyc").write_bytes(b"\x00")
    s = load_skill(root)
    assert s.hash == h and sorted(s.files) == ["SKILL.md", "references/columns.md", "scripts/count.py"]


# ----------------------------------------------------------------------------------- warnings


def test_warnings(tmp_path: Path) -> None:
    body = "# T\n" + "line\n" * 510 + "See references/missing.md for more.\n"
    md = "---\nname: table-qa\ndescription: " + "word " * 60 + "\nflavour: extra\n---\n" + body
    s = load_skill(make_skill(tmp_path, skill_md=md))
    msgs = {(p.path.relative_to(s.root).as_posix(), p.line, p.message.split(",")[0].split(";")[0]) for p in s.problems}
    assert all(p.severity == "warning" for p in s.problems)
    assert ("SKILL.md", 3, "'description' has 60 words") in msgs
    assert ("SKILL.md", 4, "unknown front matter key 'flavour' (kept as is)") in msgs
    assert ("SKILL.md", 6, "the body is 513 lines") in msgs
    assert ("SKILL.md", 517, "mentions references/missing.md") in msgs
    assert ("references/columns.md", None, "never mentioned from SKILL.md") in msgs
    assert ("scripts/count.py", None, "never mentioned from SKILL.md or a reference") in msgs
    assert validate_skill(s) == s.problems
    assert s.front_matter["flavour"] == "extra"


def test_validate_in_memory_changes(tmp_path: Path) -> None:
    s = load_skill(make_skill(tmp_path))
    s.files["SKILL.md"] = s.files["SKILL.md"].replace("name: table-qa", "name: Bad_Name")
    errors = [p for p in validate_skill(s) if p.severity == "error"]
    assert len(errors) == 1 and errors[0].line == 2 and "lowercase" in errors[0].message
    s.files["SKILL.md"] = "no front matter"
    assert validate_skill(s)[0].message.startswith("no YAML front matter")


# -------------------------------------------------------------------------------------- hashing


def test_hash_stable_and_content_sensitive(tmp_path: Path) -> None:
    root = make_skill(tmp_path / "one")
    s = load_skill(root)
    assert len(s.hash) == 64 and s.short_hash == s.hash[:12]
    assert load_skill(root).hash == s.hash
    assert load_skill(make_skill(tmp_path / "two")).hash == s.hash  # the folder's location is not content
    assert content_hash(snapshot(s)) == s.hash
    (root / "references" / "columns.md").write_text(FILES["references/columns.md"] + " ")
    h2 = load_skill(root).hash
    assert h2 != s.hash
    (root / "references" / "columns.md").rename(root / "references" / "cols.md")
    assert load_skill(root).hash not in (s.hash, h2)  # same bytes, new path
    (root / "assets").mkdir()
    h3 = load_skill(root).hash
    (root / "assets" / "blob.bin").write_bytes(b"\x00\x01")
    h4 = load_skill(root).hash
    (root / "assets" / "blob.bin").write_bytes(b"\x00\x02")
    assert len({h3, h4, load_skill(root).hash}) == 3


# ---------------------------------------------------------------------------------------- edits


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (Edit("L2", "SKILL.md", "Counting the header row.", "Counting the header row as data."), None),
        (Edit("L1", "SKILL.md", "filtering and counting its rows", "filtering, sorting and counting rows"), None),
        (Edit("L3", "references/columns.md", "Dates are yyyy-mm-dd.", "Dates are ISO 8601."), None),
        (Edit("L3", "references/units.md", "", "# Units\nMetres.\n"), None),
        (Edit("L2", "SKILL.md", "no such text", "x"), "not found in the body"),
        (Edit("L2", "SKILL.md", "table-qa", "x"), "not found in the body (it is in the other part"),
        (Edit("L1", "SKILL.md", "Keep rows", "x"), "not found in the front matter"),
        (Edit("L2", "SKILL.md", "rows", "lines"), "occurs 4 times in the body"),
        (Edit("L3", "../other/SKILL.md", "a", "b"), "outside the skill folder"),
        (Edit("L3", "/etc/passwd", "a", "b"), "outside the skill folder"),
        (Edit("L3", "SKILL.md", "rows", "x"), "its layer is L1 or L2"),
        (Edit("L2", "references/columns.md", "Columns", "x"), "its layer is L3"),
        (Edit("L1", "SKILL.md", "license: MIT", "license: MIT\n---"), "would break front matter"),
        (Edit("L1", "SKILL.md", "name: table-qa", "name: table-qa\nname: again"), "duplicate key"),
        (Edit("L1", "SKILL.md", "table-qa", "tableqa"), "differs from the folder name"),
        (Edit("L1", "SKILL.md", "description: ", "description: [oops "), "not valid YAML"),
        (Edit("L3", "references/columns.md", "", "x"), "already exists"),
        (Edit("L3", "notes.md", "", "x"), "only be created under references/ or scripts/"),
        (Edit("L3", "references/new.md", "", "   \n"), "needs content"),
        (Edit("L3", "references/columns.md/x.md", "", "x"), "is a file, not a folder"),
        (Edit("L3", "references/absent.md", "a", "b"), "does not exist"),
        (Edit("L3", "references/columns.md", "Columns", "Columns"), "changes nothing"),
        (Edit("L3", "references/columns.md", "Columns", "Col\x00umns"), "NUL byte"),
        (Edit("L3", "references/.a.md.sgtmp-abc", "", "x"), "reserved file name"),
    ],
)
def test_check_edit(tmp_path: Path, edit: Edit, fragment: str | None) -> None:
    root = make_skill(tmp_path)
    s = load_skill(root)
    before = tree(tmp_path)
    reason = check_edit(s, edit)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None and fragment in reason, reason
        assert str(root.resolve()) in reason  # names the file
    assert tree(tmp_path) == before


def test_edit_error_names_line_of_ambiguity(tmp_path: Path) -> None:
    s = load_skill(make_skill(tmp_path))
    with pytest.raises(EditError) as info:
        apply_edits_in_memory(s, [Edit("L2", "SKILL.md", "rows", "lines")])
    assert info.value.line == 9 and "(lines 9, 11, 12, 15)" in info.value.message


def test_edit_on_asset_refused(tmp_path: Path) -> None:
    s = load_skill(make_skill(tmp_path, files={**FILES, "assets/t.csv": "a,b\n"}))
    assert "is an asset" in (check_edit(s, Edit("L3", "assets/t.csv", "a", "b")) or "")


def test_edits_apply_in_sequence(tmp_path: Path) -> None:
    s = load_skill(make_skill(tmp_path))
    edits = [
        Edit("L3", "references/units.md", "", "# Units\nMetres.\n"),
        Edit("L3", "references/units.md", "Metres.", "Metres and feet."),
        Edit("L2", "SKILL.md", "## Common pitfalls", "Read references/units.md when units differ.\n\n## Common pitfalls"),
        Edit("L2", "SKILL.md", "units differ.", "units differ; skip it otherwise."),
    ]
    out = apply_edits_in_memory(s, edits)
    assert out["references/units.md"] == "# Units\nMetres and feet.\n"
    assert "Read references/units.md when units differ; skip it otherwise.\n\n## Common pitfalls" in out["SKILL.md"]
    assert set(out) == {"SKILL.md", "references/units.md"}
    assert s.files["SKILL.md"] == SKILL_MD  # the in-memory skill is not changed
    # the second edit alone does not apply: its old text exists only after the first
    assert "not found" in (check_edit(s, edits[3]) or "")


def test_edit_result_must_stay_in_size(tmp_path: Path) -> None:
    s = load_skill(make_skill(tmp_path), max_file_bytes=1000)
    reason = check_edit(s, Edit("L3", "references/columns.md", "Use the header row.", "x" * 1200))
    assert reason is not None and "over the limit of 1000" in reason


# -------------------------------------------------------------------------------------- patches


def test_apply_patch_multi_file(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    (root / "scripts" / "count.py").chmod(0o755)
    old = load_skill(root)
    patch = Patch(
        edits=[
            Edit("L1", "SKILL.md", "filtering and counting its rows", "filtering rows, then counting them"),
            Edit("L2", "SKILL.md", "- Counting the header row.", "- Counting the header row.\n- Reading references/units.md too late."),
            Edit("L3", "references/columns.md", "Use the header row.", "Use the first row as header."),
            Edit("L3", "references/units.md", "", "# Units\nConvert before comparing.\n"),
            Edit("L3", "scripts/count.py", "print(len(", "print(-1 + len("),
        ],
        rationale="clarify header handling",
        gradients=["header row counted"],
        tasks=["nt-3"],
    )
    new = apply_patch(root, patch)
    assert new.description == "Answer questions about a table by filtering rows, then counting them."
    assert "Reading references/units.md too late." in new.body
    assert new.files["references/units.md"] == "# Units\nConvert before comparing.\n"
    assert new.files["scripts/count.py"].startswith("import sys\nprint(-1 + len(")
    assert (root / "scripts" / "count.py").stat().st_mode & 0o777 == 0o755  # the script stays executable
    assert new.hash != old.hash and new.problems == []
    assert tree(root) == {k: v.encode() for k, v in new.files.items()}
    journal = default_journal_dir(root)
    assert journal == tmp_path / ".skillgrad" / "journal"
    assert not list(journal.glob("*.journal.json"))  # journal removed once the write is done


def test_apply_patch_refusal_changes_nothing(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    before = tree(root)
    bad = Patch([Edit("L3", "references/columns.md", "Use the header row.", "ok"), Edit("L2", "SKILL.md", "missing", "x")])
    with pytest.raises(EditError, match="not found"):
        apply_patch(root, bad)
    with pytest.raises(EditError, match="no edits"):
        apply_patch(root, Patch([]))
    assert tree(root) == before


def test_apply_patch_sees_edits_made_on_disk(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    s = load_skill(root)
    edit = Edit("L3", "references/columns.md", "Use the header row.", "Header first.")
    assert check_edit(s, edit) is None
    (root / "references" / "columns.md").write_text("edited by the user\n")
    with pytest.raises(EditError, match="not found"):
        apply_patch(root, Patch([edit]))


# ------------------------------------------------------------------------------------ snapshots


def test_snapshot_restore_roundtrip_with_assets_and_deletions(tmp_path: Path) -> None:
    xlsx = next(SSB.glob("*/*_golden.xlsx"), None) if SSB.is_dir() else None
    if xlsx is None:
        pytest.skip(f"no SpreadsheetBench workbook under {SSB}")
    root = make_skill(tmp_path, files={**FILES, "assets/golden.xlsx": xlsx.read_bytes()})
    v1 = load_skill(root)
    snap1 = snapshot(v1)
    assert snap1["assets/golden.xlsx"] == xlsx.read_bytes() and content_hash(snap1) == v1.hash
    v2 = apply_patch(root, Patch([Edit("L3", "references/extra/notes.md", "", "notes\n"), Edit("L2", "SKILL.md", "Keep rows", "Keep only rows")]))
    (root / "assets" / "golden.xlsx").unlink()  # the user deletes the asset by hand
    (root / "assets").rmdir()
    v3 = load_skill(root)
    snap3 = snapshot(v3)
    with pytest.raises(SkillError, match=r"would remove 1 file\(s\) .*references/extra/notes.md"):
        restore_snapshot(root, snap1)  # nowhere to keep the file the version does not have
    assert load_skill(root).hash == v3.hash
    kept = tmp_path / "kept"
    restored = restore_snapshot(root, snap1, set_aside=kept)
    assert restored.hash == v1.hash and tree(root) == snap1
    assert not (root / "references" / "extra").exists()  # emptied folders go too
    assert restored.removed == ["references/extra/notes.md"] and restored.replaced == ["SKILL.md"]
    assert tree(kept) == {"references/extra/notes.md": b"notes\n", "SKILL.md": snap3["SKILL.md"]}
    back = restore_snapshot(root, snap3, set_aside=tmp_path / "kept-2")
    assert back.removed == ["assets/golden.xlsx"] and (tmp_path / "kept-2" / "assets" / "golden.xlsx").is_file()
    assert back.hash == v3.hash != v2.hash and "Keep only rows" in back.skill.body and back.skill.assets == []


def test_restore_into_new_folder(tmp_path: Path) -> None:
    snap = snapshot(load_skill(make_skill(tmp_path / "a")))
    (tmp_path / "b").mkdir()
    s = restore_snapshot(tmp_path / "b" / "table-qa", snap).skill
    assert s.root == (tmp_path / "b" / "table-qa").resolve() and tree(s.root) == snap


def test_restore_refuses_bad_snapshot(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    snap = snapshot(load_skill(root))
    before = tree(tmp_path)
    with pytest.raises(SkillError, match="lowercase letters"):
        restore_snapshot(root, {**snap, "SKILL.md": snap["SKILL.md"].replace(b"name: table-qa", b"name: Other")})
    with pytest.raises(SkillError, match="not a clean relative path"):
        restore_snapshot(root, {**snap, "../escape.md": b"x"})
    with pytest.raises(SkillError, match="not UTF-8"):
        restore_snapshot(root, {**snap, "references/columns.md": b"\xff"})
    assert tree(tmp_path) == before


def test_snapshot_refuses_stale_skill(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    s = load_skill(root)
    (root / "references" / "columns.md").write_text("changed\n")
    with pytest.raises(SkillError, match="changed on disk since it was loaded"):
        snapshot(s)


def test_nothing_of_ours_inside_skill(tmp_path: Path) -> None:
    root = make_skill(tmp_path)
    apply_patch(root, Patch([Edit("L3", "references/columns.md", "Use the header row.", "Header first.")]))
    restore_snapshot(root, snapshot(load_skill(root)))
    assert sorted(tree(root)) == ["SKILL.md", "references/columns.md", "scripts/count.py"]


def test_editor_swap_and_backup_files_are_not_part_of_the_skill(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "table-qa"
    shutil.copytree(Path(__file__).resolve().parents[1] / "skills" / "table-qa", root)
    before = load_skill(root).hash
    for name in (".SKILL.md.swp", "SKILL.md~", "4913", ".#SKILL.md"):
        (root / name).write_bytes(b"\x00editor state")
    after = load_skill(root)
    assert after.hash == before and not any(n.endswith((".swp", "~")) for n in after.assets)


def test_a_symlinked_folder_inside_the_skill_is_never_written_through(tmp_path: Path) -> None:
    """Issue 14: `references` linked to another folder of the skill was reported "not followed",
    yet a new file was written through it."""
    root = make_skill(tmp_path, files={"notes/columns.md": "# Columns\n", "scripts/count.py": "print(1)\n"})
    (root / "references").symlink_to(root / "notes")
    skill = load_skill(root)
    assert any("symlinked folder" in str(p) for p in skill.problems)
    edit = Edit("L3", "references/new.md", "", "# New\n")
    assert "symbolic link" in (check_edit(skill, edit) or "")
    before = tree(root / "notes")
    with pytest.raises(EditError, match="symbolic link"):
        apply_patch(root, Patch([edit]))
    with pytest.raises(SkillError, match="symbolic link"):  # the writer refuses too, whoever calls it
        restore_snapshot(root, {**snapshot(skill), "references/new.md": b"# New\n"})
    assert tree(root / "notes") == before and not (root / "notes" / "new.md").exists()
