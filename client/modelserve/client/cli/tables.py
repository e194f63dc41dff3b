"""The CLI's tables (pure): chosen columns for the answers people list (models, servers,
API keys, jobs, active versions), every scalar field for any other list, and a
field/value table for one answer. Plain text in aligned columns: no colour, no box
characters, so that a table pasted into an issue still reads."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

# A cell longer than this ends in an ellipsis (a server's message can run on).
WIDEST = 60
NONE = "-"

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], Any]]


def _field(name: str) -> Callable[[Row], Any]:
    return lambda row: row.get(name)


def _replicas(row: Row) -> str:
    return f"{row.get('ready_replicas', 0)}/{row.get('replicas', 0)}"


def _progress(row: Row) -> str:
    progress = row.get("progress") or {}
    done, total = progress.get("done", row.get("done")), progress.get("total", row.get("total"))
    return f"{done}/{total}" if total is not None else NONE


def _size(row: Row) -> str:
    size = row.get("size")
    if not isinstance(size, int):
        return NONE
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _servers(row: Row) -> str:
    return ", ".join(server.get("name", "?") for server in row.get("servers") or []) or NONE


# Columns by the command that lists (`args.command`, with the action for `keys`/`jobs`).
COLUMNS: dict[str, list[Column]] = {
    "models": [
        ("ID", _field("id")),
        ("NAME", _field("name")),
        ("ORIGIN", _field("origin")),
        ("FORMAT", _field("format")),
        ("SIZE", _size),
        ("TAGS", lambda row: ",".join(row.get("tags") or []) or NONE),
    ],
    "status": [
        ("SERVER ID", _field("server_id")),
        ("NAME", _field("name")),
        ("MODEL", _field("model")),
        ("RUNTIME", _field("runtime")),
        ("READY", _replicas),
        ("STATUS", _field("status")),
        ("MESSAGE", _field("message")),
    ],
    "keys list": [
        ("ID", _field("id")),
        ("NAME", _field("name")),
        ("CREATED", _field("created_at")),
        ("EXPIRES", _field("expires_at")),
    ],
    "jobs list": [
        ("ID", _field("id")),
        ("TYPE", _field("type")),
        ("MODEL", _field("model")),
        ("STATUS", _field("status")),
        ("DONE", _progress),
        ("FAILED", _field("failed")),
        ("CREATED", _field("created_at")),
    ],
    "active": [
        ("NAME", _field("name")),
        ("ACTIVE VERSION", _field("id")),
        ("SET BY", _field("set_by")),
        ("SET AT", _field("set_at")),
        ("SERVERS", _servers),
    ],
    "history": [
        ("AT", _field("at")),
        ("NAME", _field("name")),
        ("FROM", _field("from_id")),
        ("TO", _field("to_id")),
        ("ACTION", _field("action")),
        ("BY", _field("actor")),
        ("REASON", _field("reason")),
    ],
}


def moment(text: str) -> str | None:
    """An ISO 8601 time with its zone (as the API writes them) in UTC to the second,
    `2026-12-06 19:45:02`; None for any other text."""
    if len(text) < 19 or text[10] != "T":
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    """One value as a cell: `-` for nothing, a time in UTC to the second, compact JSON for
    lists and objects, one line at most WIDEST characters."""
    if value is None or value == "":
        text = NONE
    elif isinstance(value, str) and moment(value) is not None:
        text = moment(value) or value
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), default=str)
    text = " ".join(text.split())
    return text if len(text) <= WIDEST else text[: WIDEST - 1] + "…"


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """`rows` under `headers`, each column as wide as its widest cell, two spaces apart."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(text)) for width, text in zip(widths, row, strict=True)]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def _plain(answer: Any) -> Any:
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json")
    if isinstance(answer, list | tuple):
        return [_plain(item) for item in answer]
    return answer


def listing(kind: str, items: Sequence[Row]) -> str:
    """A table of `items`: the columns of `kind` when it has some, else every field whose
    value is a scalar in the first item. No items: the headers and `(none)`."""
    columns = COLUMNS.get(kind)
    if columns is None:
        first = items[0] if items else {}
        names = [key for key, value in first.items() if not isinstance(value, dict | list)]
        columns = [(name.upper(), _field(name)) for name in names]
    headers = [header for header, _ in columns]
    rows = [[cell(read(item)) for _, read in columns] for item in items]
    table = aligned(headers, rows) if headers else ""
    return f"{table}\n(none)".lstrip("\n") if not items else table


def fields(item: Row) -> str:
    """One answer as a two-column table: each field and its value."""
    return aligned(["FIELD", "VALUE"], [[key, cell(value)] for key, value in item.items()])


def table(kind: str, answer: Any) -> str:
    """`answer` (a model, a list of them, or their JSON) as a table."""
    plain = _plain(answer)
    if isinstance(plain, list):
        rows = [item if isinstance(item, dict) else {"value": item} for item in plain]
        return listing(kind, rows)
    if isinstance(plain, dict):
        return fields(plain)
    return cell(plain)
