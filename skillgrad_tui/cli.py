"""`skillgrad`: the headless CLI and the entry point of the terminal app.

Every command turns a SkillgradError into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from skillgrad_tui.commands import optimize as optimize_cmd
from skillgrad_tui.config import CLI_OVERRIDES, parse_n_ctx
from skillgrad_tui.core.errors import SkillgradError

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}
_COMMANDS.update(optimize_cmd.HANDLERS)  # optimize, history, rollback, recover


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = fn
        return fn
    return register


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="skillgrad.toml to use (default: beside the skill, "
                   "then the user config directory)")


def _model_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name from `skillgrad models`, or a GGUF path")
    p.add_argument("--no-cache", action="store_true", help="bypass the response cache")
    p.add_argument("--n-ctx", type=parse_n_ctx, help="context size in tokens; 0 or 'auto' (default): the model's "
                   "trained context, capped by available memory; overrides [model] n_ctx")


def build_parser() -> argparse.ArgumentParser:
    from skillgrad_tui import __version__

    parser = argparse.ArgumentParser(prog="skillgrad", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"skillgrad {__version__}")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("models", help="list the models SkillGrad can use")
    _common(p)
    p.add_argument("--model", action="append", type=Path, default=[], help="also describe this GGUF")
    p.add_argument("--json", action="store_true", help="print the list as JSON")

    p = sub.add_parser("init", help="write a commented skillgrad.toml where SkillGrad will find it")
    p.add_argument("skill", type=Path, nargs="?", default=Path("."),
                   help="the skill it is for: the file goes beside it, in its parent folder (default: .)")
    p.add_argument("--user", action="store_true", help="write the user-wide file instead")
    p.add_argument("--force", action="store_true", help="replace a skillgrad.toml that exists")

    p = sub.add_parser("export", help="export a run as JSON, CSV (one row per version) or a self-contained HTML report")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--format", choices=("json", "csv", "html"), default="html", help="default: html")
    p.add_argument("-o", "--out", type=Path, metavar="FILE", help="write here (default: standard output)")

    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="e.g. `skillgrad completion bash > "
                   "~/.local/share/bash-completion/completions/skillgrad`")

    p = sub.add_parser("grade", help="grade WikiTableQuestions predictions (official format)")
    p.add_argument("--suite", type=Path, required=True, help="the WikiTableQuestions folder (with data/)")
    p.add_argument("--split", required=True, help="the questions file's name without .tsv, e.g. "
                   "pristine-unseen-tables")
    p.add_argument("--predictions", type=Path, required=True, metavar="FILE",
                   help="one line per question: id<TAB>item<TAB>item... (what `eval --predictions` writes)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("eval", help="run the agent with a skill over a task suite and score it")
    _common(p)
    _model_opts(p)
    p.add_argument("skill", type=Path, help="skill folder, or 'none' for no skill")
    p.add_argument("--suite", type=Path, help="task suite folder or JSONL file (default: [suite] path, "
                   "else the suite bundled beside the skill)")
    p.add_argument("--split", help="the suite's own split (WTQ: TSV name) or train/val/test/all")
    p.add_argument("--limit", type=int, help="the first N tasks of the split only")
    p.add_argument("--seed", type=int, help="seed for the split and the model (default: config, 0)")
    p.add_argument("--run-dir", type=Path, help="where trajectories and the summary go "
                   "(default: <skill parent>/.skillgrad/evals/<time>-<skill hash>)")
    p.add_argument("--predictions", type=Path, metavar="FILE", help="also write the answers as a "
                   "WikiTableQuestions predictions file (id<TAB>item...), which `skillgrad grade` reads")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) at the end")

    optimize_cmd.add_parsers(sub, _common, _model_opts)

    p = sub.add_parser("tui", help="the terminal app (the default command)")
    _common(p)
    _model_opts(p)
    p.add_argument("skill", type=Path, nargs="?", default=Path("."), help="skill folder (default: .)")
    p.add_argument("--suite", type=Path, help="task suite folder or JSONL file (default: [suite] path, "
                   "else the suite bundled beside the skill)")
    p.add_argument("--watch", action="store_true", help="start with watch mode on")

    from skillgrad_tui.commands.watch_cmd import add_watch_arguments

    p = sub.add_parser("watch", help="re-evaluate a skill whenever its files change")
    _common(p)
    _model_opts(p)
    add_watch_arguments(p)
    return parser


@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from skillgrad_tui.config import load_config
    from skillgrad_tui.core.engine import discover_models

    config = load_config(explicit=args.config)
    found = discover_models(config.models, [p.expanduser() for p in args.model])
    runtime = config.engine_settings().models.runtime()
    if args.json:
        print(json.dumps([{**m.to_dict(), "device": runtime.device, "repack": runtime.repack}
                          for m in found], indent=2))
        return 0 if all(m.error is None for m in found) else 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Models (* = default)", show_lines=False)
    for col in ("name", "size", "chat", "ctx", "sha256", "source"):
        table.add_column(col, overflow="fold")
    default = config.get("model", "default")
    home = str(Path.home())
    for m in found:
        check = "[red]" + (m.error or "") + "[/]" if m.error else (
            "[green]verified[/]" if m.verified else "[yellow]mismatch[/]" if m.verified is False else "")
        name = f"{m.name} *" if m.name == default else m.name
        source = m.source.replace("embedded (package ", "package ").rstrip(")")
        table.add_row(name, f"{m.size / 1e6:.0f} MB", "yes" if m.chat_template else "no",
                      str(m.context_length or "?"), f"{(m.sha256 or '')[:12]} {check}".strip(),
                      f"{source}\n[dim]{str(m.path).replace(home, '~')}[/]")
    console = Console()
    console.print(table)
    console.print(f"runs on {runtime.device}: {runtime.why}; {runtime.repack_reason}", highlight=False)
    return 0 if all(m.error is None for m in found) else 1


@command("init")
def cmd_init(args: argparse.Namespace) -> int:
    from skillgrad_tui.config import CONFIG_NAME, commented_config, user_config_path
    from skillgrad_tui.core.file_write import write_file_atomically

    target = user_config_path() if args.user else args.skill.resolve().parent / CONFIG_NAME
    if not args.user and not (args.skill / "SKILL.md").is_file():
        raise SkillgradError(f"not a skill folder (no SKILL.md): {args.skill}; give the skill, or --user")
    if target.exists() and not args.force:
        raise SkillgradError("exists already; --force replaces it", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(target, commented_config().encode("utf-8"))
    print(f"wrote {target}: every key at its default, commented out; uncomment a line to change it")
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from skillgrad_tui.commands.optimize import _resolve_run
    from skillgrad_tui.core.file_write import write_file_atomically
    from skillgrad_tui.core.export import export_run

    text = export_run(_resolve_run(args.run), args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_file_atomically(args.out, text.encode("utf-8"))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


@command("completion")
def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


@command("grade")
def cmd_grade(args: argparse.Namespace) -> int:
    from skillgrad_tui.core.grading import grade_predictions

    report = grade_predictions(args.suite, args.split, args.predictions)
    for ex_id in report.unknown_ids[:5]:  # as the official evaluator does, one warning per id
        print(f'WARNING: Example ID "{ex_id}" not found in {args.split}', file=sys.stderr)
    if len(report.unknown_ids) > 5:
        print(f"WARNING: ... and {len(report.unknown_ids) - 5} more ids not found", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"accuracy {report.official_accuracy:.4f} ({report.correct}/{report.predicted} questions "
              "with a prediction; the official evaluator's figure)")
        if report.missing_ids:
            print(f"over the whole split: {report.correct}/{report.n} = {report.accuracy:.4f} "
                  f"({len(report.missing_ids)} questions without a prediction counted wrong)")
        if report.unknown_ids:
            print(f"{len(report.unknown_ids)} predictions for ids not in the split (ignored)")
    return 0


@command("tui")
def cmd_tui(args: argparse.Namespace) -> int:
    from skillgrad_tui.tui.app import run_app

    return run_app(args.skill, args.suite, args.config, args.model, args.no_cache, watch=args.watch)


@command("watch")
def cmd_watch(args: argparse.Namespace) -> int:
    from skillgrad_tui.commands.watch_cmd import watch_command

    return watch_command(args)


@command("eval")
def cmd_eval(args: argparse.Namespace) -> int:
    from skillgrad_tui.commands.eval_cmd import eval_command

    return eval_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["tui", *(argv or sys.argv[1:])])
    CLI_OVERRIDES.clear()
    CLI_OVERRIDES.update({"n_ctx": args.n_ctx} if getattr(args, "n_ctx", None) is not None else {})
    handler = _COMMANDS.get(args.command)
    if handler is None:
        parser.error(f"unknown command {args.command}")
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        # `skillgrad models --json | head -c 1`: the reader has gone, which is no error of ours.
        # Point stdout at /dev/null so that the interpreter's own flush at exit stays quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
    except SkillgradError as exc:
        print(f"skillgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skillgrad: interrupted; the skill on disk is unchanged or fully updated", file=sys.stderr)
        return 130
