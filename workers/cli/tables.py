"""Plain-text tables and figures for the terminal, and JSON for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def figure(value: float | None, digits: int = 4) -> str:
    """A statistic for a table cell: ``digits`` significant digits, ``-`` when undefined."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def moment(value: datetime | None) -> str:
    """A time for a table cell, UTC to the second (a naive time is UTC already)."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, a rule under the headers."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row]
                                           for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str)
