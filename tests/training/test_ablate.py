"""Ablation table on the tiny synthetic dataset (1 seed, 1 epoch per stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.ablate import GFCF_ROW, TEACHER_ROW, VARIANTS, format_table, run_ablation
from training.config import REPO_ROOT, Config, load_config


def one_epoch_config(data: Path, out: Path, *extra: str) -> Config:
    """The synthetic config, one epoch per stage, runs under ``out``."""
    return load_config(
        REPO_ROOT / "configs" / "synthetic.toml",
        [
            f"data.path={json.dumps(str(data))}",
            f"run.runs_dir={json.dumps(str(out / 'runs'))}",
            "run.device='cpu'",
            "run.progress=false",
            "stage1.max_epochs=1",
            "stage2.max_epochs=1",
            *extra,
        ],
    )


def test_every_variant_gets_a_row_with_the_protocol(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = one_epoch_config(synthetic_dataset, tmp_path)
    table = run_ablation(config, seeds=1)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [*VARIANTS, TEACHER_ROW, GFCF_ROW]
    assert "standard NDCG" in table and "validation items masked" in table
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.split("|")[2:6]]
        assert all(cell.endswith("± 0.0000") for cell in cells), row


def test_format_table_gives_mean_and_sample_std() -> None:
    results = {
        "A": [
            {"recall@20": 0.1, "ndcg@20": 0.0, "recall@50": 0.2, "ndcg@50": 0.0},
            {"recall@20": 0.3, "ndcg@20": 0.0, "recall@50": 0.4, "ndcg@50": 0.0},
        ]
    }
    table = format_table("demo", results, {"A": 10.0})
    assert "| A | 0.2000 ± 0.1414 | 0.0000 ± 0.0000 | 0.3000 ± 0.1414 |" in table


def test_unknown_variant_is_refused(synthetic_dataset: Path) -> None:
    config = load_config(
        REPO_ROOT / "configs" / "synthetic.toml",
        [f"data.path={json.dumps(str(synthetic_dataset))}"],
    )
    with pytest.raises(ValueError, match="unknown ablation variant"):
        run_ablation(config, seeds=1, variants=["w/o-Everything"])


def test_baselines_train_alone_when_the_student_starts_from_the_teacher(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = one_epoch_config(synthetic_dataset, tmp_path, "student.init_from_teacher=true")
    table = run_ablation(config, seeds=1, variants=["PromptMM", "LightGCN alone", "MF-BPR"])
    assert "| LightGCN alone |" in table and "| MF-BPR |" in table


def _metric_cells(table: str) -> list[str]:
    """Each row's name and metric cells (the seconds column varies between runs)."""
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return ["|".join(row.split("|")[1:6]) for row in rows[1:]]


def test_seeds_in_parallel_processes_give_the_sequential_table(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = one_epoch_config(synthetic_dataset, tmp_path, "run.threads=1")
    variants = ["PromptMM", "LightGCN alone", TEACHER_ROW]
    sequential = run_ablation(config, seeds=2, variants=variants)
    parallel = run_ablation(config, seeds=2, variants=variants, jobs=2)
    assert _metric_cells(parallel) == _metric_cells(sequential)
    assert not _metric_cells(sequential)[0].endswith("± 0.0000 ")  # two seeds differ
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        run_ablation(config, seeds=1, jobs=0)
