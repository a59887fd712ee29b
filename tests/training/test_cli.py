"""The training command line: run, teacher, student --teacher, evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import main
from training.config import REPO_ROOT
from training.runs import SUMMARY_FILE

SYNTHETIC = str(REPO_ROOT / "configs" / "synthetic.toml")


def _args(data: Path, out: Path, epochs: int = 1) -> list[str]:
    return [
        SYNTHETIC,
        "--device",
        "cpu",
        "--set",
        f"data.path={json.dumps(str(data))}",
        "--set",
        f"run.runs_dir={json.dumps(str(out / 'runs'))}",
        "--set",
        f"run.models_dir={json.dumps(str(out / 'models'))}",
        "--set",
        "run.progress=false",
        "--set",
        f"stage1.max_epochs={epochs}",
        "--set",
        f"stage2.max_epochs={epochs}",
    ]


@pytest.fixture(scope="module")
def exported(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models root of one CLI ``run``."""
    out = tmp_path_factory.mktemp("cli")
    assert main(["run", *_args(synthetic_dataset, out)]) == 0
    return out / "models" / synthetic_dataset.name


def test_run_exports_a_bundle_and_writes_a_run_folder(exported: Path) -> None:
    assert (exported / "LATEST").is_file()
    (run,) = (exported.parents[1] / "runs").iterdir()
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["bundle"] == str(exported / (exported / "LATEST").read_text().strip())
    assert {"teacher", "student"} <= set(summary)


def test_evaluate_prints_metrics_of_the_bundle(
    exported: Path, synthetic_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(exported), "--data", str(synthetic_dataset)]) == 0
    out = capsys.readouterr().out
    assert "train and validation items masked" in out
    assert "standard NDCG" in out
    assert "test" in out and "recall@20=" in out


def test_evaluate_rejects_a_corrupted_bundle(
    exported: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    version = (exported / "LATEST").read_text().strip()
    copy = tmp_path / version
    shutil.copytree(exported / version, copy)
    (copy / "ids.json").write_text('{"users": [], "items": []}')
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(copy), "--data", str(synthetic_dataset)])
    assert exit_info.value.code == 2
    assert "checksum does not match the manifest" in capsys.readouterr().err


def test_evaluate_rejects_a_wrong_version_bundle(
    exported: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    version = (exported / "LATEST").read_text().strip()
    copy = tmp_path / version
    shutil.copytree(exported / version, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 3
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(copy), "--data", str(synthetic_dataset)])
    assert exit_info.value.code == 2
    assert "format_version 3 is not supported" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [("stage2.learning_rate=1", "stage2.learning_rate"), ("stage2.lr=abc", "expected float")],
)
def test_bad_override_exits_2_with_the_reason(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", SYNTHETIC, "--set", override])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_teacher_then_student_from_its_run_folder(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(synthetic_dataset, tmp_path)
    assert main(["teacher", *args]) == 0
    (teacher_run,) = (tmp_path / "runs").iterdir()
    assert "student" not in json.loads((teacher_run / SUMMARY_FILE).read_text())
    capsys.readouterr()
    assert main(["student", *args, "--teacher", str(teacher_run), "--no-export"]) == 0
    assert "student  test" in capsys.readouterr().out
    (student_run,) = set((tmp_path / "runs").iterdir()) - {teacher_run}
    summary = json.loads((student_run / SUMMARY_FILE).read_text())
    assert "student" in summary and "teacher" not in summary
    assert not (tmp_path / "models").exists()


def test_student_with_kd_but_no_teacher_is_refused(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["student", *_args(synthetic_dataset, tmp_path)])
    assert exit_info.value.code == 2
    assert "--teacher" in capsys.readouterr().err
