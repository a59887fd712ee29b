"""The bundle format: round trip, atomic versions, and precise rejection of bad bundles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bundle import Bundle, BundleError, frozen, new_version, read_bundle, resolve, write_bundle
from bundle.format import EMBEDDINGS, IDS, INTERACTIONS, LATEST, MANIFEST, _sha256


def make_bundle(n_users: int = 4, n_items: int = 6, dim: int = 3, seed: int = 0) -> Bundle:
    rng = np.random.default_rng(seed)
    return Bundle(
        user_embeddings=rng.normal(size=(n_users, dim)).astype(np.float32),
        item_embeddings=rng.normal(size=(n_items, dim)).astype(np.float32),
        train_indptr=np.array([0, 2, 2, 3, 5], dtype=np.int64),
        train_indices=np.array([0, 4, 1, 2, 5], dtype=np.int32),
        user_ids=[f"u{i}" for i in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        model_version=new_version("toy"),
        dataset="toy",
        data_fingerprint="sha256:abc",
        config={"student": {"dim": dim}},
        metrics={"test": {"recall@20": 0.5}},
    )


def test_round_trip_preserves_everything(tmp_path: Path) -> None:
    original = make_bundle()
    directory = write_bundle(original, tmp_path)
    loaded = read_bundle(tmp_path)  # follows LATEST
    assert directory == tmp_path / original.model_version
    assert (tmp_path / LATEST).read_text().strip() == original.model_version
    np.testing.assert_array_equal(loaded.user_embeddings, original.user_embeddings)
    np.testing.assert_array_equal(loaded.item_embeddings, original.item_embeddings)
    np.testing.assert_array_equal(loaded.seen_items(0), [0, 4])
    assert loaded.seen_items(1).size == 0
    np.testing.assert_array_equal(loaded.item_popularity(), [1, 1, 1, 0, 1, 1])
    assert loaded.user_ids == original.user_ids and loaded.item_ids == original.item_ids
    assert loaded.config == original.config and loaded.metrics == original.metrics
    assert loaded.data_fingerprint == "sha256:abc"
    assert not list(tmp_path.glob(".*")), "no staging directory may be left behind"


def test_version_directory_is_readable_by_other_users(tmp_path: Path) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    assert directory.stat().st_mode & 0o005 == 0o005, "the API may run as another user"


def test_versions_are_immutable_and_latest_moves(tmp_path: Path) -> None:
    first, second = make_bundle(seed=1), make_bundle(seed=2)
    write_bundle(first, tmp_path)
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(first, tmp_path)
    write_bundle(second, tmp_path)
    assert resolve(tmp_path) == tmp_path / second.model_version
    assert read_bundle(tmp_path / first.model_version).model_version == first.model_version


@pytest.mark.parametrize("name", [EMBEDDINGS, INTERACTIONS, IDS])
def test_corrupted_file_is_rejected(tmp_path: Path, name: str) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    path = directory / name
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(BundleError, match=re.escape(f"{name}: checksum does not match")):
        read_bundle(directory)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (EMBEDDINGS, "embeddings.npz: unreadable (Bad CRC-32"),
        (INTERACTIONS, "interactions.npz: unreadable (Bad CRC-32"),
        (IDS, "ids.json: expected"),
    ],
)
def test_corrupted_file_with_a_matching_checksum_is_a_bundle_error(
    tmp_path: Path, name: str, message: str
) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    path = directory / name
    data = bytearray(path.read_bytes())
    # The first array's first data byte (past its 128-byte .npy header), or the JSON's middle.
    data[data.find(b"\x93NUMPY") + 128 if name != IDS else len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][name]["sha256"] = _sha256(path)
    (directory / MANIFEST).write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match=re.escape(message)):
        read_bundle(directory)


def test_wrong_format_version_is_rejected(tmp_path: Path) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["format_version"] = 99
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        read_bundle(directory)


def test_missing_file_and_unknown_path_are_named(tmp_path: Path) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    (directory / IDS).unlink()
    with pytest.raises(BundleError, match=re.escape("missing ids.json")):
        read_bundle(directory)
    with pytest.raises(BundleError, match="neither a bundle"):
        read_bundle(tmp_path / "nowhere")


def test_latest_pointing_nowhere_is_rejected(tmp_path: Path) -> None:
    (tmp_path / LATEST).write_text("ghost\n")
    with pytest.raises(BundleError, match="names 'ghost'"):
        resolve(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_embeddings": np.full((4, 3), np.nan, np.float32)}, "NaN or inf"),
        ({"item_embeddings": np.zeros((6, 3), np.float64)}, "must be float32"),
        ({"item_embeddings": np.zeros((6, 2), np.float32)}, "user dim 3 != item dim 2"),
        ({"train_indices": np.array([0, 4, 1, 2, 9], np.int32)}, "out of range"),
        ({"train_indices": np.array([0, 4, 1, 2, 3], np.float32)}, "indices must be integers"),
        ({"train_indptr": np.array([0, 2, 1, 3, 5], np.int64)}, "not a valid CSR"),
        ({"user_ids": ["a", "a", "b", "c"]}, "not unique"),
        ({"item_ids": ["x"]}, "items has 1 ids, expected 6"),
    ],
)
def test_inconsistent_bundle_is_refused_before_writing(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    fields = {**make_bundle().__dict__, **change}
    with pytest.raises(BundleError, match=message):
        write_bundle(Bundle(**fields), tmp_path)
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid bundle"


def test_a_read_bundles_arrays_are_frozen_and_shared_not_copied(tmp_path: Path) -> None:
    bundle = read_bundle(write_bundle(make_bundle(), tmp_path))

    for array in (bundle.user_embeddings, bundle.item_embeddings, bundle.train_indices):
        assert not array.flags.writeable
        assert frozen(array) is array
    writable = np.ones((3, 2), dtype=np.float32)
    copy = frozen(writable)
    assert copy is not writable and not copy.flags.writeable
    np.testing.assert_array_equal(copy, writable)
    assert frozen(copy) is copy
    assert frozen(writable[:, :1].view()) is not writable
