"""Interactions collected after a dataset was written, added to its training split.

The service stores every ``POST /interactions`` in an append-only log, which
``python -m service.export_log`` writes as JSON lines ``{"user_id": ..., "item_id": ...}``
(external ids). ``data.interactions`` in a training config names such a file: the loaded
dataset then trains on them too (e.g. to fine-tune an exported student with
``python -m training student CONFIG --warm-start BUNDLE``), and the fingerprint covers them,
so a bundle trained this way is evaluated against the same data.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from training.data.dataset import Dataset
from training.data.errors import DataFormatError
from training.data.fingerprint import fingerprint

MAX_NAMED = 10
"""Unknown ids named in an error message (the rest are counted)."""


def read_interactions(path: Path) -> list[tuple[str, str]]:
    """The ``(user_id, item_id)`` pairs of a JSON-lines file, in file order.

    Raises DataFormatError naming the line of anything that is not an object with string
    ``user_id`` and ``item_id``.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFormatError(f"cannot read interactions file {path}: {exc}") from exc
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not (
            isinstance(record, dict)
            and isinstance(record.get("user_id"), str)
            and isinstance(record.get("item_id"), str)
        ):
            raise DataFormatError(
                f'{path}:{number}: expected {{"user_id": str, "item_id": str}}, got {line[:80]}'
            )
        pairs.append((record["user_id"], record["item_id"]))
    return pairs


def _unknown(kind: str, ids: Sequence[str]) -> str:
    named = ", ".join(repr(value) for value in ids[:MAX_NAMED])
    more = f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else ""
    return f"{len(ids)} unknown {kind} id(s): {named}{more}"


def with_interactions(dataset: Dataset, pairs: Sequence[tuple[str, str]]) -> Dataset:
    """``dataset`` with ``pairs`` (external ids) in its training split.

    A pair already in the training split adds nothing; a pair in the validation or test split
    moves to training (no split may hold what the model trained on). Every user and item must
    be in the dataset (a model for new users needs a dataset that has them; the service serves
    them by folding in). Raises DataFormatError naming unknown ids, or a split left empty.
    """
    if not pairs:
        return dataset
    users = {user: row for row, user in enumerate(dataset.user_ids)}
    items = {item: col for col, item in enumerate(dataset.item_ids)}
    unknown_users = sorted({user for user, _ in pairs if user not in users})
    unknown_items = sorted({item for _, item in pairs if item not in items})
    if unknown_users or unknown_items:
        problems = [
            _unknown(kind, ids)
            for kind, ids in (("user", unknown_users), ("item", unknown_items))
            if ids
        ]
        raise DataFormatError(f"interactions for {dataset.name!r}: {'; '.join(problems)}")
    rows = np.fromiter((users[user] for user, _ in pairs), dtype=np.int64, count=len(pairs))
    cols = np.fromiter((items[item] for _, item in pairs), dtype=np.int64, count=len(pairs))
    added = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (rows, cols)), shape=dataset.train.shape
    )
    added.data[:] = 1.0
    splits = {}
    for name in ("train", "valid", "test"):
        matrix = getattr(dataset, name)
        if name == "train":
            result = (matrix + added).tocsr()
            result.data[:] = 1.0
        else:
            result = (matrix - matrix.multiply(added)).tocsr()
            result.eliminate_zeros()
            if result.nnz == 0:
                raise DataFormatError(
                    f"interactions for {dataset.name!r} hold every {name} interaction: the "
                    f"{name} split would be empty; keep some out of the file"
                )
        result.sort_indices()
        splits[name] = result.astype(np.float32)
    return dataclasses.replace(
        dataset,
        **splits,
        fingerprint=fingerprint(splits, dataset.features, dataset.user_ids, dataset.item_ids),
    )
