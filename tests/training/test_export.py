"""Export of the student as a bundle, and evaluation of a bundle against its dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle import BundleError, fold_in_user, read_bundle
from training.config import EvalConfig
from training.data import Dataset, load_dataset
from training.evaluate import evaluate
from training.export import evaluate_bundle, export_student
from training.graph import normalized_adjacency
from training.models import Student
from training.stage2 import final_layers


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Dataset:
    return load_dataset(synthetic_dataset)


def _export(
    dataset: Dataset, root: Path, seed: int = 0, n_layers: int = 2
) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Export a freshly initialised LightGCN student (dim 8) over ``dataset``'s graph."""
    torch.manual_seed(seed)
    student = Student(dataset.n_users, dataset.n_items, 8, n_layers)
    users, items, user_ego, item_layers = final_layers(student, normalized_adjacency(dataset.train))
    path = export_student(
        dataset,
        users,
        items,
        {"student": {"dim": 8}},
        {"test": {"recall@20": 0.5}},
        root,
        user_ego=user_ego,
        item_layers=item_layers,
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


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_exported_layers_fold_every_user_back_in(
    dataset: Dataset, tmp_path: Path, n_layers: int
) -> None:
    path, users, _ = _export(dataset, tmp_path, n_layers=n_layers)
    bundle = read_bundle(path)
    assert bundle.n_layers == n_layers
    assert bundle.user_ego is not None and bundle.item_layers is not None
    assert bundle.item_layers.shape == (n_layers, dataset.n_items, 8)
    degrees = bundle.item_popularity()
    np.testing.assert_array_equal(degrees, np.diff(dataset.train.tocsc().indptr))
    folded = np.stack(
        [
            fold_in_user(bundle.user_ego[u], bundle.item_layers, bundle.seen_items(u), degrees)
            for u in range(bundle.n_users)
        ]
    )
    np.testing.assert_allclose(folded, users.numpy(), rtol=1e-5, atol=1e-6)


def test_final_layers_are_the_students_forward(dataset: Dataset) -> None:
    torch.manual_seed(0)
    student = Student(dataset.n_users, dataset.n_items, 8, 2)
    adj = normalized_adjacency(dataset.train)
    users, items, user_ego, item_layers = final_layers(student, adj)
    expected_users, expected_items = student(adj)
    assert torch.equal(users, expected_users) and torch.equal(items, expected_items)
    assert torch.equal(user_ego, student.user_ego)
    assert torch.equal(item_layers[0], student.item_ego)
    assert item_layers.shape == (2, dataset.n_items, 8) and not item_layers.requires_grad


def test_layers_that_do_not_reproduce_the_embeddings_are_not_exported(
    dataset: Dataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    student = Student(dataset.n_users, dataset.n_items, 8, 2)
    users, items, user_ego, item_layers = final_layers(student, normalized_adjacency(dataset.train))
    with pytest.raises(BundleError, match=r"propagation\.npz: .* user row \d+ is off by"):
        export_student(
            dataset, users + 1, items, {}, {}, tmp_path, user_ego=user_ego, item_layers=item_layers
        )
    assert not (tmp_path / dataset.name).exists(), "nothing may be written"


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


def test_items_without_training_interactions_get_their_content_embedding(
    dataset: Dataset, tmp_path: Path
) -> None:
    from bundle.content import content_embeddings
    from training.coldsplit import holdout_split

    cold_data = holdout_split(dataset, fraction=0.1, seed=0).dataset
    path, _, items = _export(cold_data, tmp_path)
    bundle = read_bundle(path)
    assert bundle.content_map is not None
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2
    cold = np.flatnonzero(cold_data.train.getnnz(axis=0) == 0)
    warm = np.flatnonzero(cold_data.train.getnnz(axis=0) > 0)
    assert cold.size
    np.testing.assert_array_equal(bundle.item_embeddings[warm], items.numpy()[warm])
    from_content = content_embeddings(
        bundle.content_map, {m: f[cold] for m, f in cold_data.features.items()}
    )
    np.testing.assert_array_equal(bundle.item_embeddings[cold], from_content)
    assert bundle.item_layers is not None
    np.testing.assert_allclose(bundle.item_layers[0, cold] / 3, from_content, rtol=1e-6)
    assert "content_map" in bundle.metrics
