"""data.interactions: pairs collected after the dataset was written join its training split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle import read_bundle
from tests.training.test_pipeline import tiny_config
from training.cli import main
from training.data import DataFormatError, Dataset, load_dataset
from training.data.extra import read_interactions, with_interactions
from training.pipeline import load_data, run_pipeline

NO_TEACHER = ("stage1.enabled=false", "kd.pair_weight=0", "kd.list_weight=0", "kd.emb_weight=0")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Dataset:
    return load_dataset(synthetic_dataset)


def pair_in(dataset: Dataset, split: str, position: int = 0) -> tuple[str, str]:
    matrix = getattr(dataset, split).tocoo()
    return dataset.user_ids[matrix.row[position]], dataset.item_ids[matrix.col[position]]


def has(dataset: Dataset, split: str, pair: tuple[str, str]) -> bool:
    row, col = dataset.user_ids.index(pair[0]), dataset.item_ids.index(pair[1])
    return bool(getattr(dataset, split)[row, col])


def write_lines(path: Path, pairs: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"user_id": user, "item_id": item}) for user, item in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_move_from_valid_and_test_into_train(dataset: Dataset) -> None:
    from_valid, from_test, known = (pair_in(dataset, s) for s in ("valid", "test", "train"))
    fresh = next(
        (dataset.user_ids[0], item)
        for item in dataset.item_ids
        if not any(has(dataset, s, (dataset.user_ids[0], item)) for s in ("train", "valid", "test"))
    )

    grown = with_interactions(dataset, [from_valid, from_test, known, fresh, fresh])

    assert all(has(grown, "train", pair) for pair in (from_valid, from_test, known, fresh))
    assert not has(grown, "valid", from_valid) and not has(grown, "test", from_test)
    assert grown.train.nnz == dataset.train.nnz + 3
    assert grown.valid.nnz == dataset.valid.nnz - 1 and grown.test.nnz == dataset.test.nnz - 1
    assert set(grown.train.data.tolist()) == {1.0}
    assert grown.fingerprint != dataset.fingerprint
    assert with_interactions(dataset, []).fingerprint == dataset.fingerprint


def test_unknown_ids_are_named_and_nothing_changes(dataset: Dataset) -> None:
    with pytest.raises(
        DataFormatError, match=r"1 unknown user id\(s\): 'ghost'.*item id\(s\): 'x9'"
    ):
        with_interactions(dataset, [("ghost", dataset.item_ids[0]), (dataset.user_ids[0], "x9")])


def test_emptying_a_split_is_refused(dataset: Dataset) -> None:
    everything = [
        (dataset.user_ids[row], dataset.item_ids[col])
        for row, col in zip(*dataset.valid.nonzero(), strict=True)
    ]
    with pytest.raises(DataFormatError, match="valid split would be empty"):
        with_interactions(dataset, everything)


def test_read_interactions_names_the_bad_line(tmp_path: Path) -> None:
    good = write_lines(tmp_path / "good.jsonl", [("1", "2"), ("3", "4")])
    assert read_interactions(good) == [("1", "2"), ("3", "4")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "1", "item_id": "2"}\n\n{"user_id": 1, "item_id": "2"}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:3: expected"):
        read_interactions(bad)
    (tmp_path / "broken.jsonl").write_text("{nope\n")
    with pytest.raises(DataFormatError, match=r"broken\.jsonl:1: not JSON"):
        read_interactions(tmp_path / "broken.jsonl")
    with pytest.raises(DataFormatError, match="cannot read interactions file"):
        read_interactions(tmp_path / "missing.jsonl")


def test_config_trains_on_them_and_evaluate_reloads_the_same_data(
    dataset: Dataset, synthetic_dataset: Path, tmp_path: Path
) -> None:
    posted = write_lines(tmp_path / "log.jsonl", [pair_in(dataset, "valid", 1)])
    config = tiny_config(
        synthetic_dataset,
        tmp_path,
        *NO_TEACHER,
        "stage2.max_epochs=1",
        f"data.interactions={json.dumps(str(posted))}",
    )

    assert load_data(config).train.nnz == dataset.train.nnz + 1
    result = run_pipeline(config)

    assert result.bundle_dir is not None
    bundle = read_bundle(result.bundle_dir)
    assert bundle.data_fingerprint == load_data(config).fingerprint != dataset.fingerprint
    assert bundle.train_indices.size == dataset.train.nnz + 1
    assert main(["evaluate", str(result.bundle_dir)]) == 0
