"""Detect a dataset folder's format and load it into a :class:`Dataset`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from training.data.dataset import Dataset
from training.data.errors import DataFormatError
from training.data.features import feature_rows, load_features
from training.data.fingerprint import fingerprint
from training.data.hkuds import FILES as HKUDS_FILES
from training.data.hkuds import read_hkuds
from training.data.interactions import RawInteractions, to_csr
from training.data.json_format import FILES as JSON_FILES
from training.data.json_format import read_json
from training.data.mmrec import inter_files, read_mmrec
from training.data.validate import check_disjoint, check_feature_rows, check_ids, check_not_empty

logger = logging.getLogger(__name__)

READERS: dict[str, Callable[[Path], RawInteractions]] = {
    "hkuds": read_hkuds,
    "json": read_json,
    "mmrec": read_mmrec,
}
FORMATS = tuple(READERS)


def detect_format(folder: Path) -> str:
    """The format of ``folder``: ``hkuds`` (trnMat.pkl), ``json`` (train.json) or
    ``mmrec`` (a ``*.inter`` file). Exactly one must match."""
    found = [
        name
        for name, present in (
            ("hkuds", (folder / HKUDS_FILES["train"]).is_file()),
            ("json", (folder / JSON_FILES["train"]).is_file()),
            ("mmrec", bool(inter_files(folder))),
        )
        if present
    ]
    if len(found) != 1:
        what = f"files of several formats ({', '.join(found)})" if found else "no known files"
        raise DataFormatError(
            f"{folder}: holds {what}; expected exactly one of trnMat.pkl (hkuds), "
            "train.json (json) or <name>.inter (mmrec), or pass the format explicitly"
        )
    return found[0]


def load_dataset(path: Path, fmt: str | None = None) -> Dataset:
    """Load the dataset folder ``path`` (named by the folder) in format ``fmt`` (detected
    when ``None``).

    Shape: HKUDS pickles declare (users, items). For JSON and MMRec the ids are already
    0..n-1 integers: users = largest user id + 1; items = the feature files' row count
    when any ``*_feat.npy`` exists, else largest item id + 1. External ids are those
    integers as strings. Every ``<modality>_feat.npy`` is loaded as float32 and must
    have one row per item. Raises :class:`DataFormatError` for any bad input.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a directory; expected a dataset folder")
    if fmt is None:
        fmt = detect_format(folder)
    if fmt not in READERS:
        raise DataFormatError(f"unknown dataset format {fmt!r}; expected one of {FORMATS}")
    raw = READERS[fmt](folder)
    features = load_features(folder)
    if raw.shape is not None:
        check_feature_rows(
            features, raw.shape[1], f"the split files have {raw.shape[1]} item columns"
        )
    shape, bound_reason = _shape(raw, feature_rows(features))
    matrices = {}
    for split, pairs in raw.splits.items():
        check_ids(pairs, shape, bound_reason)
        matrices[split] = to_csr(pairs, shape)
        check_not_empty(matrices[split], split, pairs.source)
    check_disjoint(matrices, {split: pairs.source for split, pairs in raw.splits.items()})
    user_ids = [str(index) for index in range(shape[0])]
    item_ids = [str(index) for index in range(shape[1])]
    dataset = Dataset(
        name=folder.resolve().name,
        train=matrices["train"],
        valid=matrices["valid"],
        test=matrices["test"],
        features=features,
        user_ids=user_ids,
        item_ids=item_ids,
        fingerprint=fingerprint(matrices, features, user_ids, item_ids),
    )
    logger.info(
        "loaded %s (%s): %d users, %d items, modalities %s",
        dataset.name,
        fmt,
        dataset.n_users,
        dataset.n_items,
        sorted(features) or "none",
    )
    return dataset


def _shape(raw: RawInteractions, rows: int | None) -> tuple[tuple[int, int], tuple[str, str]]:
    """The (users, items) shape and, per axis, where its bound comes from."""
    if raw.shape is not None:
        declared = "the shape the split files declare"
        return raw.shape, (declared, declared)
    max_users = max((int(p.users.max()) for p in raw.splits.values() if p.users.size), default=-1)
    max_items = max((int(p.items.max()) for p in raw.splits.values() if p.items.size), default=-1)
    users_reason = "the largest user id in the splits"
    if rows is not None:
        return (max_users + 1, rows), (users_reason, f"the feature files have {rows} rows")
    return (max_users + 1, max_items + 1), (users_reason, "the largest item id in the splits")
