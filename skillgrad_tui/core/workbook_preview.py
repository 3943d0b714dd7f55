"""A compact text view of a workbook for the model: sheets, sizes and the top-left cells.

Formulas are shown as written (`=SUM(A1:A3)`), because what a cell computes is part of what the
model must understand to edit it.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter


def preview_workbook(path: Path, max_rows: int = 12, max_cols: int = 12, max_sheets: int = 4,
                     max_cell_chars: int = 24) -> str:
    wb = load_workbook(path, data_only=False, read_only=True)
    try:
        out: list[str] = []
        for ws in wb.worksheets[:max_sheets]:
            n_rows, n_cols = ws.max_row or 0, ws.max_column or 0
            out.append(f"Sheet '{ws.title}' ({n_rows} rows x {n_cols} columns)")
            cols = min(n_cols, max_cols)
            if cols == 0:
                out.append("  (empty)")
                continue
            out.append("    | " + " | ".join(get_column_letter(c) for c in range(1, cols + 1)))
            for r, row in enumerate(ws.iter_rows(min_row=1, max_row=min(n_rows, max_rows),
                                                 max_col=cols, values_only=True), start=1):
                cells = ["" if v is None else str(v).replace("\n", " ")[:max_cell_chars] for v in row]
                out.append(f"{r:>3} | " + " | ".join(cells))
            if n_rows > max_rows or n_cols > max_cols:
                out.append(f"  [showing {min(n_rows, max_rows)} of {n_rows} rows, "
                           f"{cols} of {n_cols} columns]")
        if len(wb.worksheets) > max_sheets:
            out.append(f"[{len(wb.worksheets) - max_sheets} more sheets not shown]")
        return "\n".join(out)
    finally:
        wb.close()
