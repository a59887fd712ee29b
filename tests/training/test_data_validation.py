"""Bad input: every case raises DataFormatError naming the file and the problem."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.training.conftest import WRITERS, TinyContent, write_hkuds, write_json, write_mmrec
from training.data import DataFormatError, load_dataset


def _load_fails(folder: Path, pattern: str) -> str:
    with pytest.raises(DataFormatError, match=pattern) as caught:
        load_dataset(folder)
    return str(caught.value)


def _write_inter(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad.inter").write_text(text, encoding="utf-8")
    return folder


# feature rows != number of items


def test_feature_rows_differ_from_the_item_count_of_the_pickles(
    tmp_path: Path, tiny: TinyContent
) -> None:
    features = dict(tiny.features, image=np.ones((4, 3)))
    folder = write_hkuds(tmp_path / "h", tiny.with_(features=features))
    message = _load_fails(folder, r"image_feat\.npy: has 4 rows, expected 5")
    assert "5 item columns" in message


def test_feature_files_disagree_on_the_item_count(tmp_path: Path, tiny: TinyContent) -> None:
    features = dict(tiny.features, text=np.ones((6, 2)))
    folder = write_json(tmp_path / "j", tiny.with_(features=features))
    _load_fails(folder, r"image_feat\.npy 5, text_feat\.npy 6 rows.*same row count")


# ids out of range or negative


def test_item_id_beyond_the_feature_rows(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny.with_(valid=[(0, 2), (1, 7)]))
    _load_fails(folder, r"val\.json: item id 7 is out of range; expected ids in 0\.\.4 .*5 rows")


def test_negative_user_id(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_mmrec(tmp_path / "m", tiny.with_(test=[(0, 4), (-1, 1)]))
    _load_fails(folder, r"m\.inter \(x_label 2, test\): user id -1 is negative")


def test_pickled_index_outside_the_declared_shape(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_hkuds(tmp_path / "h", tiny)
    matrix = sp.coo_matrix((np.ones(2), ([0, 1], [1, 2])), shape=(4, 5))
    matrix.coords = (np.array([0, 1], np.int32), np.array([1, 9], np.int32))
    (folder / "tstMat.pkl").write_bytes(pickle.dumps(matrix, protocol=3))
    _load_fails(folder, r"tstMat\.pkl: item id 9 is out of range; expected ids in 0\.\.4")


# NaN / inf in features


@pytest.mark.parametrize(
    ("value", "dtype"), [(np.nan, np.float32), (np.inf, np.float16), (1e40, np.float64)]
)
def test_non_finite_features(tmp_path: Path, tiny: TinyContent, value: float, dtype: type) -> None:
    image = np.ones((5, 3), dtype=dtype)
    image[2, 1] = value  # 1e40 fits float64 but overflows to inf in float32
    folder = write_mmrec(tmp_path / "m", tiny.with_(features={"image": image}))
    _load_fails(folder, r"image_feat\.npy: 1 NaN or infinite value.*row 2 \(item 2\), column 1")


# empty split


def test_empty_validation_split(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny.with_(valid=[]))
    _load_fails(folder, r"val\.json: the valid split has no interactions")


def test_empty_test_split_in_an_inter_file(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_mmrec(tmp_path / "m", tiny.with_(test=[]))
    _load_fails(folder, r"m\.inter \(x_label 2, test\): the test split has no interactions")


# a pair in two splits


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_pair_in_two_splits(tmp_path: Path, tiny: TinyContent, fmt: str) -> None:
    folder = WRITERS[fmt](tmp_path / "x", tiny.with_(test=[(0, 4), (2, 1), (1, 2)]))
    message = _load_fails(
        folder, r"1 \(user, item\) pair\(s\) appear in both the train and the test"
    )
    assert "user 1, item 2" in message
    first = {"hkuds": "trnMat.pkl", "json": "train.json", "mmrec": "x.inter (x_label 0"}[fmt]
    assert message.startswith(first)


# split files whose shapes disagree


def test_split_shapes_disagree(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_hkuds(tmp_path / "h", tiny)
    wider = sp.coo_matrix((np.ones(1), ([0], [5])), shape=(4, 6))
    (folder / "valMat.pkl").write_bytes(pickle.dumps(wider))
    _load_fails(folder, r"disagree on the \(users, items\) shape: .*valMat\.pkl \(4, 6\)")


# unreadable or truncated files


def test_truncated_pickle(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_hkuds(tmp_path / "h", tiny)
    data = (folder / "trnMat.pkl").read_bytes()
    (folder / "trnMat.pkl").write_bytes(data[: len(data) // 2])
    _load_fails(folder, r"trnMat\.pkl: truncated or corrupt pickle")


def test_truncated_npy(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    data = (folder / "text_feat.npy").read_bytes()
    (folder / "text_feat.npy").write_bytes(data[:-8])
    _load_fails(folder, r"text_feat\.npy: truncated or corrupt \.npy file")


def test_truncated_json(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    text = (folder / "test.json").read_text()
    (folder / "test.json").write_text(text[:-3])
    _load_fails(folder, r"test\.json: truncated or invalid JSON")


def test_truncated_inter(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_mmrec(tmp_path / "m", tiny)
    text = (folder / "m.inter").read_text()
    (folder / "m.inter").write_text(text[: text.rindex("\t")])
    _load_fails(folder, r"m\.inter: line 12 has 4 field\(s\), expected 5 .*truncated")


def test_missing_split_file(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_hkuds(tmp_path / "h", tiny)
    (folder / "tstMat.pkl").unlink()
    _load_fails(folder, r"tstMat\.pkl: missing from .*needs trnMat\.pkl, valMat\.pkl, tstMat\.pkl")


def test_unreadable_feature_file(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_mmrec(tmp_path / "m", tiny.with_(features={}))
    (folder / "image_feat.npy").mkdir()  # a path that exists but cannot be read as a file
    _load_fails(folder, r"image_feat\.npy: cannot read the file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file without permissions")
def test_file_without_read_permission(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    (folder / "train.json").chmod(0)
    _load_fails(folder, r"train\.json: cannot read the file")


def test_feature_file_of_wrong_rank(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny.with_(features={"image": np.ones(5)}))
    _load_fails(folder, r"image_feat\.npy: holds float64 data of shape \(5,\); expected a 2-D")


# bad x_label values and malformed TSV header


@pytest.mark.parametrize(
    ("label", "pattern"),
    [
        ("3", r"line 3 has x_label 3; expected 0 \(train\), 1 \(valid\) or 2 \(test\)"),
        ("train", r"line 3: x_label 'train' is not an integer; expected 0, 1 or 2"),
    ],
)
def test_bad_x_label(tmp_path: Path, label: str, pattern: str) -> None:
    folder = _write_inter(tmp_path / "m", f"userID\titemID\tx_label\n0\t1\t0\n0\t2\t{label}\n")
    _load_fails(folder, rf"bad\.inter: {pattern}")


def test_non_integer_item_id_in_inter(tmp_path: Path) -> None:
    folder = _write_inter(tmp_path / "m", "userID\titemID\tx_label\n0\titem7\t0\n")
    _load_fails(folder, r"bad\.inter: line 2: itemID 'item7' is not an integer")


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("user\titem\tx_label", "userID, itemID"),
        ("userID itemID x_label", "userID, itemID, x_label"),
    ],
)
def test_malformed_inter_header(tmp_path: Path, header: str, missing: str) -> None:
    folder = _write_inter(tmp_path / "m", f"{header}\n0\t1\t0\n")
    _load_fails(folder, rf"bad\.inter: malformed header .*\(missing: {missing}\)")


def test_non_integer_json_items(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    (folder / "train.json").write_text(json.dumps({"0": [1, "2"]}))
    _load_fails(folder, r"train\.json: user '0' maps to \[1, \"2\"\]; expected a list of integer")


def test_non_integer_json_user_key(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    (folder / "val.json").write_text(json.dumps({"alice": [1]}))
    _load_fails(folder, r"val\.json: user key 'alice' is not an integer id")
