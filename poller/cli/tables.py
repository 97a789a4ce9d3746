"""Aligned text tables and the cell formats ``poller status`` prints."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Column", "field", "moment", "natural", "table", "yes"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its title, its cell for a row, and whether it aligns right (numbers)."""

    title: str
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False


def table(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rows under a header, each column as wide as its widest cell, two spaces apart."""
    cells = [[column.title for column in columns]]
    cells += [[str(column.cell(row)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        "  ".join(
            cell.rjust(width) if column.right else cell.ljust(width)
            for cell, width, column in zip(line, widths, columns, strict=True)
        ).rstrip()
        for line in cells
    ]


def yes(flag: Any) -> str:
    return "-" if flag is None else ("yes" if flag else "no")


def moment(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DIGITS = re.compile(r"^(.*?)(\d+)$")


def natural(name: str) -> tuple[str, int]:
    """Sorts ``topic-2`` before ``topic-10`` (shard ids are zero-padded already)."""
    match = _DIGITS.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def field(item: Mapping[str, Any] | None, key: str) -> str:
    return "-" if item is None or item.get(key) is None else str(item[key])
