"""MMRec layout: one ``<name>.inter`` TSV file with an ``x_label`` split column.

The header names the columns (``userID``, ``itemID`` and ``x_label`` are required; any
others, such as ``rating`` or ``timestamp``, are ignored). ``x_label`` is 0 for train,
1 for valid and 2 for test. Ids are non-negative integers; the user count is the
largest user id + 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.errors import DataFormatError
from training.data.interactions import SPLITS, RawInteractions, SplitPairs

REQUIRED = ("userID", "itemID", "x_label")


def inter_files(folder: Path) -> list[Path]:
    """The ``*.inter`` files in ``folder``, sorted by name."""
    return sorted(folder.glob("*.inter"))


def read_mmrec(folder: Path) -> RawInteractions:
    """Read the single ``*.inter`` file of ``folder``."""
    files = inter_files(folder)
    if len(files) != 1:
        found = ", ".join(path.name for path in files) or "none"
        raise DataFormatError(
            f"{folder}: found {len(files)} .inter files ({found}); the MMRec format needs "
            "exactly one <name>.inter"
        )
    path = files[0]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFormatError(f"{path.name}: cannot read the file ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path.name}: not UTF-8 text ({exc})") from exc
    rows = _parse(text, path.name)
    labels = rows[:, 2]
    splits = {
        split: SplitPairs(
            users=rows[labels == code, 0],
            items=rows[labels == code, 1],
            source=f"{path.name} (x_label {code}, {split})",
        )
        for code, split in enumerate(SPLITS)
    }
    return RawInteractions(splits=splits, shape=None)


def _parse(text: str, name: str) -> np.ndarray:
    """(n, 3) int64 array of userID, itemID, x_label, one row per data line."""
    lines = text.splitlines()
    header = lines[0].split("\t") if lines else []
    missing = [column for column in REQUIRED if column not in header]
    if missing or len(set(header)) != len(header):
        raise DataFormatError(
            f"{name}: malformed header {header!r}; expected tab-separated column names "
            f"including {', '.join(REQUIRED)} (missing: {', '.join(missing) or 'none'}), "
            "each once"
        )
    columns = [header.index(column) for column in REQUIRED]
    rows = np.empty((len(lines) - 1, 3), dtype=np.int64)
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataFormatError(
                f"{name}: line {number} has {len(fields)} field(s), expected {len(header)} "
                "(as in the header); is the file truncated?"
            )
        for out, column in enumerate(columns):
            rows[number - 2, out] = _integer(fields[column], REQUIRED[out], number, name)
    bad = ~np.isin(rows[:, 2], (0, 1, 2))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataFormatError(
            f"{name}: line {first + 2} has x_label {rows[first, 2]}; expected 0 (train), "
            "1 (valid) or 2 (test)"
        )
    return rows


def _integer(field: str, column: str, number: int, name: str) -> int:
    try:
        return int(field)
    except ValueError as exc:
        expected = "0, 1 or 2" if column == "x_label" else "an integer id"
        raise DataFormatError(
            f"{name}: line {number}: {column} {field!r} is not an integer; expected {expected}"
        ) from exc
