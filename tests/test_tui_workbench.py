"""The app as the workbench (issue 13, item 3): pickers for model, suite, split, steps and batch
size; the header's model, device and server; the history screen (lineage, plot, diff of any two
versions, rollback); comparing two runs; export. Driven by keys with Textual's pilot, on real runs
made with the scripted stand-in model (2 steps, gate 'all': 7 versions in well under a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, Static

from skillgrad_tui.config import Config
from skillgrad_tui.core.lineage import final_version, lineage_rows, lineage_tree, run_facts
from skillgrad_tui.core.runlog import list_versions, version_files
from skillgrad_tui.core.skill import load_skill
from skillgrad_tui.tui.app import SkillgradApp
from skillgrad_tui.tui.screens.compare import CompareScreen
from skillgrad_tui.tui.screens.help import HelpScreen
from skillgrad_tui.tui.screens.history import HistoryScreen
from skillgrad_tui.tui.screens.pickers import ChoiceScreen, ConfirmScreen
from skillgrad_tui.tui.scripted import scripted_backend_factory
from skillgrad_tui.tui.session import Session
from skillgrad_tui.tui.widgets.score_plot import render_score_plot

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "skills" / "suites" / "table-qa"
SIZE = (120, 40)
TREE_ORDER = [0, 1, 4, 5, 6, 2, 3]  # depth first: each candidate right under the version it came from

pytestmark = pytest.mark.anyio


def make_run(skill: Path, steps: int = 2) -> Path:
    """A finished optimiser run of `skill` (gate 'all', so every step keeps a version)."""
    config = Config(values={"optimize": {"steps": steps}})
    session = Session(skill, SUITE, config, scripted_backend_factory())
    run = session.new_run_dir(load_skill(skill).hash)
    session.optimize("all", run, sink=lambda e: None, cancel=None)
    return run


@pytest.fixture()
def run_dir(skill_dir: Path) -> Path:
    return make_run(skill_dir)


def make_app(skill_dir: Path, *, delay_s: float = 0.0) -> SkillgradApp:
    return SkillgradApp(skill_dir, SUITE, backend_factory=scripted_backend_factory(delay_s=delay_s),
                        config=Config(values={"optimize": {"steps": 1}}))


async def wait_for(pilot: Pilot[Any], cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


async def ready(pilot: Pilot[Any]) -> None:
    await wait_for(pilot, lambda: getattr(pilot.app, "suite", None) is not None)


def text_of(renderable: object, width: int = 200) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def notes(app: SkillgradApp) -> list[str]:
    return [n.message for n in app._notifications]


async def open_history(pilot: Pilot[Any]) -> HistoryScreen:
    await ready(pilot)
    await pilot.press("h")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, HistoryScreen)
    return screen


async def move_to(pilot: Pilot[Any], screen: HistoryScreen, version: int) -> None:
    """With the arrow keys, as a person would."""
    table = screen.query_one("#history-versions", DataTable)
    target = TREE_ORDER.index(version)
    while table.cursor_row != target:
        await pilot.press("down" if table.cursor_row < target else "up")
    assert screen.selected() is not None and screen.selected().version == version  # type: ignore[union-attr]


# -- lineage and plot (no app) ---------------------------------------------------------------------


def test_lineage_rows_put_each_candidate_under_its_parent(run_dir: Path) -> None:
    versions = list_versions(run_dir)
    rows = lineage_rows(versions)
    assert [v.version for _, v in rows] == TREE_ORDER
    assert [guide for guide, _ in rows] == ["", "├─ ", "│  ├─ ", "│  ├─ ", "│  └─ ", "├─ ", "└─ "]
    tree = lineage_tree(versions)
    assert [n["version"] for n in tree] == [0]
    assert [n["version"] for n in tree[0]["children"]] == [1, 2, 3]
    assert final_version(versions).version == 4  # type: ignore[union-attr]


def test_run_facts_add_up_the_steps(run_dir: Path) -> None:
    facts = run_facts(run_dir)
    assert facts.steps == 2 and facts.kept == [1, 4] and facts.final is not None and facts.final.version == 4
    assert facts.tokens > 0 and facts.reason == "steps" and facts.gate == "all"


def test_the_plot_has_axes_ticks_labels_and_a_marker_per_point() -> None:
    text = render_score_plot({"validation": [(0, 0.0), (1, 0.5), (2, 1.0)], "train loss": [(1, 1.0)]}, 40, 12).plain
    lines = text.split("\n")
    assert lines[0].startswith("1.00 ┤") and any(line.startswith("0.00 ┤") for line in lines)
    assert any(line.startswith("0.50 ┤") for line in lines)
    assert text.count("●") == 4  # three points and the legend's marker
    plot_rows = [line for line in lines if "┤" in line or "│" in line]
    assert plot_rows[-1].index("●") < plot_rows[0].index("●")  # 0.0 at step 0 is left of 1.0 at step 2
    assert "×" in plot_rows[0]  # the train loss of 1.0 sits on the top row
    assert lines[-2].split() == ["step", "0", "1", "2"] and "validation" in lines[-1] and "train loss" in lines[-1]


# -- header ----------------------------------------------------------------------------------------


def test_header_names_the_model_and_its_device_before_the_first_load(skill_dir: Path) -> None:
    session = Session(skill_dir, SUITE, Config())  # the real factory: nothing loads until used
    assert session.device() in ("CPU", "GPU")
    assert session.model_summary() == f"gemma3-270m · {session.device()}"


def test_header_names_the_server_when_one_answers(skill_dir: Path) -> None:
    session = Session(skill_dir, SUITE, Config(values={"server": {"url": "http://127.0.0.1:8080/v1"}}))
    assert session.device() == "server"
    assert "server http://127.0.0.1:8080/v1" in session.model_summary()


class _FakeBackend:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_set_model_closes_the_old_backends_and_rebuilds_the_factory(skill_dir: Path) -> None:
    session = Session(skill_dir, SUITE, Config())
    old_factory, old = session.backend_factory, _FakeBackend()
    session._backends["task"] = old  # type: ignore[assignment]
    session.set_model("smollm2-135m")
    assert old.closed and session._backends == {} and session.backend_factory is not old_factory
    assert session.model == "smollm2-135m" and session.model_summary().startswith("smollm2-135m")
    key = getattr(session.backend_factory, "key")
    assert "smollm2" in key("task")


# -- pickers ---------------------------------------------------------------------------------------


async def test_steps_and_batch_size_are_picked_by_keyboard(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("n")  # steps: type a number
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("tab", "3", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen))
        assert app.session.optimize_options("all", None).steps == 3
        await pilot.press("b")  # batch size: pick from the list (1, 2, 4, ...)
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("home", "down", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen))
        assert app.session.optimize_options("all", None).batch_size == 2
        await pilot.press("n")  # a value the config refuses is named, not applied
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("tab", "0", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen))
        assert app.session.config.get("optimize", "steps") == 3
        assert notes(app)[-1] == "skillgrad.toml: 'optimize.steps' must be >= 1, got 0"


async def test_suite_and_split_are_picked_and_the_suite_reloads(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    other = REPO / "skills" / "suites" / "row-count"
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("S")  # split: the WTQ suite's data/*.tsv
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        assert [v for v, _ in app.screen.choices] == ["", "training"]  # type: ignore[attr-defined]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.suite is not None and not isinstance(app.screen, ChoiceScreen))
        assert app.session.config.get("suite", "split") == "training" and app.suite.source_split == "training"
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("tab", *str(other), "enter")
        await wait_for(pilot, lambda: app.suite is not None and app.suite.name == "row-count")
        assert app.session.suite_path == other.resolve()
        assert app.session.config.get("suite", "split") == ""  # the old suite's split means nothing here
        assert "suite row-count" in app.sub_title


async def test_model_is_picked_and_the_session_switches(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        names = [v for v, _ in app.screen.choices]  # type: ignore[attr-defined]
        assert "gemma3-270m" in names and "smollm2-135m" in names
        app.session.backend("task")  # a backend is cached: the switch must drop it
        await pilot.press("home")
        while app.screen.query_one("#choice-list", OptionList).highlighted != names.index("smollm2-135m"):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.model == "smollm2-135m")
        assert app.session._backends == {} and "smollm2-135m" in app.sub_title
        await pilot.press("m")  # a typed name that is neither listed nor a file is refused
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("tab", *"nope", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen))
        assert app.session.model == "smollm2-135m" and "no such model: nope" in notes(app)[-1]


async def test_pickers_are_refused_while_a_run_is_running(skill_dir: Path) -> None:
    app = make_app(skill_dir, delay_s=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("v")
        await wait_for(pilot, lambda: app.running)
        for key in ("m", "s", "n", "b"):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, ChoiceScreen), key
        assert sum("a run is in progress" in n for n in notes(app)) == 4
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.running)


# -- history ---------------------------------------------------------------------------------------


async def test_history_shows_the_lineage_and_the_scores_per_step(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot)
        table = screen.query_one("#history-versions", DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == [
            "v0", "├─ v1", "│  ├─ v4", "│  ├─ v5", "│  └─ v6", "├─ v2", "└─ v3"]
        assert "on disk" in str(table.get_row(str(4))[-1]) and "best" in str(table.get_row("0")[-1])
        plot = text_of(screen.query_one("#history-plot", Static).content)
        assert "1.00 ┤" in plot and "validation" in plot and "train loss" in plot
        title = text_of(screen.query_one("#history-title", Static).content)
        assert run_dir.name in title and "2 step(s)" in title
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HistoryScreen))


async def test_history_of_the_run_in_progress_follows_it(skill_dir: Path) -> None:
    # Slow enough (0.2 s a model call, dozens a step) that the history opens before step 1 ends.
    app = SkillgradApp(skill_dir, SUITE, backend_factory=scripted_backend_factory(delay_s=0.2),
                       config=Config(values={"optimize": {"steps": 2}}))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.gate = "all"
        await pilot.press("r")
        await wait_for(pilot, lambda: app.run_dir is not None and (app.run_dir / "versions.json").is_file())
        screen = await open_history(pilot)
        assert screen.run_dir == app.run_dir and screen.report is not None
        before = len(screen.report.steps)
        assert before < 2 and app.running  # opened mid-run, so there is something to follow
        await pilot.press("space")  # mark the seed: the mark must survive the reloads
        await wait_for(pilot, lambda: not app.running, timeout=120)
        await pilot.pause()
        assert screen.report is not None and len(screen.report.steps) == 2
        title = text_of(screen.query_one("#history-title", Static).content)
        assert "2 step(s)" in title and "stopped by steps" in title
        table = screen.query_one("#history-versions", DataTable)
        assert table.row_count == len(screen.report.versions) > 1
        assert screen.marked == 0 and "A" in str(table.get_row("0")[-1])


async def test_history_from_the_palette(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"history")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))


def test_palette_finds_each_workbench_word(skill_dir: Path) -> None:
    from textual.fuzzy import Matcher

    app = make_app(skill_dir)
    commands = app.palette_commands()
    for word in ("model", "suite", "split", "steps", "batch", "history", "rollback", "compare", "export"):
        matcher = Matcher(word)
        best = max(commands, key=lambda c: matcher.match(c.name))  # the palette's first hit
        assert word in best.name.lower(), (word, best.name)


async def test_diff_between_any_two_versions(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot)
        await move_to(pilot, screen, 2)
        await pilot.press("space")  # A = v2 (a sibling branch)
        assert screen.marked == 2
        await move_to(pilot, screen, 6)
        await pilot.press("d")
        assert screen.diffed == (2, 6)
        shown = text_of(screen.query_one("#history-diff", Static).content)
        assert "v2 → v6: 1 file(s) differ" in shown and "SKILL.md" in shown
        await pilot.press("space")  # space elsewhere moves the mark
        assert screen.marked == 6
        await pilot.press("space")  # and on the marked one removes it: d then diffs against the parent
        assert screen.marked is None
        await move_to(pilot, screen, 1)
        await pilot.press("d")
        assert screen.diffed == (0, 1)


async def test_rollback_asks_then_restores_the_files(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_history(pilot)
        before = load_skill(skill_dir).hash
        await move_to(pilot, screen, 2)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # declined: nothing changes
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        assert load_skill(skill_dir).hash == before
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: load_skill(skill_dir).hash != before)
        wanted = version_files(run_dir, 2)
        on_disk = load_skill(skill_dir)
        assert on_disk.hash == list_versions(run_dir)[2].skill_hash
        assert (skill_dir / "SKILL.md").read_bytes() == wanted["SKILL.md"]
        assert any((run_dir / "set-aside").iterdir())  # what it overwrote is kept
        assert app.skill is not None and app.skill.hash == on_disk.hash
        table = screen.query_one("#history-versions", DataTable)
        await wait_for(pilot, lambda: "on disk" in str(table.get_row("2")[-1]))


async def test_rollback_is_refused_while_a_run_is_running(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir, delay_s=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = load_skill(skill_dir).hash
        await pilot.press("v")
        await wait_for(pilot, lambda: app.running)
        screen = await open_history(pilot)
        await move_to(pilot, screen, 2)
        await pilot.press("b")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("a rollback waits" in n for n in notes(app))
        assert app.rollback_to(run_dir, 2) is False  # the direct call is refused too
        assert load_skill(skill_dir).hash == before
        app.action_cancel()
        await wait_for(pilot, lambda: not app.running)


async def test_export_from_the_history_writes_three_files(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_history(pilot)
        await pilot.press("e")
        out = run_dir / "export"
        await wait_for(pilot, lambda: (out / "report.html").is_file())
        assert sorted(p.name for p in out.iterdir()) == ["report.html", "run.json", "versions.csv"]
        assert "<svg" in (out / "report.html").read_text() and any(str(out) in n for n in notes(app))


# -- compare ---------------------------------------------------------------------------------------


async def test_compare_two_runs_side_by_side(run_dir: Path, skill_dir: Path) -> None:
    second = make_run(skill_dir, steps=1)  # starts from the skill the first run left
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        first_pick = app.screen.choices[0][0]  # type: ignore[attr-defined]
        await pilot.press("enter")  # run A: the newest
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen) and len(app.screen.choices) == 1)
        await pilot.press("enter")  # run B: the other one
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        assert isinstance(screen, CompareScreen) and {screen.run_a, screen.run_b} == {run_dir, second}
        assert str(screen.run_a) == first_pick
        body = text_of(screen.query_one("#compare-body", Static).content)
        for row in ("steps", "tokens", "kept versions", "final skill", "seed val score"):
            assert row in body
        assert run_dir.name in body and second.name in body
        assert "final skills, A v" in body and "SKILL.md" in body  # the final skills differ
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))


async def test_compare_needs_two_runs(run_dir: Path, skill_dir: Path) -> None:
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceScreen)
        assert any("needs two optimiser runs" in n for n in notes(app))


async def test_help_lists_the_workbench_keys_and_every_binding_has_an_id(skill_dir: Path) -> None:
    for screen in (HistoryScreen, CompareScreen, ChoiceScreen, ConfirmScreen):
        for binding in screen.BINDINGS:
            assert getattr(binding, "id", None), binding
    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        sections = dict(app.screen.sections)  # type: ignore[attr-defined]
        assert {b.description for b in sections["Main screen"]} >= {"History", "Model", "Suite", "Split", "Steps",
                                                                     "Batch size", "Compare runs", "Export run"}
        assert {b.description for b in sections["History"]} >= {"Mark A", "Diff", "Roll back", "Export", "Compare"}


async def test_the_palette_offers_each_word_first(skill_dir: Path) -> None:
    from textual.command import CommandList

    app = make_app(skill_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for word in ("model", "suite", "split", "steps", "batch", "history", "rollback", "compare", "export"):
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*word)
            commands = app.screen.query_one(CommandList)
            await wait_for(pilot, lambda: commands.option_count > 0)
            await pilot.pause(0.2)
            first = str(commands.get_option_at_index(0).prompt)
            assert word in first.lower(), (word, first)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, CommandPalette))


async def test_a_suite_without_named_splits_says_so_and_no_run_means_no_history(skill_dir: Path) -> None:
    app = make_app(skill_dir)
    app.session.set_suite(REPO / "skills" / "suites" / "row-count")  # JSONL: no data/*.tsv
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("S")
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceScreen) and "no named splits" in notes(app)[-1]
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, HistoryScreen) and "no optimiser run" in notes(app)[-1]
