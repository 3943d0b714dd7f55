"""The skill package, the optimiser's parameter: load, validate, hash, checked edits, atomic writes.

Layout (Agent Skills): SKILL.md = YAML front matter (L1) + Markdown body (L2); references/ and
any text file SKILL.md links or names are L3, read on demand; code under scripts/ is loaded
(hashed, editable) but is a tool, listed by usage and never pasted; assets/ (and any other file)
is listed and hashed but never loaded as text (skill_layout.py has the rules).
Everything that refuses a folder raises SkillError naming file and line;
nothing writes inside the skill folder except skill_store's `apply_patch` / `restore_snapshot`,
through the journalled writer in atomic.py. Our own state (journal, lock) lives in
<parent>/.skillgrad/journal, never inside the skill folder. Version-control metadata and what
.gitignore names are not skill content (vcs.py): never hashed, written, moved or deleted.

This module gathers the public names of skill_format, skill_edits, skill_load and skill_store.
"""

from __future__ import annotations

from skillgrad_tui.core.skill_format import (BODY_LINES_WARN, DEFAULT_MAX_FILE_BYTES, DESCRIPTION_MAX,
                                             DESCRIPTION_WORDS_WARN, EDITOR_TEMP_PATTERNS, IGNORED_NAMES, KNOWN_KEYS,
                                             Layer, NAME_MAX, NAME_RE, Problem, SKILL_MD, Section, Skill, TEXT_DIRS,
                                             content_hash, markdown_sections, validate_skill, warning_summary)
from skillgrad_tui.core.skill_edits import Edit, Patch, apply_edits_in_memory, check_edit
from skillgrad_tui.core.skill_load import (PendingWrite, default_journal_dir, is_ignored_name, load_skill,
                                           recover_command, text_files, walk_content)
from skillgrad_tui.core.skill_store import Restored, SkillChanged, apply_patch, recover, restore_snapshot, snapshot

__all__ = ["BODY_LINES_WARN", "DEFAULT_MAX_FILE_BYTES", "DESCRIPTION_MAX", "DESCRIPTION_WORDS_WARN",
           "EDITOR_TEMP_PATTERNS", "Edit", "IGNORED_NAMES", "KNOWN_KEYS", "Layer", "NAME_MAX", "NAME_RE", "Patch",
           "PendingWrite", "Problem", "Restored", "SKILL_MD", "Section", "Skill", "SkillChanged", "TEXT_DIRS",
           "apply_edits_in_memory", "apply_patch", "check_edit", "content_hash", "default_journal_dir",
           "is_ignored_name", "load_skill", "markdown_sections", "recover", "recover_command", "restore_snapshot",
           "snapshot", "text_files", "validate_skill", "walk_content", "warning_summary"]
