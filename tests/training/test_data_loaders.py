"""Each loader on small generated folders and on the real shared datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.training.conftest import WRITERS, TinyContent, write_hkuds
from training.data import DataFormatError, Dataset, detect_format, load_dataset


def _pairs(matrix: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def _assert_well_formed(dataset: Dataset) -> None:
    shape = (dataset.n_users, dataset.n_items)
    for matrix in (dataset.train, dataset.valid, dataset.test):
        assert isinstance(matrix, sp.csr_matrix)
        assert matrix.shape == shape
        assert matrix.dtype == np.float32
        assert matrix.has_sorted_indices
        assert matrix.has_canonical_format
        assert np.all(matrix.data == 1.0)
    for matrix in dataset.features.values():
        assert matrix.dtype == np.float32
        assert matrix.shape[0] == dataset.n_items
    assert dataset.user_ids == [str(u) for u in range(dataset.n_users)]
    assert dataset.item_ids == [str(i) for i in range(dataset.n_items)]
    assert dataset.fingerprint.startswith("sha256:")
    assert len(dataset.fingerprint) == len("sha256:") + 64


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_loads_the_written_content(tmp_path: Path, tiny: TinyContent, fmt: str) -> None:
    folder = WRITERS[fmt](tmp_path / "tiny", tiny)

    assert detect_format(folder) == fmt
    dataset = load_dataset(folder)

    _assert_well_formed(dataset)
    assert dataset.name == "tiny"
    assert (dataset.n_users, dataset.n_items) == (tiny.n_users, tiny.n_items)
    assert _pairs(dataset.train) == set(tiny.train)
    assert _pairs(dataset.valid) == set(tiny.valid)
    assert _pairs(dataset.test) == set(tiny.test)
    assert sorted(dataset.features) == ["image", "text"]
    for name, matrix in tiny.features.items():
        np.testing.assert_array_equal(dataset.features[name], matrix.astype(np.float32))


def test_fingerprint_is_the_same_for_the_same_content_in_every_format(
    tmp_path: Path, tiny: TinyContent
) -> None:
    fingerprints = {
        fmt: load_dataset(writer(tmp_path / fmt, tiny), fmt).fingerprint
        for fmt, writer in WRITERS.items()
    }
    assert len(set(fingerprints.values())) == 1, fingerprints


def test_fingerprint_changes_with_the_content(tmp_path: Path, tiny: TinyContent) -> None:
    base = load_dataset(write_hkuds(tmp_path / "a", tiny)).fingerprint
    moved = tiny.with_(test=[(0, 4), (2, 1), (3, 2)])
    features = dict(tiny.features, text=tiny.features["text"] + 1.0)
    assert load_dataset(write_hkuds(tmp_path / "b", moved)).fingerprint != base
    assert (
        load_dataset(write_hkuds(tmp_path / "c", tiny.with_(features=features))).fingerprint != base
    )


def test_every_modality_present_is_loaded(tmp_path: Path, tiny: TinyContent) -> None:
    features = dict(tiny.features, audio=np.ones((5, 7)), video=np.zeros((5, 1), np.int8))
    dataset = load_dataset(WRITERS["mmrec"](tmp_path / "m", tiny.with_(features=features)))
    assert {name: m.shape[1] for name, m in dataset.features.items()} == {
        "audio": 7,
        "image": 3,
        "text": 2,
        "video": 1,
    }


def test_id_only_json_takes_the_item_count_from_the_largest_id(
    tmp_path: Path, tiny: TinyContent
) -> None:
    dataset = load_dataset(WRITERS["json"](tmp_path / "j", tiny.with_(features={})))
    assert dataset.features == {}
    assert (dataset.n_users, dataset.n_items) == (4, 5)


def test_items_without_any_interaction_count_when_features_exist(
    tmp_path: Path, tiny: TinyContent
) -> None:
    features = {"image": np.ones((8, 3))}
    dataset = load_dataset(WRITERS["mmrec"](tmp_path / "m", tiny.with_(features=features)))
    assert dataset.n_items == 8


def test_a_pair_listed_twice_counts_once(tmp_path: Path, tiny: TinyContent) -> None:
    folder = WRITERS["json"](tmp_path / "j", tiny)
    (folder / "train.json").write_text(json.dumps({"0": [0, 1, 1, 0], "1": [1, 2], "2": [3, 0]}))
    dataset = load_dataset(folder)
    assert dataset.train.nnz == 6
    assert _pairs(dataset.train) == set(tiny.train)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_hkuds_pickles_of_any_protocol_load(
    tmp_path: Path, tiny: TinyContent, protocol: int
) -> None:
    dataset = load_dataset(write_hkuds(tmp_path / "h", tiny, protocol=protocol))
    assert _pairs(dataset.train) == set(tiny.train)


def test_hkuds_accepts_a_pickled_csr_matrix(tmp_path: Path, tiny: TinyContent) -> None:
    import pickle

    folder = write_hkuds(tmp_path / "h", tiny)
    matrix = sp.csr_matrix(pickle.loads((folder / "valMat.pkl").read_bytes()))
    (folder / "valMat.pkl").write_bytes(pickle.dumps(matrix))
    assert _pairs(load_dataset(folder).valid) == set(tiny.valid)


def test_explicit_format_overrides_detection(tmp_path: Path, tiny: TinyContent) -> None:
    folder = WRITERS["json"](tmp_path / "both", tiny)
    WRITERS["mmrec"](folder, tiny)
    with pytest.raises(DataFormatError, match=r"several formats \(json, mmrec\)"):
        load_dataset(folder)
    assert load_dataset(folder, "mmrec").fingerprint == load_dataset(folder, "json").fingerprint


def test_unknown_format_and_folder_without_dataset_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"unknown dataset format 'csv'"):
        load_dataset(tmp_path, "csv")
    with pytest.raises(DataFormatError, match=r"no known files.*trnMat\.pkl"):
        load_dataset(tmp_path)
    with pytest.raises(DataFormatError, match=r"not a directory"):
        load_dataset(tmp_path / "missing")


# Counts from the shared datasets' README.md files.
REAL = {
    "tiktok": ("hkuds", 9_308, 6_710, (59_541, 3_051, 6_130), {"audio": 128, "image": 128}),
    "baby": ("hkuds", 19_445, 7_050, (118_551, 21_682, 20_559), {}),
    "ml100k-mm": ("mmrec", 942, 1_447, (44_197, 5_589, 5_589), {"image": 1280, "text": 384}),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_loads_the_real_shared_dataset(shared_folder: Callable[[str], Path], name: str) -> None:
    fmt, users, items, splits, dims = REAL[name]
    folder = shared_folder(name)

    assert detect_format(folder) == fmt
    dataset = load_dataset(folder)

    _assert_well_formed(dataset)
    assert dataset.name == name
    assert (dataset.n_users, dataset.n_items) == (users, items)
    assert (dataset.train.nnz, dataset.valid.nnz, dataset.test.nnz) == splits
    assert {m: f.shape[1] for m, f in dataset.features.items()} == dims
    assert load_dataset(folder, fmt).fingerprint == dataset.fingerprint
