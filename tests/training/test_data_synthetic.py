"""The seeded synthetic dataset: deterministic, loadable, and its content carries signal."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.data import Dataset, load_dataset
from training.data.synthetic import write_synthetic


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "a" / "synth", seed=3)
    again = write_synthetic(tmp_path / "b" / "synth", seed=3)
    other = write_synthetic(tmp_path / "c" / "synth", seed=4)

    assert sorted(_files(first)) == ["image_feat.npy", "synth.inter", "text_feat.npy"]
    assert _files(first) == _files(again)
    assert _files(first)["synth.inter"] != _files(other)["synth.inter"]
    assert load_dataset(first).fingerprint == load_dataset(again).fingerprint
    assert load_dataset(first).fingerprint != load_dataset(other).fingerprint


def test_the_shared_fixture_loads_with_the_default_shape(synthetic_dataset: Path) -> None:
    dataset = load_dataset(synthetic_dataset)

    assert (dataset.n_users, dataset.n_items) == (300, 200)
    assert {name: m.shape for name, m in dataset.features.items()} == {
        "image": (200, 32),
        "text": (200, 16),
    }
    total = dataset.train.nnz + dataset.valid.nnz + dataset.test.nnz
    assert 0.04 < total / (300 * 200) < 0.06
    for split in (dataset.train, dataset.valid, dataset.test):
        assert np.all(np.diff(split.indptr) >= 1), "every user has train, valid and test items"
    assert dataset.train.nnz > 6 * dataset.test.nnz


def _recall_at_20(dataset: Dataset, scores: np.ndarray) -> float:
    scores = scores.copy()
    scores[dataset.train.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :20]
    hits = [
        len(set(top[user]) & set(dataset.test[user].indices)) / dataset.test[user].nnz
        for user in range(dataset.n_users)
    ]
    return float(np.mean(hits))


def test_content_features_rank_held_out_items_far_above_chance(synthetic_dataset: Path) -> None:
    dataset = load_dataset(synthetic_dataset)
    features = np.concatenate([dataset.features["image"], dataset.features["text"]], axis=1)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    profiles = np.asarray(dataset.train @ features) / np.diff(dataset.train.indptr)[:, None]

    recall = _recall_at_20(dataset, profiles @ features.T)

    chance = 20 / dataset.n_items
    assert recall > 3 * chance, recall


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_users": 0}, r"n_users must be >= 1, got 0"),
        ({"n_items": 2}, r"n_items must be >= 3"),
        ({"density": 0.0}, r"density must be in \(0, 1\], got 0.0"),
        ({"modalities": {"image": 0}}, r"modality 'image': 0; expected .* dim >= 1"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        write_synthetic(tmp_path / "s", **kwargs)


def test_synth_command_writes_a_loadable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "small"
    assert main(["data", "synth", str(out), "--users", "40", "--items", "30", "--seed", "1"]) == 0

    dataset = load_dataset(out)
    assert (dataset.n_users, dataset.n_items) == (40, 30)
    assert dataset.fingerprint in capsys.readouterr().out


@pytest.mark.slow
def test_memory_grows_with_pairs_not_users_times_items(tmp_path: Path) -> None:
    """10^5 users x 2*10^4 items (2*10^9 cells; 16 GB as a dense float64 matrix) at ~4
    pairs per user: the generator's peak Python/numpy allocation stays within a small
    multiple of the pairs it writes (about 260 bytes a pair when measured; a dense
    users x items array would be about 37,000)."""
    tracemalloc.start()
    try:
        out = write_synthetic(
            tmp_path / "wide", n_users=100_000, n_items=20_000, density=0.0002, modalities={}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pairs = sum(1 for _ in (out / "wide.inter").open()) - 1
    assert 300_000 <= pairs <= 600_000
    assert peak < 400 * pairs, (peak, pairs)


def test_a_user_wanting_most_of_the_catalog_gets_distinct_items(tmp_path: Path) -> None:
    dataset = load_dataset(write_synthetic(tmp_path / "full", n_users=20, n_items=30, density=0.9))
    total = dataset.train + dataset.valid + dataset.test
    assert total.nnz == dataset.train.nnz + dataset.valid.nnz + dataset.test.nnz
    assert np.diff(total.indptr).min() >= 20


def test_synth_command_takes_modalities(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    args = ["data", "synth", str(out), "--users", "20", "--items", "10", "--modality", "audio=4"]
    assert main(args) == 0
    assert {name: m.shape for name, m in load_dataset(out).features.items()} == {"audio": (10, 4)}
    with pytest.raises(SystemExit):
        main(["data", "synth", str(out), "--modality", "audio"])
