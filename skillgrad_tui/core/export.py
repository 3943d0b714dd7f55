"""A run, exported for people who were not at the terminal: JSON (everything, for scripts), CSV
(one row per version, for a spreadsheet) and one self-contained HTML file (no scripts, no network:
inline CSS and an SVG plot of the scores per step, openable from a mail attachment).

Read-only: built from the run's own files (events.jsonl, versions.json), never from the skill.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillgrad_tui.core.runlog import VersionRecord, list_versions, read_event_dicts

FORMATS = ("json", "csv", "html")
CSV_COLUMNS = ("version", "step", "parent", "kept", "val_score", "train_score", "minibatch", "chars",
               "skill_hash", "origin", "decision")


@dataclass(frozen=True)
class RunReport:
    run_dir: Path
    started: dict[str, Any]  # run_started's payload ({} when the log lacks it)
    finished: dict[str, Any]  # run_finished's payload ({} while the run has not ended)
    steps: list[dict[str, Any]]  # step_finished payloads, in order
    versions: list[VersionRecord]

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "run": self.started, "result": self.finished,
                "steps": self.steps, "versions": [v.to_dict() for v in self.versions]}


def load_report(run_dir: Path) -> RunReport:
    events = read_event_dicts(run_dir)  # RunError, naming the file, for a folder that is not a run
    started: dict[str, Any] = next((e for e in events if e.get("kind") == "run_started"), {})
    finished: dict[str, Any] = next((e for e in reversed(events) if e.get("kind") == "run_finished"), {})
    steps = [e for e in events if e.get("kind") == "step_finished"]
    return RunReport(Path(run_dir), started, finished, steps, list_versions(run_dir))


def to_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"


def to_csv(report: RunReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for v in report.versions:
        writer.writerow(v.to_dict())
    return out.getvalue()


def _plot(steps: list[dict[str, Any]], width: int = 560, height: int = 200) -> str:
    """An SVG line plot of the train loss and the validation score per step (both in [0, 1])."""
    if not steps:
        return "<p>No step has finished yet.</p>"
    pad = 32
    n = len(steps)
    x = [pad + (width - 2 * pad) * (i / max(n - 1, 1)) for i in range(n)]

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * max(0.0, min(1.0, v))

    def line(key: str, colour: str) -> str:
        pts = [(x[i], y(float(s[key]))) for i, s in enumerate(steps) if s.get(key) is not None]
        if not pts:
            return ""
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>' for a, b in pts)
        return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'

    axes = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
            f'<text x="4" y="{pad + 4}" font-size="11">1.0</text>'
            f'<text x="4" y="{height - pad + 4}" font-size="11">0.0</text>')
    labels = "".join(f'<text x="{x[i] - 4:.1f}" y="{height - pad + 16}" font-size="11">{s.get("step")}</text>'
                     for i, s in enumerate(steps))
    legend = (f'<text x="{width - 200}" y="16" font-size="12" fill="#c0392b">train loss</text>'
              f'<text x="{width - 110}" y="16" font-size="12" fill="#2471a3">validation</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="scores per step">{axes}{labels}{line("train_loss", "#c0392b")}'
            f'{line("val_score", "#2471a3")}{legend}</svg>')


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def to_html(report: RunReport) -> str:
    run = report.started
    result = report.finished
    title = f"SkillGrad run {run.get('run_id') or report.run_dir.name}"
    facts = [("skill", run.get("skill")), ("suite", run.get("suite")), ("seed skill", run.get("skill_hash")),
             ("stopped by", result.get("reason") or "not finished"),
             ("best version", result.get("best_version")), ("best score", result.get("best_score"))]
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in CSV_COLUMNS)
    body_rows = "".join(
        ("<tr class=\"kept\">" if v.kept else "<tr>")
        + "".join(f"<td>{_cell(v.to_dict().get(c))}</td>" for c in CSV_COLUMNS) + "</tr>"
        for v in report.versions)
    summary = html.escape(result.get("summary") or "")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
             "text-align:left;vertical-align:top;font-size:.9em}tr.kept td{background:#eaf7ea}"
             "th{background:#f4f4f4}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<table>{fact_rows}</table><p>{summary}</p><h2>Scores per step</h2>{_plot(report.steps)}"
            f"<h2>Versions</h2><p>Green rows were kept (became the skill).</p>"
            f"<table><tr>{head}</tr>{body_rows}</table></body></html>\n")


def export_run(run_dir: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    report = load_report(run_dir)
    return {"json": to_json, "csv": to_csv, "html": to_html}[fmt](report)


__all__ = ["FORMATS", "RunReport", "export_run", "load_report", "to_csv", "to_html", "to_json"]
