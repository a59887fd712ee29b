"""Small datasets written in each supported format, from one known content."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

Pairs = list[tuple[int, int]]


@dataclass(frozen=True)
class TinyContent:
    """4 users x 5 items; item 4 has no training interaction, user 3 no training one."""

    n_users: int = 4
    n_items: int = 5
    train: Pairs = field(default_factory=lambda: [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (2, 0)])
    valid: Pairs = field(default_factory=lambda: [(0, 2), (1, 3)])
    test: Pairs = field(default_factory=lambda: [(0, 4), (2, 1), (3, 4)])
    features: dict[str, np.ndarray] = field(
        default_factory=lambda: {
            "image": np.arange(15, dtype=np.float16).reshape(5, 3),
            "text": np.linspace(-1.0, 1.0, 10).reshape(5, 2),
        }
    )

    def with_(self, **changes: object) -> TinyContent:
        return replace(self, **changes)  # type: ignore[arg-type]


def _coo(pairs: Pairs, shape: tuple[int, int]) -> sp.coo_matrix:
    rows = np.array([u for u, _ in pairs], dtype=np.int32)
    cols = np.array([i for _, i in pairs], dtype=np.int32)
    return sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=shape)


def write_features(folder: Path, features: dict[str, np.ndarray]) -> None:
    for name, matrix in features.items():
        np.save(folder / f"{name}_feat.npy", matrix)


def write_hkuds(folder: Path, content: TinyContent, protocol: int = 3) -> Path:
    """trnMat/valMat/tstMat.pkl written with plain pickle of scipy coo_matrix."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (content.n_users, content.n_items)
    for name, pairs in (
        ("trnMat.pkl", content.train),
        ("valMat.pkl", content.valid),
        ("tstMat.pkl", content.test),
    ):
        with (folder / name).open("wb") as handle:
            pickle.dump(_coo(pairs, shape), handle, protocol=protocol)
    write_features(folder, content.features)
    return folder


def write_json(folder: Path, content: TinyContent) -> Path:
    """train/val/test.json mapping user id -> item ids."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (
        ("train.json", content.train),
        ("val.json", content.valid),
        ("test.json", content.test),
    ):
        mapping: dict[str, list[int]] = {}
        for user, item in pairs:
            mapping.setdefault(str(user), []).append(item)
        (folder / name).write_text(json.dumps(mapping), encoding="utf-8")
    write_features(folder, content.features)
    return folder


def write_mmrec(folder: Path, content: TinyContent) -> Path:
    """<folder name>.inter with userID itemID rating timestamp x_label."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for label, pairs in enumerate((content.train, content.valid, content.test)):
        lines += [f"{u}\t{i}\t4.0\t{100 + n}\t{label}" for n, (u, i) in enumerate(pairs)]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_features(folder, content.features)
    return folder


WRITERS: dict[str, Callable[[Path, TinyContent], Path]] = {
    "hkuds": write_hkuds,
    "json": write_json,
    "mmrec": write_mmrec,
}


@pytest.fixture
def tiny() -> TinyContent:
    return TinyContent()


@pytest.fixture
def shared_folder(shared_datasets: Path) -> Callable[[str], Path]:
    """``shared_folder("tiktok")``: that dataset's folder, skipping when it is absent."""

    def locate(name: str) -> Path:
        folder = shared_datasets / name
        if not folder.is_dir():
            pytest.skip(f"shared dataset {name!r} not found at {folder}")
        return folder

    return locate
