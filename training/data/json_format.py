"""PromptMM/LATTICE JSON layout: ``train.json``, ``val.json``, ``test.json``.

Each file maps a user id (a JSON object key such as ``"17"``) to the list of its item
ids. Ids are non-negative integers; the user count is the largest user id + 1.
"""

from __future__ import annotations

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
    users: list[int] = []
    items: list[int] = []
    for key, value in content.items():
        user = _user_id(key, path.name)
        user_items = _item_ids(value, key, path.name)
        users.extend([user] * len(user_items))
        items.extend(user_items)
    return SplitPairs(
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        source=path.name,
    )


def _user_id(key: str, name: str) -> int:
    try:
        return int(key)
    except ValueError as exc:
        raise DataFormatError(
            f'{name}: user key {key!r} is not an integer id; expected keys like "0", "1"'
        ) from exc


def _item_ids(value: Any, key: str, name: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        raise DataFormatError(
            f"{name}: user {key!r} maps to {json.dumps(value)[:80]}; expected a list of "
            "integer item ids"
        )
    return value
