"""The optional LightGCN layers (propagation.npz): round trip, fold-in, and rejection."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bundle import Bundle, BundleError, fold_in_user, lightgcn, read_bundle, validate, write_bundle
from bundle.format import MANIFEST, PROPAGATION
from tests.bundle.test_format import make_bundle


def dense_lightgcn(
    indptr: np.ndarray, indices: np.ndarray, ego: np.ndarray, n_users: int, n_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference LightGCN on the dense normalised adjacency: (final users, item layers 0..L-1)."""
    n_items = ego.shape[0] - n_users
    r = np.zeros((n_users, n_items))
    for user in range(n_users):
        r[user, indices[indptr[user] : indptr[user + 1]]] = 1.0
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    degree = a.sum(axis=1)
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    norm = inv_sqrt[:, None] * a * inv_sqrt[None, :]
    layers = [ego.astype(np.float64)]
    for _ in range(n_layers):
        layers.append(norm @ layers[-1])
    final = np.mean(layers, axis=0)
    return final[:n_users], np.stack(layers)[:n_layers, n_users:]


def layered_bundle(n_layers: int = 2, scale: float = 1.0, seed: int = 0) -> Bundle:
    """:func:`make_bundle` (4 users, 6 items, dim 3) with consistent LightGCN layers."""
    base = make_bundle(seed=seed)
    rng = np.random.default_rng(seed + 100)
    ego = (scale * rng.normal(size=(base.n_users + base.n_items, base.dim))).astype(np.float32)
    users, item_layers = dense_lightgcn(
        base.train_indptr, base.train_indices, ego, base.n_users, n_layers
    )
    return replace(
        base,
        user_embeddings=users.astype(np.float32),
        user_ego=ego[: base.n_users],
        item_layers=item_layers.astype(np.float32),
    )


def _rewrite(directory: Path, user_ego: np.ndarray, item_layers: np.ndarray) -> None:
    """Replace propagation.npz and fix its manifest checksum (so only the content is wrong)."""
    path = directory / PROPAGATION
    np.savez(path, user_ego=user_ego, item_layers=item_layers)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"][PROPAGATION]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / MANIFEST).write_text(json.dumps(manifest))


def _edit_manifest(directory: Path, **changes: object) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest.update(changes)
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_round_trip_with_layers(tmp_path: Path) -> None:
    original = layered_bundle(n_layers=2)
    directory = write_bundle(original, tmp_path)
    loaded = read_bundle(directory)
    assert loaded.n_layers == 2
    assert loaded.user_ego is not None and loaded.item_layers is not None
    assert original.user_ego is not None and original.item_layers is not None
    np.testing.assert_array_equal(loaded.user_ego, original.user_ego)
    np.testing.assert_array_equal(loaded.item_layers, original.item_layers)
    assert loaded.item_layers.shape == (2, 6, 3)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["propagation"] == {"n_layers": 2}
    entry = manifest["files"][PROPAGATION]
    assert entry["bytes"] == (directory / PROPAGATION).stat().st_size
    assert entry["sha256"] == hashlib.sha256((directory / PROPAGATION).read_bytes()).hexdigest()
    assert manifest["format_version"] == 1


def test_bundle_without_layers_round_trips_with_none(tmp_path: Path) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    loaded = read_bundle(directory)
    assert loaded.user_ego is None and loaded.item_layers is None and loaded.n_layers is None
    manifest = json.loads((directory / MANIFEST).read_text())
    assert "propagation" not in manifest and PROPAGATION not in manifest["files"]
    assert not (directory / PROPAGATION).exists()


@pytest.mark.parametrize(("n_layers", "scale"), [(0, 1.0), (1, 1.0), (3, 1.0), (2, 1000.0)])
def test_fold_in_reproduces_every_user(tmp_path: Path, n_layers: int, scale: float) -> None:
    loaded = read_bundle(write_bundle(layered_bundle(n_layers, scale), tmp_path))
    assert loaded.user_ego is not None and loaded.item_layers is not None
    assert loaded.item_layers.shape == (n_layers, loaded.n_items, loaded.dim)
    degrees = loaded.item_popularity()
    for user in range(loaded.n_users):
        folded = fold_in_user(
            loaded.user_ego[user], loaded.item_layers, loaded.seen_items(user), degrees
        )
        assert folded.dtype == np.float64 and folded.shape == (loaded.dim,)
        np.testing.assert_allclose(folded, loaded.user_embeddings[user], rtol=1e-5, atol=1e-6)


def _toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2 users x 3 items, L = 2: u0 has i0, i1; u1 has i1; i2 has no training interaction.

    Returns (user ego, item layers (2, 3, 2), item degrees, hand-computed final users).
    """
    user_ego = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    item_ego = np.array([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], np.float32)
    degrees = np.array([1, 2, 0])
    r2 = 1 / math.sqrt(2)
    # item layer 1 (items aggregate user egos): i0 = u0/sqrt(1*2), i1 = u0/2 + u1/sqrt(2*1)
    item_layer1 = np.array([[r2, r2], [0.5, 0.5], [0.0, 0.0]], np.float32)
    # u0: layer 1 = i0/sqrt(2*1) + i1/sqrt(2*2) = (r2, 1); layer 2 = (0.5, 0.5) + (0.25, 0.25)
    # u1: layer 1 = i1/sqrt(1*2) = (0, 2 r2); layer 2 = (0.5, 0.5) * r2
    final = np.array(
        [
            [(1 + r2 + 0.75) / 3, (1 + 1 + 0.75) / 3],
            [(0 + 0 + 0.5 * r2) / 3, (0 + 2 * r2 + 0.5 * r2) / 3],
        ]
    )
    return user_ego, np.stack([item_ego, item_layer1]), degrees, final


def test_fold_in_by_hand_on_a_2_user_3_item_toy() -> None:
    user_ego, item_layers, degrees, final = _toy()
    for user, items in enumerate((np.array([0, 1]), np.array([1]))):
        np.testing.assert_allclose(
            fold_in_user(user_ego[user], item_layers, items, degrees), final[user], rtol=1e-6
        )
    reference, reference_layers = dense_lightgcn(
        np.array([0, 2, 3]), np.array([0, 1, 1]), np.vstack([user_ego, item_layers[0]]), 2, 2
    )
    np.testing.assert_allclose(reference, final, rtol=1e-6)
    np.testing.assert_allclose(reference_layers, item_layers, rtol=1e-6)


def test_fold_in_without_items_and_with_an_untrained_item() -> None:
    user_ego, item_layers, degrees, _ = _toy()
    empty = fold_in_user(user_ego[0], item_layers, np.array([], np.int64), degrees)
    np.testing.assert_allclose(empty, user_ego[0] / 3)
    # u1 folds in i2 (training degree 0, counted as 1): u^(l) = i1/sqrt(2*2) + i2/sqrt(2*1)
    r2 = 1 / math.sqrt(2)
    layer1 = np.array([0.0, 2.0]) / 2 + np.array([5.0, 5.0]) * r2
    layer2 = np.array([0.5, 0.5]) / 2
    np.testing.assert_allclose(
        fold_in_user(user_ego[1], item_layers, np.array([1, 2]), degrees),
        (layer1 + layer2) / 3,
        rtol=1e-6,
    )


def test_fold_in_rejects_mismatched_shapes() -> None:
    user_ego, item_layers, degrees, _ = _toy()
    with pytest.raises(ValueError, match="must be"):
        fold_in_user(user_ego[0, :1], item_layers, np.array([0]), degrees)
    with pytest.raises(ValueError, match="must be"):
        fold_in_user(user_ego[0], item_layers[0], np.array([0]), degrees)


def _tampered_layers() -> np.ndarray:
    layers = layered_bundle().item_layers
    assert layers is not None
    layers = layers.copy()
    layers[0, 5] += 0.5  # item 5 is a training item of user 3 only
    return layers


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_ego": None}, "both be present or both absent"),
        ({"item_layers": None}, "both be present or both absent"),
        ({"user_ego": np.zeros((4, 2), np.float32)}, r"user_ego has shape \(4, 2\)"),
        ({"item_layers": np.zeros((6, 3), np.float32)}, r"item_layers has shape \(6, 3\)"),
        ({"item_layers": np.zeros((2, 5, 3), np.float32)}, r"item_layers has shape \(2, 5, 3\)"),
        ({"user_ego": np.zeros((4, 3), np.float64)}, "user_ego must be float32"),
        ({"item_layers": np.full((2, 6, 3), np.nan, np.float32)}, "item_layers contains NaN"),
        ({"item_layers": _tampered_layers()}, "do not reproduce user_embeddings: user row 3 "),
    ],
)
def test_inconsistent_layers_are_refused_before_writing(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    bad = replace(layered_bundle(), **change)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match=re.escape(PROPAGATION) + ".*" + message):
        validate(bad)
    with pytest.raises(BundleError, match=message):
        write_bundle(bad, tmp_path)
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid bundle"


def test_tampered_layers_are_rejected_on_read(tmp_path: Path) -> None:
    original = layered_bundle()
    directory = write_bundle(original, tmp_path)
    assert original.user_ego is not None
    _rewrite(directory, original.user_ego, _tampered_layers())
    with pytest.raises(BundleError, match=r"propagation\.npz: .* user row 3 is off by 0\.\d+"):
        read_bundle(directory)


def test_listed_but_missing_file_is_rejected(tmp_path: Path) -> None:
    directory = write_bundle(layered_bundle(), tmp_path)
    (directory / PROPAGATION).unlink()
    with pytest.raises(BundleError, match=re.escape(f"missing {PROPAGATION}")):
        read_bundle(directory)


def test_checksum_mismatch_is_rejected(tmp_path: Path) -> None:
    directory = write_bundle(layered_bundle(), tmp_path)
    path = directory / PROPAGATION
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(BundleError, match=re.escape(f"{PROPAGATION}: checksum does not match")):
        read_bundle(directory)


def test_manifest_layer_count_must_match_the_arrays(tmp_path: Path) -> None:
    directory = write_bundle(layered_bundle(n_layers=2), tmp_path)
    _edit_manifest(directory, propagation={"n_layers": 3})
    with pytest.raises(BundleError, match=r"propagation\.n_layers=3 but .* holds 2"):
        read_bundle(directory)
    _edit_manifest(directory, propagation=None)
    with pytest.raises(BundleError, match=r"propagation\.n_layers=None"):
        read_bundle(directory)


def test_propagation_key_without_the_file_listed_is_rejected(tmp_path: Path) -> None:
    directory = write_bundle(make_bundle(), tmp_path)
    _edit_manifest(directory, propagation={"n_layers": 2})
    with pytest.raises(BundleError, match=re.escape(f"lists no {PROPAGATION}")):
        read_bundle(directory)


def test_a_pickled_propagation_file_is_refused(tmp_path: Path) -> None:
    original = layered_bundle()
    directory = write_bundle(original, tmp_path)
    assert original.user_ego is not None
    _rewrite(directory, original.user_ego, np.array([object()], dtype=object))
    with pytest.raises(BundleError, match=re.escape(f"{PROPAGATION}: unreadable")):
        read_bundle(directory)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_the_check_is_the_same_when_users_span_several_blocks(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(lightgcn, "PROPAGATION_BLOCK", block)
    validate(layered_bundle(n_layers=3))
    with pytest.raises(BundleError, match="user row 3 "):
        validate(replace(layered_bundle(), item_layers=_tampered_layers()))
