"""``training tune``: spaces are checked precisely; a short study writes a runnable config."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from training.cli import main
from training.config import REPO_ROOT, Config, load_config
from training.tune_space import parse_spaces

SYNTHETIC = REPO_ROOT / "configs" / "synthetic.toml"


def _study_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "tune",
        str(SYNTHETIC),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--set",
        f"data.path={json.dumps(str(data))}",
        "--set",
        "run.progress=false",
        "--set",
        "stage1.max_epochs=1",
        "--set",
        "stage2.max_epochs=1",
        *extra,
    ]


@pytest.mark.slow
def test_three_trials_write_a_config_that_training_run_accepts(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study"
    assert main([*_study_args(synthetic_dataset, study), "--trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 trial(s) finished" in out and "chosen on validation recall@20" in out
    assert sum("recall@20=" in line for line in out.splitlines()) == 1, out  # test, once

    tuned = study / "tuned.toml"
    raw = tomllib.loads(tuned.read_text())
    chosen = load_config(tuned)
    assert 1e-3 <= chosen.stage2.lr <= 3e-2 and chosen.student.n_layers in (1, 2, 3)
    assert chosen.kd.pair_weight in (0.5, 1.0, 2.0)
    assert chosen.stage2.max_epochs == 1  # the --set overrides are part of the tuned recipe
    assert "tune" in raw

    runs = tmp_path / "runs"
    args = ["--set", f"run.runs_dir={json.dumps(str(runs))}"]
    args += ["--set", f"run.models_dir={json.dumps(str(tmp_path / 'models'))}"]
    assert main(["run", str(tuned), "--device", "cpu", *args]) == 0
    assert len(list(runs.iterdir())) == 1

    # the same command resumes the stored study: nothing is missing, no trial runs again
    assert main([*_study_args(synthetic_dataset, study), "--trials", "3"]) == 0
    assert "3 trial(s) finished" in capsys.readouterr().out


@pytest.mark.slow
def test_parallel_workers_share_one_new_study(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # three processes starting on a study that does not exist yet: each must join it
    study = tmp_path / "study"
    args = [*_study_args(synthetic_dataset, study), "--trials", "3", "--jobs", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    finished = int(out.split(" trial(s) finished")[0].rsplit(maxsplit=1)[-1])
    assert finished >= 3, out
    assert (study / "tuned.toml").is_file()


@pytest.mark.slow
def test_a_variant_searches_only_what_it_trains(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "alone"
    args = [*_study_args(synthetic_dataset, study), "--trials", "2"]
    assert main([*args, "--variant", "LightGCN alone"]) == 0
    chosen = load_config(study / "tuned.toml")
    assert not chosen.stage1.enabled and chosen.kd.pair_weight == 0.0
    assert "kd.pair_weight" not in capsys.readouterr().out


BASE = Config()


@pytest.mark.parametrize(
    ("tune", "pattern"),
    [
        ({}, r"\[tune\] must hold at least one"),
        ({"run": {"seed": {"low": 0, "high": 3}}}, r"\[tune\.run\]: the data, eval, run sections"),
        ({"stage3": {"lr": {"low": 0.1, "high": 1}}}, r"\[tune\.stage3\]: unknown section"),
        ({"stage1": {"lrr": {"low": 0.1, "high": 1}}}, r"tune\.stage1\.lrr: unknown key"),
        ({"stage1": {"lr": 0.1}}, r"tune\.stage1\.lr: expected a table"),
        ({"stage1": {"lr": {"low": 0.1}}}, r"tune\.stage1\.lr: a range needs low and high"),
        ({"stage1": {"lr": {"low": 1, "high": 0.1}}}, r"needs low < high, got low = 1"),
        ({"stage1": {"lr": {"low": 0, "high": 1, "log": True}}}, r"log = true needs low > 0"),
        ({"student": {"n_layers": {"low": 1.5, "high": 3}}}, r"must be ints"),
        ({"kd": {"disentangle": {"low": 0, "high": 1}}}, r"a range needs an int or float"),
        ({"kd": {"tau": {"choices": []}}}, r"takes a non-empty list"),
        ({"kd": {"disentangle": {"choices": [True, "no"]}}}, r"'no' does not fit the field"),
        ({"stage1": {"lr": {"low": 0.1, "high": 1, "steps": 2}}}, r"got keys \['high', 'low'"),
    ],
)
def test_bad_search_spaces_are_refused_precisely(tune: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse_spaces(tune, BASE)


def test_a_config_without_tune_tables_is_refused(synthetic_dataset: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text("[run]\nseed = 0\n")
    with pytest.raises(SystemExit):
        main(["tune", str(plain), "--trials", "1", "--out", str(tmp_path / "s")])
