"""Format 2: the content map round-trips, applies with numpy only, and bad input is named."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bundle import BundleError, read_bundle, write_bundle
from bundle.content import ContentMap, content_embeddings
from bundle.format import CONTENT_MAP, MANIFEST
from tests.bundle.test_format import make_bundle

DIM = 3


def linear_map(seed: int = 0) -> ContentMap:
    rng = np.random.default_rng(seed)
    return ContentMap(
        "linear",
        mean={"image": rng.normal(size=4).astype(np.float32), "text": np.zeros(2, np.float32)},
        std={"image": np.full(4, 2.0, np.float32), "text": np.ones(2, np.float32)},
        scale=1.5,
        weights={
            "image": rng.normal(size=(4, DIM)).astype(np.float32),
            "text": rng.normal(size=(2, DIM)).astype(np.float32),
        },
        bias=rng.normal(size=DIM).astype(np.float32),
    )


def knn_map() -> ContentMap:
    references = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    references /= np.linalg.norm(references, axis=1, keepdims=True)
    return ContentMap(
        "knn",
        mean={"text": np.zeros(2, np.float32)},
        std={"text": np.ones(2, np.float32)},
        references={"text": references},
        reference_embeddings=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32),
        k=2,
    )


def features(n: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"image": rng.normal(size=(n, 4)), "text": rng.normal(size=(n, 2))}


def test_linear_map_is_the_standardised_affine_formula() -> None:
    content_map, x = linear_map(), features()
    expected = content_map.bias + sum(
        (x[m] - content_map.mean[m]) / content_map.std[m] @ content_map.weights[m]
        for m in ("image", "text")
    )
    got = content_embeddings(content_map, x)
    assert got.dtype == np.float32 and got.shape == (2, DIM)
    np.testing.assert_allclose(got, 1.5 * expected, rtol=1e-5)


def test_knn_map_averages_the_most_similar_references_by_similarity() -> None:
    # (1, 0.2): most similar to reference 0, then 2; weights are the cosines
    got = content_embeddings(knn_map(), {"text": np.array([[1.0, 0.2]])})
    unit = np.array([1.0, 0.2]) / np.hypot(1.0, 0.2)
    sims = np.array([unit[0], (unit[0] + unit[1]) / np.sqrt(2)])
    expected = np.zeros(DIM)
    expected[[0, 2]] = sims / sims.sum()
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"audio": np.zeros((2, 3))}, "unknown: \\['audio'\\]"),
        ({"image": np.zeros((2, 5))}, "modality 'image': expected \\(n, 4\\)"),
        ({"image": np.full((2, 4), np.nan)}, "modality 'image': features contain NaN"),
        ({"image": np.zeros((3, 4))}, "same number of rows"),
    ],
)
def test_bad_features_are_named(changed: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        content_embeddings(linear_map(), {**features(), **changed})


def test_missing_modality_is_named() -> None:
    with pytest.raises(ValueError, match="missing: \\['text'\\]"):
        content_embeddings(linear_map(), {"image": np.zeros((1, 4))})


@pytest.mark.parametrize("content_map", [linear_map(), knn_map()], ids=["linear", "knn"])
def test_format_2_round_trip_keeps_the_map(tmp_path: Path, content_map: ContentMap) -> None:
    bundle = dataclasses.replace(make_bundle(dim=DIM), content_map=content_map)
    write_bundle(bundle, tmp_path)
    loaded = read_bundle(tmp_path)
    manifest = json.loads((tmp_path / bundle.model_version / MANIFEST).read_text())
    assert manifest["format_version"] == 2
    assert manifest["content_map"]["method"] == content_map.method
    assert loaded.content_map is not None
    x = {m: np.ones((2, d)) for m, d in content_map.modalities.items()}
    np.testing.assert_array_equal(
        content_embeddings(loaded.content_map, x), content_embeddings(content_map, x)
    )


def test_bundle_without_a_map_is_written_and_read_as_format_1(tmp_path: Path) -> None:
    bundle = make_bundle()
    directory = write_bundle(bundle, tmp_path)
    assert json.loads((directory / MANIFEST).read_text())["format_version"] == 1
    loaded = read_bundle(directory)
    assert loaded.content_map is None
    np.testing.assert_array_equal(loaded.item_embeddings, bundle.item_embeddings)


def test_content_map_of_the_wrong_dim_is_refused_before_writing(tmp_path: Path) -> None:
    bundle = dataclasses.replace(make_bundle(dim=DIM + 1), content_map=linear_map())
    with pytest.raises(BundleError, match=r"content_map\.npz: the map gives 3-d embeddings"):
        write_bundle(bundle, tmp_path)
    assert not any(tmp_path.iterdir())


def test_content_map_in_a_format_1_manifest_is_refused(tmp_path: Path) -> None:
    bundle = dataclasses.replace(make_bundle(dim=DIM), content_map=linear_map())
    directory = write_bundle(bundle, tmp_path)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["format_version"] = 1
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="a content map needs format_version 2"):
        read_bundle(directory)


def test_malformed_content_map_arrays_are_named(tmp_path: Path) -> None:
    bundle = dataclasses.replace(make_bundle(dim=DIM), content_map=linear_map())
    directory = write_bundle(bundle, tmp_path)
    arrays = dict(bundle.content_map.arrays()) if bundle.content_map else {}
    arrays["image.std"] = np.zeros(4, np.float32)
    np.savez(directory / CONTENT_MAP, **arrays)  # type: ignore[arg-type]
    manifest = json.loads((directory / MANIFEST).read_text())

    digest = hashlib.sha256((directory / CONTENT_MAP).read_bytes()).hexdigest()
    manifest["files"][CONTENT_MAP]["sha256"] = digest
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"image\.std must be > 0"):
        read_bundle(directory)
