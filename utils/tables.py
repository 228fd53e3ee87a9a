"""The one way numbers become tables: a formatter, Markdown and CSV writers.

Used by the per-run summaries (utils/cli.py), the paper's comparison tables (paper/tables.py) and
the classic baselines (baselines.py); ``strict_json`` writes the per-image records.  Markdown
cells are escaped (``|`` and newlines), so a file or method name can never break a table; CSV
goes through the csv module.
"""
from __future__ import annotations

import csv
import io
import json
import math

MISSING = "—"        # a result that does not exist yet


def fmt(value, column: str = "", spec: str | None = None, missing: str = "") -> str:
    """One number format for every table: SSIM columns with 4 decimals, iteration counts and
    integers as integers, seconds with 1 decimal, losses with 3 significant digits, every other
    number with 2 (``spec`` forces a format); None and NaN read ``missing``; anything else as
    it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if spec is not None:
        return format(value, spec)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if column.endswith("ssim") or "ssim_" in column:
        return f"{value:.4f}"
    if column.endswith("iteration") or column.endswith("iterations") or isinstance(value, int):
        return f"{value:.0f}"
    if column.endswith("seconds"):
        return f"{value:.1f}"
    if column.endswith("loss"):          # a mean squared error: 0.00774 (or 5.00e-05), not 0.01
        return f"{value:#.3g}"     # 3 significant digits, trailing zeros kept: 0.0100
    return f"{value:.2f}"


def cell(value) -> str:
    """A Markdown table cell: ``|`` escaped, line breaks folded into spaces."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def markdown(header, rows) -> list[str]:
    """Lines of a Markdown table (cells escaped)."""
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]


def key_value(pairs) -> list[str]:
    """A two-column header table of (name, value) pairs (device, torch, command, ...)."""
    return markdown(["", ""], pairs)


def csv_text(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def csv_number(value) -> str:
    """A number in a CSV file: 4 decimals, empty where missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else f"{value:.4f}"


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:   # numpy / torch scalars
        return _finite(obj.item())
    return str(obj)


def strict_json(obj) -> str:
    """Strict JSON (RFC 8259) of a record, indented: NaN and ±Infinity become ``null`` (Python's
    json writes them as bare NaN/Infinity, which other readers refuse); other objects their
    ``str``."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n"
