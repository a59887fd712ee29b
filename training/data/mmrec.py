"""MMRec layout: one ``<name>.inter`` TSV file with an ``x_label`` split column.

The header names the columns (``userID``, ``itemID`` and ``x_label`` are required; any
others, such as ``rating`` or ``timestamp``, are ignored). ``x_label`` is 0 for train,
1 for valid and 2 for test. Ids are non-negative integers; the user count is the
largest user id + 1.

The file is parsed by pyarrow's multi-threaded CSV reader. When that reader refuses the
file (a short line, a field that is not an integer), the line-by-line parser reads it
again to say exactly which line is wrong, so a bad file gets the same precise error
either way (and the rare field only Python's ``int`` accepts, such as ``+1``, loads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

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
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path.name}: cannot read the file ({exc})") from exc
    rows = _parse(data, path.name)
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


def _parse(data: bytes, name: str) -> np.ndarray:
    """(n, 3) int64 array of userID, itemID, x_label, one row per data line."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{name}: not UTF-8 text ({exc})") from exc
    first = data.split(b"\n", 1)[0].decode("utf-8").splitlines()
    header = first[0].split("\t") if first else []
    missing = [column for column in REQUIRED if column not in header]
    if missing or len(set(header)) != len(header):
        raise DataFormatError(
            f"{name}: malformed header {header!r}; expected tab-separated column names "
            f"including {', '.join(REQUIRED)} (missing: {', '.join(missing) or 'none'}), "
            "each once"
        )
    rows = _read_columns(data, header)
    if rows is None:
        rows = parse_lines(data.decode("utf-8"), header, name)
    bad = ~np.isin(rows[:, 2], (0, 1, 2))
    if bad.any():
        first_bad = int(np.argmax(bad))
        raise DataFormatError(
            f"{name}: line {first_bad + 2} has x_label {rows[first_bad, 2]}; expected 0 (train), "
            "1 (valid) or 2 (test)"
        )
    return rows


def _read_columns(data: bytes, header: list[str]) -> np.ndarray | None:
    """The required columns by pyarrow's reader, or ``None`` when it refuses a line."""
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(
                delimiter="\t", quote_char=False, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(REQUIRED),
                column_types=dict.fromkeys(REQUIRED, pa.int64()),
                null_values=[],
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    rows = np.empty((table.num_rows, len(REQUIRED)), dtype=np.int64)
    for out, column in enumerate(REQUIRED):
        rows[:, out] = table.column(column).to_numpy()
    return rows


def parse_lines(text: str, header: list[str], name: str) -> np.ndarray:
    """The line-by-line parse: raises the precise error for the first bad line."""
    lines = text.splitlines()
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
    return rows


def _integer(field: str, column: str, number: int, name: str) -> int:
    try:
        return int(field)
    except ValueError as exc:
        expected = "0, 1 or 2" if column == "x_label" else "an integer id"
        raise DataFormatError(
            f"{name}: line {number}: {column} {field!r} is not an integer; expected {expected}"
        ) from exc
