"""Starting a run, resuming one from its state.json, and the seed evaluation that plans its steps."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from skillgrad_tui.core.agent import AgentSettings
from skillgrad_tui.core.errors import SkillgradError
from skillgrad_tui.core.evaluate import trajectory_file
from skillgrad_tui.core.events import RunStarted, ValidationScored, VersionSaved, Warning_
from skillgrad_tui.core.gate import GATES
from skillgrad_tui.core.optimize_options import PARENT_SELECTIONS, STATE_FORMAT, OptimizeOptions, plan_schedule
from skillgrad_tui.core.pool import new_account
from skillgrad_tui.core.records import Task
from skillgrad_tui.core.run_core import RunCore, mean_score, passed
from skillgrad_tui.core.run_state import RunState
from skillgrad_tui.core.runlog import RunError, RunLog, default_runs_root, unique_run_dir
from skillgrad_tui.core.skill_format import Skill, warning_summary
from skillgrad_tui.core.skill_load import load_skill
from skillgrad_tui.core.skill_store import recover, snapshot
from skillgrad_tui.core.suites.splits import select_split, split_tasks


class RunSetup(RunCore):
    """A new run's creation, a resumed run's checks, and the seed evaluation."""

    def splits(self) -> tuple[list[Task], list[Task]]:
        splits = split_tasks(self.suite.tasks, self.options.seed)
        try:
            train = select_split(splits, self.options.train_split)
            val = select_split(splits, self.options.val_split)
        except ValueError as exc:
            raise SkillgradError(str(exc), self.suite.root) from None
        return train, val

    def check_options(self, train: list[Task], val: list[Task]) -> None:
        o = self.options
        if o.gate not in GATES:
            raise SkillgradError(f"unknown gate {o.gate!r}; use one of {', '.join(GATES)}")
        if o.gate == "ask" and self.review is None:
            raise SkillgradError("the 'ask' gate needs a person to review each edit: use the TUI, "
                                 "or --gate validation / --gate all headless")
        if o.batch_size < 1 or (o.steps is not None and o.steps < 1) or (o.epochs is not None and o.epochs < 1):
            raise SkillgradError("batch size, steps and epochs must be at least 1")
        if o.candidates < 1 or o.val_repeats < 0 or not o.gate_k >= 0:
            raise SkillgradError("candidates must be at least 1, gate k at least 0 and validation repeats at least 0")
        if o.parent_selection not in PARENT_SELECTIONS:
            raise SkillgradError(f"unknown parent selection {o.parent_selection!r}; use one of "
                                 f"{', '.join(PARENT_SELECTIONS)}")
        if not train:
            raise SkillgradError(f"the suite has no tasks in the {o.train_split!r} split", self.suite.root)
        if o.gate == "validation" and not val:
            raise SkillgradError(f"the validation gate needs tasks in the {o.val_split!r} split, and the suite "
                                 "has none (use a bigger suite, or --gate all)", self.suite.root)

    def start(self) -> None:
        o = self.options
        train, val = self.splits()
        self.check_options(train, val)
        skill = load_skill(self.skill_root)
        run_dir = o.run_dir
        if run_dir is None:
            run_dir = unique_run_dir(default_runs_root(self.skill_root), skill.hash)
        self.log = RunLog(run_dir, create=True)
        if self.lock is not None:
            self.lock.set_run_id(self.log.run_dir.name)
        self.state = {
            "format": STATE_FORMAT, "run_id": self.log.run_dir.name, "skill_root": str(self.skill_root),
            "suite": {"name": self.suite.name, "root": str(self.suite.root), "format": self.suite.format,
                      "source_split": self.suite.source_split},
            "options": o.to_dict(), "agent": asdict(self.agent_settings),
            "status": "running", "reason": None, "phase": "seed", "step": 1, "stage": "forward",
            "current": 0, "current_val": None, "schedule": None, "streak": 0, "last_fail": {},
            "train_stats": {}, "tokens": {"prompt": 0, "completion": 0}, "seconds": 0.0,
            "memory": None, "pending": None, "val_tasks": {}, "account": new_account(), "steps_done": 0,
            "kept_versions": [],
        }
        self.log.write_state(self.state)  # the commit point of the run's creation: resumable from here
        self.save_seed_version(skill)
        self.emit(RunStarted(run_id=self.log.run_dir.name, skill=str(self.skill_root), suite=self.suite.name,
                             skill_hash=skill.hash, settings=self.settings(train, val, resumed=False)))
        if (summary := warning_summary(skill.problems)):
            self.emit(Warning_(message=summary))

    def save_seed_version(self, skill: Skill) -> None:
        """Version 0, the skill as the run found it (idempotent: a resumed run may redo it)."""
        assert self.log is not None
        if not self.log.versions():
            self.log.save_version(snapshot(skill), skill.root.name, step=0, parent=None, kept=True)

    def resume(self, run_dir: Path) -> None:
        self.log = RunLog(run_dir)
        state = self.log.read_state()
        if state is None:
            raise RunError("cannot resume: no state.json (the run was stopped while being created); "
                           "start a new run", run_dir)
        if state.get("format") != STATE_FORMAT:
            raise RunError(f"cannot resume: state.json has format {state.get('format')!r}, "
                           f"this version reads {STATE_FORMAT}", run_dir)
        self.state = cast(RunState, state)  # state.json in this STATE_FORMAT
        saved = OptimizeOptions.from_dict(state["options"])
        # Everything that shapes the run comes from the run; budgets are the new session's.
        saved.token_budget, saved.time_budget_s = self.options.token_budget, self.options.time_budget_s
        saved.git_commit = saved.git_commit or self.options.git_commit
        saved.resume, saved.run_dir = Path(run_dir), self.log.run_dir
        self.options = saved
        self.agent_settings = AgentSettings(**state["agent"])
        self.before_session = (state["tokens"]["prompt"] + state["tokens"]["completion"], state["seconds"])
        if Path(state["skill_root"]) != self.skill_root:
            self.emit(Warning_(message=f"the run optimised {state['skill_root']}; continuing on {self.skill_root}"))
        recovered = recover(self.skill_root)  # finish our own patch write if the kill interrupted it
        if recovered:
            self.emit(Warning_(message=f"recovery: {recovered}"))
        if state["status"] != "running":
            return
        train, val = self.splits()
        self.check_options(train, val)
        known = {t.id for t in self.suite.tasks}
        missing = sorted({i for batch in state.get("schedule") or [] for i in batch} - known)
        if missing:
            raise RunError(f"the suite given is not the run's suite: task {missing[0]!r} is missing "
                           f"(the run used {state['suite']['root']})", self.suite.root)
        skill = load_skill(self.skill_root)
        self.save_seed_version(skill)
        self.emit(RunStarted(run_id=self.log.run_dir.name, skill=str(self.skill_root), suite=self.suite.name,
                             skill_hash=skill.hash, settings=self.settings(train, val, resumed=True)))
        where = "seed evaluation" if state["phase"] == "seed" else f"step {state['step']} ({state['stage']})"
        self.emit(Warning_(message=f"resuming at {where}"))

    def settings(self, train: list[Task], val: list[Task], *, resumed: bool) -> dict[str, Any]:
        o = self.options
        schedule = self.state.get("schedule")
        if schedule is not None:
            planned = len(schedule)
        else:  # an estimate until the seed evaluation says how many tasks fail
            per_epoch = math.ceil(len(train) / o.batch_size)
            planned = per_epoch * (o.epochs or 1)
            planned = min(planned, o.steps) if o.steps is not None else planned
        return {**o.to_dict(), "agent": asdict(self.agent_settings), "planned_steps": planned,
                "sandbox": self.sandbox_mode(),
                "n_train": len(train), "n_val": len(val), "suite_path": str(self.suite.root),
                "suite_format": self.suite.format, "suite_split": self.suite.source_split,
                "task_model": self.task_backend.model_id, "optimizer_model": self.opt.model_id,
                "run_dir": str(self.log.run_dir) if self.log else None, "resumed": resumed}

    def sandbox_mode(self) -> str | None:
        """How agent-written scripts will be confined (None when this run's tasks run none)."""
        from skillgrad_tui.core.sandbox import choose_mode, describe

        if self.agent_settings.mode != "tools" and not any(t.kind == "spreadsheet" for t in self.suite.tasks):
            return None
        return describe(choose_mode())

    def seed_phase(self, train: list[Task], val: list[Task]) -> None:
        assert self.log is not None
        st = self.state
        skill = self.user_skill(st["current"])
        last_fail = dict(st["last_fail"])
        stats = dict(st["train_stats"])
        if self.options.failures_only:
            res = self.run_eval(skill, train, "train", 0, "seed")
            pool = [t.task_id for t in res.trajectories if not passed(t)]
            for t in res.trajectories:
                if not passed(t):
                    last_fail[t.task_id] = self.rel(trajectory_file(self.log.traj_dir("seed", "train"), t.task_id))
            stats[str(st["current"])] = [mean_score(res.trajectories) * res.n, res.n]
            if not pool and skill.format_violations():  # still a defect to repair: one plain step for it
                pool = [t.task_id for t in res.trajectories]
            elif not pool:
                self.emit(Warning_(message="the seed skill passes every training task: nothing to train on"))
        else:
            pool = [t.id for t in train]
        val_score = None
        val_tasks = dict(st["val_tasks"])
        if val:
            scores = self.validate(skill, val, 0, "seed")
            val_score = sum(scores.values()) / len(scores)
            val_tasks[str(st["current"])] = scores
            self.emit(ValidationScored(step=0, skill_hash=skill.hash, score=val_score, n=len(scores)))
        rec = self.log.update_version(st["current"], val_score=val_score,
                                      train_score=(stats[str(st["current"])][0] / stats[str(st["current"])][1])
                                      if str(st["current"]) in stats else None)
        self.emit(VersionSaved(version=rec.version, skill_hash=rec.skill_hash, step=0, val_score=val_score,
                               train_score=rec.train_score, chars=rec.chars))
        self.commit(phase="steps", schedule=plan_schedule(pool, self.options), current_val=val_score,
                    last_fail=last_fail, train_stats=stats, val_tasks=val_tasks)
