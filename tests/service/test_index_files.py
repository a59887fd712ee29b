"""The served index: kind by catalog size, saved beside the bundle once, loaded at start."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from bundle import read_bundle
from service import build_index as build_index_cli
from service import index_files
from service.config import Settings, load_settings
from service.index_files import index_kind, load_index
from tests.service.bundles import write_random_bundle


def settings_for(**overrides: object) -> Settings:
    return load_settings(allow_open_writes=True, REDIS_URL=None, **overrides)


@pytest.mark.parametrize(
    ("kind", "n_items", "expected"),
    [("auto", 80, "exact"), ("auto", 81, "hnsw"), ("exact", 10**6, "exact"), ("ivf", 5, "ivf")],
)
def test_the_index_kind_follows_the_catalog_size_unless_set(
    kind: str, n_items: int, expected: str
) -> None:
    assert index_kind(settings_for(index_kind=kind, exact_max_items=80), n_items) == expected


def saved(directory: Path) -> list[Path]:
    return sorted(directory.glob("index-*.faiss"))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_an_ann_index_is_saved_once_and_then_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=400)
    bundle = read_bundle(tmp_path / "models")
    settings = settings_for(index_kind=kind, ivf_nlist=4)
    built = load_index(bundle, tmp_path / "models", settings)
    [file] = saved(directory)
    assert file.name.startswith(f"index-{kind}-")

    def no_building(*_args: object) -> None:
        raise AssertionError("the saved index was built again")

    monkeypatch.setattr(index_files, "build_index", no_building)
    loaded = load_index(bundle, tmp_path / "models", settings)

    queries = bundle.user_embeddings[:20]
    excludes = [bundle.seen_items(row).astype(np.int64) for row in range(20)]
    expected, found = built.search(queries, 10, excludes), loaded.search(queries, 10, excludes)
    np.testing.assert_array_equal(found.items, expected.items)
    assert loaded.kind == kind


def test_the_saved_index_is_named_by_its_build_settings_and_the_embeddings(
    tmp_path: Path,
) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=300)
    bundle = read_bundle(directory)
    load_index(bundle, directory, settings_for(index_kind="hnsw", hnsw_m=8))
    load_index(bundle, directory, settings_for(index_kind="hnsw", hnsw_m=16))
    other = write_random_bundle(tmp_path / "models", n_items=300, seed=9, version="test-v2")
    load_index(read_bundle(other), other, settings_for(index_kind="hnsw", hnsw_m=8))

    names = [file.name for file in saved(directory)]
    assert len(names) == 2 and {"m8" in names[0], "m8" in names[1]} == {True, False}
    assert saved(other)[0].name.split("-")[-1] != names[0].split("-")[-1]


def test_a_corrupt_saved_index_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=300)
    bundle = read_bundle(directory)
    settings = settings_for(index_kind="hnsw")
    load_index(bundle, directory, settings)
    [file] = saved(directory)
    file.write_bytes(b"not an index")

    with caplog.at_level(logging.WARNING, logger="service"):
        index = load_index(bundle, directory, settings)

    assert index.size == bundle.n_items and "unreadable" in caplog.text
    assert faiss.read_index(str(file)).ntotal == bundle.n_items, "the rebuilt index is saved"


def test_an_unwritable_directory_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=300)
    bundle = read_bundle(directory)

    def read_only_volume(*_args: object, **_kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(index_files.tempfile, "mkstemp", read_only_volume)
    with caplog.at_level(logging.WARNING, logger="service"):
        index = load_index(bundle, directory, settings_for(index_kind="hnsw"))

    assert index.size == bundle.n_items and saved(directory) == []
    assert "could not save the index" in caplog.text


def test_nothing_is_saved_for_exact_search_or_with_save_index_off(tmp_path: Path) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=300)
    bundle = read_bundle(directory)

    load_index(bundle, directory, settings_for(index_kind="exact"))
    load_index(bundle, directory, settings_for(index_kind="hnsw", save_index=False))

    assert saved(directory) == []


def test_build_index_command_saves_the_latest_bundles_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_random_bundle(tmp_path / "models", n_items=300)
    monkeypatch.setenv("PROMPTMM_EXACT_MAX_ITEMS", "1000")
    build_index_cli.main([str(tmp_path / "models")])
    assert saved(directory) == [] and "nothing to save" in capsys.readouterr().out

    monkeypatch.setenv("PROMPTMM_EXACT_MAX_ITEMS", "100")
    build_index_cli.main([str(tmp_path / "models")])

    [file] = saved(directory)
    assert file.name.startswith("index-hnsw-")
