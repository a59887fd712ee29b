"""``python -m training data stats``: numbers on a hand-checked folder and the shared data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.training.conftest import TinyContent, write_json
from training.cli import main


def _stats(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["data", "stats", *argv]) == 0
    return capsys.readouterr().out


def test_stats_of_a_small_folder_match_a_hand_count(
    tmp_path: Path, tiny: TinyContent, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_json(tmp_path / "tiny", tiny)
    lines = _stats(capsys, str(folder), "--format", "json").splitlines()
    assert lines[:10] == [
        "dataset: tiny (format json)",
        "users: 4",
        "items: 5",
        "interactions train / valid / test: 6 / 2 / 3 (total 11)",
        "density: 55.00% (0.550000)",
        "users with >=1 interaction train / valid / test: 3 / 2 / 3",
        "users without training interactions: 1",
        "items without training interactions: 1",
        "test items never in train: 1 (2 test interactions)",
        "modalities: image 3, text 2",
    ]
    assert lines[10].startswith("fingerprint: sha256:")


def test_stats_of_a_bad_folder_exit_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["data", "stats", str(tmp_path)])
    assert caught.value.code == 2
    assert "no known files" in capsys.readouterr().err


# The numbers each shared dataset's README.md (and the datasets README) states.
EXPECTED = {
    "tiktok": [
        "users: 9,308",
        "items: 6,710",
        "interactions train / valid / test: 59,541 / 3,051 / 6,130 (total 68,722)",
        "density: 0.11%",
        "users with >=1 interaction train / valid / test: 9,298 / 3,051 / 6,130",
        "users without training interactions: 10",
        "items without training interactions: 465",
        "test items never in train: 340 (449 test interactions)",
        "modalities: audio 128, image 128",
    ],
    "baby": [
        "users: 19,445",
        "items: 7,050",
        "interactions train / valid / test: 118,551 / 21,682 / 20,559 (total 160,792)",
        "density: 0.12%",
        "users with >=1 interaction train / valid / test: 19,445 / 19,445 / 19,445",
        "users without training interactions: 0",
        "items without training interactions: 2",
        "modalities: none (ID only)",
    ],
    "ml100k-mm": [
        "users: 942",
        "items: 1,447",
        "interactions train / valid / test: 44,197 / 5,589 / 5,589 (total 55,375)",
        "density: 4.06%",
        "users with >=1 interaction train / valid / test: 942 / 942 / 942",
        "users without training interactions: 0",
        "items without training interactions: 99",
        "test items never in train: 78",
        "modalities: image 1280, text 384",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stats_of_the_shared_datasets_match_their_readmes(
    shared_folder: Callable[[str], Path], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    output = _stats(capsys, str(shared_folder(name)))
    lines = output.splitlines()
    assert lines[0].startswith(f"dataset: {name} (format ")
    for expected in EXPECTED[name]:
        assert any(line.startswith(expected) for line in lines), (expected, output)
