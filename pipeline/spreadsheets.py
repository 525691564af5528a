"""Spreadsheets for the finance team: ``budget-<quarter>.xlsx`` and ``flags.xlsx`` (openpyxl).

One sheet per table, the header row frozen and bold, amounts in a money format (two decimals,
thousands separated), probabilities and ratios as percentages, columns sized to their content.
Text cells are always written as text: a team or tag name starting with ``=`` is shown, never run
as a formula. The values are the tables' own, unrounded (the format rounds what is displayed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pipeline.tables import NOT_MONEY, is_money

MONEY = "#,##0.00"
PERCENT = "0.0%"
HEADER_FILL = "DCE3EE"


def _sheet_name(name: str) -> str:
    bad = set("[]:*?/\\")
    return "".join("_" if c in bad else c for c in name)[:31] or "sheet"


def write_workbook(sheets: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """One sheet per table of ``sheets`` (name -> frame), written to a temporary name and renamed."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    for name, df in sheets.items():
        ws = wb.create_sheet(_sheet_name(name))
        cols = list(df.columns)
        ws.append(cols)
        for c in ws[1]:
            c.font = Font(bold=True)
            c.fill = PatternFill("solid", fgColor=HEADER_FILL)
        fmt = {
            j: MONEY if is_money(df, col) else PERCENT if col in NOT_MONEY else None
            for j, col in enumerate(cols)
        }
        for r, row in enumerate(df.itertuples(index=False), start=2):
            for j, v in enumerate(row):
                cell = ws.cell(row=r, column=j + 1)
                if isinstance(v, float) and not math.isfinite(v):
                    continue  # an empty cell, not NaN
                if isinstance(v, pd.Timestamp):
                    v = v.to_pydatetime()
                elif hasattr(v, "item") and not isinstance(v, str):
                    v = v.item()  # numpy scalars
                cell.value = v
                if isinstance(v, str):
                    cell.data_type = "s"  # text stays text: never a formula
                elif fmt[j] and isinstance(v, (int, float)):
                    cell.number_format = fmt[j]
        ws.freeze_panes = "A2"
        for j, col in enumerate(cols, start=1):
            width = max(
                [len(str(col))]
                + [
                    len(f"{v:,.2f}") if isinstance(v, float) and math.isfinite(v) else len(str(v))
                    for v in df.iloc[:, j - 1].head(200)
                ]
            )
            ws.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 8), 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    wb.save(tmp)
    tmp.replace(path)
    return path
