"""PromptMM/LATTICE JSON layout: ``train.json``, ``val.json``, ``test.json``.

Each file maps a user id (a JSON object key such as ``"17"``) to the list of its item
ids. Ids are non-negative integers; the user count is the largest user id + 1.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.data.errors import DataFormatError
from training.data.interactions import RawInteractions, SplitPairs

FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}


def read_json(folder: Path) -> RawInteractions:
    """Read the three JSON split files of ``folder``."""
    splits = {split: _read_split(folder / name, folder) for split, name in FILES.items()}
    return RawInteractions(splits=splits, shape=None)


def _read_split(path: Path, folder: Path) -> SplitPairs:
    if not path.is_file():
        raise DataFormatError(
            f"{path.name}: missing from {folder}; the JSON format needs {', '.join(FILES.values())}"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataFormatError(f"{path.name}: cannot read the file ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path.name}: not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path.name}: truncated or invalid JSON ({exc}); expected a complete object "
            "mapping user id -> list of item ids"
        ) from exc
    if not isinstance(content, dict):
        raise DataFormatError(
            f"{path.name}: holds a JSON {type(content).__name__}; expected an object "
            "mapping user id -> list of item ids"
        )
    keys = list(content)
    values = list(content.values())
    items = np.array(_flat_items(keys, values, path.name), dtype=np.int64)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    return SplitPairs(
        users=np.repeat(_user_ids(keys, path.name), lengths), items=items, source=path.name
    )


def _flat_items(keys: list[str], values: list[Any], name: str) -> list[int]:
    """Every user's item ids, in order; when a value is not a list of integers, the
    error names the first user whose key or value is bad, as a pass over the users would."""
    if not all(type(value) is list for value in values) or not set(
        map(type, itertools.chain.from_iterable(values))
    ) <= {int}:
        for key, value in zip(keys, values, strict=True):
            _user_id(key, name)
            _item_ids(value, key, name)
    return list(itertools.chain.from_iterable(values))


def _user_ids(keys: list[str], name: str) -> np.ndarray:
    """The keys as int64 ids; the error names the first key that is not an integer."""
    try:
        return np.fromiter(map(int, keys), dtype=np.int64, count=len(keys))
    except ValueError:
        for key in keys:
            _user_id(key, name)
        raise


def _user_id(key: str, name: str) -> int:
    try:
        return int(key)
    except ValueError as exc:
        raise DataFormatError(
            f'{name}: user key {key!r} is not an integer id; expected keys like "0", "1"'
        ) from exc


def _item_ids(value: Any, key: str, name: str) -> None:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise DataFormatError(
            f"{name}: user {key!r} maps to {json.dumps(value)[:80]}; expected a list of "
            "integer item ids"
        )
