"""Export of the student as a bundle, and evaluation of a bundle against its dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle import BundleError, read_bundle
from training.config import EvalConfig
from training.data import Dataset, load_dataset
from training.evaluate import evaluate
from training.export import evaluate_bundle, export_student


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Dataset:
    return load_dataset(synthetic_dataset)


def _export(dataset: Dataset, root: Path, seed: int = 0) -> tuple[Path, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    users = torch.randn(dataset.n_users, 8, generator=gen)
    items = torch.randn(dataset.n_items, 8, generator=gen)
    path = export_student(
        dataset, users, items, {"student": {"dim": 8}}, {"test": {"recall@20": 0.5}}, root
    )
    return path, users, items


def test_round_trip_keeps_embeddings_ids_and_train(dataset: Dataset, tmp_path: Path) -> None:
    path, users, items = _export(dataset, tmp_path)
    assert path.parent == tmp_path / dataset.name
    assert (tmp_path / dataset.name / "LATEST").read_text().strip() == path.name
    bundle = read_bundle(path)
    np.testing.assert_array_equal(bundle.user_embeddings, users.numpy())
    np.testing.assert_array_equal(bundle.item_embeddings, items.numpy())
    assert bundle.user_ids == dataset.user_ids and bundle.item_ids == dataset.item_ids
    for user in (0, dataset.n_users - 1):
        np.testing.assert_array_equal(bundle.seen_items(user), dataset.train[user].indices)
    assert bundle.data_fingerprint == dataset.fingerprint
    assert bundle.config == {"student": {"dim": 8}}


def test_evaluate_bundle_matches_evaluate_on_the_embeddings(
    dataset: Dataset, tmp_path: Path
) -> None:
    path, users, items = _export(dataset, tmp_path)
    _, metrics = evaluate_bundle(path, dataset, EvalConfig())
    expected = evaluate(users, items, dataset.test, exclude=[dataset.train, dataset.valid])
    assert metrics["test"] == pytest.approx(expected)
    expected_valid = evaluate(users, items, dataset.valid, exclude=[dataset.train])
    assert metrics["valid"] == pytest.approx(expected_valid)


def test_evaluate_refuses_a_bundle_of_other_data(
    dataset: Dataset, synthetic_dataset: Path, tmp_path: Path
) -> None:
    from training.data.synthetic import write_synthetic

    path, _, _ = _export(dataset, tmp_path)
    other = load_dataset(write_synthetic(tmp_path / "synthetic", seed=1))
    with pytest.raises(ValueError, match="fingerprint"):
        evaluate_bundle(path, other, EvalConfig())


def test_corrupted_embeddings_are_rejected(dataset: Dataset, tmp_path: Path) -> None:
    path, _, _ = _export(dataset, tmp_path)
    target = path / "embeddings.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum does not match"):
        evaluate_bundle(path, dataset, EvalConfig())


def test_wrong_format_version_is_rejected(dataset: Dataset, tmp_path: Path) -> None:
    path, _, _ = _export(dataset, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        evaluate_bundle(path, dataset, EvalConfig())
