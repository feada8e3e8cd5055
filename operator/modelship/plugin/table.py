"""`list` and `get`'s table, pure: the CRD's own printer columns (`modelship.crd.PRINTER_COLUMNS`),
laid out the way `kubectl get modeldeployments` lays them out, so both print the same thing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from modelship.crd import PRINTER_COLUMNS

# kubectl's tab writer: every column but the last at least 6 wide, 3 spaces after the longest cell.
_MIN_WIDTH, _PADDING = 6, 3
EMPTY = ""  # kubectl's cell for a field the object does not have


def columns(wide: bool) -> list[dict[str, Any]]:
    """The printer columns shown: priority 0 ones, and with `-o wide` all of them."""
    every = cast(list[dict[str, Any]], PRINTER_COLUMNS)  # crd.py's literal dicts, typed loosely
    return [c for c in every if wide or not c.get("priority")]


def _at(obj: Any, json_path: str) -> Any:
    """The value at a simple JSONPath (`.status.rollout.canary.step`), None when absent."""
    for key in json_path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def age(delta: timedelta) -> str:
    """How kubectl prints an age: `45s`, `3m20s`, `15m`, `4h10m`, `30h`, `3d5h`, `12d`, `2y10d`."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400

    def two(big: int, unit: str, small: int, small_unit: str) -> str:
        return f"{big}{unit}" + (f"{small}{small_unit}" if small else "")

    if minutes < 10:
        return two(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return two(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return two(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return two(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _cell(obj: dict[str, Any], column: dict[str, Any], now: datetime) -> str:
    value = _at(obj, column["jsonPath"])
    if value is None:
        return EMPTY
    if column["type"] == "date":
        return age(now - datetime.fromisoformat(value))  # RFC 3339, `...Z`
    return str(value)


def rows(objs: Sequence[dict[str, Any]], wide: bool, all_namespaces: bool, now: datetime) -> list[list[str]]:
    """The header and one row per object, as the cells kubectl would print."""
    shown = columns(wide)
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c["name"].upper() for c in shown]
    body = [
        ([o["metadata"]["namespace"]] if all_namespaces else [])
        + [o["metadata"]["name"]]
        + [_cell(o, c, now) for c in shown]
        for o in objs
    ]
    return [header, *body]


def layout(table: list[list[str]]) -> str:
    """Aligned columns, as kubectl's tab writer aligns them (no trailing spaces)."""
    if not table:
        return ""
    widths = [max(_MIN_WIDTH, max(len(r[i]) for r in table) + _PADDING) for i in range(len(table[0]))]
    return "\n".join(
        "".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=False)) + r[-1] for r in table
    )
