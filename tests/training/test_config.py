"""Typed config: TOML loading, checked overrides, path resolution, shipped configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from training.config import (
    REPO_ROOT,
    SHARED_DATASETS_ENV,
    Config,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.toml"))


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "exp.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, Config)
    assert Path(config.data.path).is_absolute()


def test_shipped_configs_exist() -> None:
    names = {path.name for path in CONFIGS}
    assert {"tiktok.toml", "ml100k-mm.toml", "baby-lightgcn.toml", "synthetic.toml"} <= names


def test_relative_paths_resolve_against_the_repo_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, '[data]\npath = "../shared/datasets/x"\n[run]\nruns_dir = "out"\n')
    monkeypatch.chdir(tmp_path / "configs")
    monkeypatch.delenv(SHARED_DATASETS_ENV, raising=False)
    config = load_config(path)
    assert config.data.path == str((tmp_path.parent / "shared" / "datasets" / "x").resolve())
    assert config.run.runs_dir == str((tmp_path / "out").resolve())


def test_shared_datasets_env_overrides_the_data_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, '[data]\npath = "../shared/datasets/tiktok"\n')
    monkeypatch.setenv(SHARED_DATASETS_ENV, str(tmp_path / "elsewhere"))
    assert load_config(path).data.path == str((tmp_path / "elsewhere" / "tiktok").resolve())


def test_override_paths_resolve_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, ["data.path=mydata"])
    assert config.data.path == str((tmp_path / "mydata").resolve())


def test_overrides_are_typed() -> None:
    config = apply_overrides(
        Config(),
        ["stage2.lr=0.01", "kd.disentangle=false", "eval.ks=[5, 20]", "prompt.rate=0"],
    )
    assert config.stage2.lr == 0.01
    assert config.kd.disentangle is False
    assert config.eval.ks == (5, 20)
    assert config.prompt.rate == 0.0 and isinstance(config.prompt.rate, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stage2.lrr=0.1", "stage2.lrr"),
        ("nosuch.key=1", "unknown section 'nosuch'"),
        ("stage1.max_epochs=1.5", "stage1.max_epochs: expected int"),
        ("stage1.max_epochs=true", "stage1.max_epochs: expected int"),
        ("kd.disentangle=1", "kd.disentangle: expected bool"),
        ("stage2.lr=fast", "stage2.lr: expected float"),
        ("run.device=tpu", "run.device: 'tpu' is not one of"),
        ("stage2lr=1", "section.key"),
        ("stage2.lr", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key_and_the_expected_type(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        apply_overrides(Config(), [override])


def test_unknown_keys_in_a_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"teacher\.dims"):
        load_config(_write(tmp_path, "[teacher]\ndims = 3\n"))
    with pytest.raises(ValueError, match="unknown config section"):
        from_dict({"optimizer": {}})


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(_write(tmp_path, "[data\n"))


def test_to_dict_round_trips_and_writes_no_machine_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_DATASETS_ENV, raising=False)
    config = load_config(REPO_ROOT / "configs" / "tiktok.toml", ["stage1.lr=0.002"])
    saved = to_dict(config)
    assert saved["data"]["path"] == "../shared/datasets/tiktok"
    assert saved["run"]["runs_dir"] == "runs"
    again = from_dict(saved)
    assert again.stage1.lr == 0.002
    assert again.eval.ks == config.eval.ks
