"""The vectorised readers against a plain per-line / per-user reading of the same files.

The reference readers below parse the files the simple way (one line or one user at a
time); the vectorised ones must give the same arrays on every fixture, and the same
error (message included) on every bad file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import TinyContent, write_json, write_mmrec
from training.data import DataFormatError
from training.data.json_format import read_json
from training.data.mmrec import REQUIRED, read_mmrec


def _reference_mmrec(folder: Path) -> dict[int, tuple[list[int], list[int]]]:
    path = next(folder.glob("*.inter"))
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    columns = [header.index(name) for name in REQUIRED]
    out: dict[int, tuple[list[int], list[int]]] = {0: ([], []), 1: ([], []), 2: ([], [])}
    for line in lines[1:]:
        fields = line.split("\t")
        user, item, label = (int(fields[column]) for column in columns)
        out[label][0].append(user)
        out[label][1].append(item)
    return out


def _reference_json(folder: Path) -> dict[int, tuple[list[int], list[int]]]:
    out = {}
    for code, name in enumerate(("train.json", "val.json", "test.json")):
        content = json.loads((folder / name).read_text(encoding="utf-8"))
        users = [int(key) for key, items in content.items() for _ in items]
        out[code] = (users, [item for items in content.values() for item in items])
    return out


def _assert_same(raw_splits: dict, reference: dict[int, tuple[list[int], list[int]]]) -> None:
    for code, pairs in enumerate(raw_splits.values()):
        assert pairs.users.dtype == pairs.items.dtype == np.int64
        np.testing.assert_array_equal(pairs.users, np.array(reference[code][0], dtype=np.int64))
        np.testing.assert_array_equal(pairs.items, np.array(reference[code][1], dtype=np.int64))


def test_inter_fixtures_give_the_reference_arrays(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_mmrec(tmp_path / "m", tiny)
    _assert_same(read_mmrec(folder).splits, _reference_mmrec(folder))


def test_inter_with_crlf_reordered_columns_and_no_final_newline(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    text = "x_label\trating\titemID\tuserID\r\n0\t4.5\t3\t1\r\n2\tgood\t0\t007\r\n1\t\t2\t2"
    (folder / "m.inter").write_text(text, encoding="utf-8", newline="")
    splits = read_mmrec(folder).splits
    _assert_same(splits, {0: ([1], [3]), 1: ([2], [2]), 2: ([7], [0])})


def test_a_field_only_python_accepts_still_loads(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "m.inter").write_text("userID\titemID\tx_label\n+1\t2\t0\n", encoding="utf-8")
    _assert_same(read_mmrec(folder).splits, {0: ([1], [2]), 1: ([], []), 2: ([], [])})


def test_json_fixtures_give_the_reference_arrays(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_json(tmp_path / "j", tiny)
    _assert_same(read_json(folder).splits, _reference_json(folder))


def test_the_real_inter_file_gives_the_reference_arrays(
    shared_folder: Callable[[str], Path],
) -> None:
    folder = shared_folder("ml100k-mm")
    _assert_same(read_mmrec(folder).splits, _reference_mmrec(folder))


INTER_HEADER = "userID\titemID\trating\tx_label\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0\t1\t4\t0\n\n1\t2\t4\t0\n", "line 3 has 1 field(s), expected 4"),
        ("0\t1\t4\t0\n1\t2\t4\n", "line 3 has 3 field(s), expected 4"),
        ("0\t1\t4\t0\n1\tNA\t4\t0\n", "line 3: itemID 'NA' is not an integer; expected an"),
        ("0\t1\t4\t0\n\t2\t4\t0\n", "line 3: userID '' is not an integer; expected an integer"),
        ('0\t"1"\t4\t0\n', "line 2: itemID '\"1\"' is not an integer"),
        ("0\t1\t4\t0\n1\t2\t4\t1.0\n", "line 3: x_label '1.0' is not an integer; expected 0, 1"),
        ("0\t1\t4\t0\n1\t2\t4\t7\n", "line 3 has x_label 7; expected 0 (train)"),
    ],
)
def test_bad_inter_lines_get_the_line_by_line_error(
    tmp_path: Path, body: str, message: str
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "m.inter").write_text(INTER_HEADER + body, encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        read_mmrec(folder)
    assert str(caught.value).startswith("m.inter: " + message), str(caught.value)


def test_inter_that_is_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "m.inter").write_bytes(INTER_HEADER.encode() + b"0\t1\t\xff\t0\n")
    with pytest.raises(DataFormatError, match=r"m\.inter: not UTF-8 text"):
        read_mmrec(folder)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"0": [1], "1": 5}, "user '1' maps to 5; expected a list"),
        ({"0": [1], "1": [2, True]}, "user '1' maps to [2, true]; expected a list"),
        ({"0": [1], "1": [2.0]}, "user '1' maps to [2.0]; expected a list"),
        ({"x": [1], "1": "ab"}, "user key 'x' is not an integer id"),
        ({"0": [1], "x": [2], "2": ["3"]}, "user key 'x' is not an integer id"),
        ({"0": [1], "2": [None], "x": [3]}, "user '2' maps to [null]; expected a list"),
    ],
)
def test_bad_json_users_get_the_first_bad_users_error(
    tmp_path: Path, tiny: TinyContent, train: dict, message: str
) -> None:
    folder = write_json(tmp_path / "j", tiny)
    (folder / "train.json").write_text(json.dumps(train), encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        read_json(folder)
    assert str(caught.value).startswith("train.json: " + message), str(caught.value)
