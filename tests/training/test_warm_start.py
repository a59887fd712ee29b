"""Warm start: fine-tune an exported student from its own egos (``student --warm-start``)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bundle import read_bundle, write_bundle
from tests.training.test_pipeline import tiny_config
from training.cli import main
from training.config import Config
from training.pipeline import run_pipeline

NO_TEACHER = ("stage1.enabled=false", "kd.pair_weight=0", "kd.list_weight=0", "kd.emb_weight=0")


@pytest.fixture(scope="module")
def exported(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student trained alone for 2 epochs and exported (with its layers)."""
    out = tmp_path_factory.mktemp("warm")
    result = run_pipeline(tiny_config(synthetic_dataset, out, *NO_TEACHER))
    assert result.bundle_dir is not None
    return result.bundle_dir


def frozen(data: Path, out: Path, *extra: str) -> Config:
    """One epoch at lr 0: the student ends where it started."""
    return tiny_config(data, out, *NO_TEACHER, "stage2.max_epochs=1", "stage2.lr=0", *extra)


def test_warm_start_starts_from_the_bundles_egos(
    exported: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    bundle = read_bundle(exported)
    result = run_pipeline(frozen(synthetic_dataset, tmp_path), warm_start_from=exported)

    assert result.student is not None and bundle.user_ego is not None
    assert bundle.item_layers is not None
    user_ego, item_ego = result.student.student.ego_parameters()
    np.testing.assert_array_equal(user_ego.detach().numpy(), bundle.user_ego)
    np.testing.assert_array_equal(item_ego.detach().numpy(), bundle.item_layers[0])
    assert result.summary["warm_start"] == str(exported)
    assert result.bundle_dir is not None
    again = read_bundle(result.bundle_dir)
    np.testing.assert_allclose(again.user_embeddings, bundle.user_embeddings, atol=1e-6)
    np.testing.assert_allclose(again.item_embeddings, bundle.item_embeddings, atol=1e-6)


def test_warm_start_then_training_moves_the_student(
    exported: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(synthetic_dataset, tmp_path, *NO_TEACHER, "stage2.max_epochs=1")
    result = run_pipeline(config, export=False, warm_start_from=exported)

    assert result.student is not None
    user_ego = result.student.student.ego_parameters()[0].detach().numpy()
    start = read_bundle(exported).user_ego
    assert start is not None and not np.allclose(user_ego, start)


def test_cli_student_warm_start(exported: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    settings = [
        f"data.path={json.dumps(str(synthetic_dataset))}",
        f"run.runs_dir={json.dumps(str(tmp_path / 'runs'))}",
        f"run.models_dir={json.dumps(str(tmp_path / 'models'))}",
        "run.progress=false",
        "stage2.max_epochs=1",
        "stage2.lr=0",
        *NO_TEACHER,
    ]
    argv = ["student", "configs/synthetic.toml", "--warm-start", str(exported), "--no-export"]
    for setting in settings:
        argv += ["--set", setting]

    assert main(argv) == 0


def test_warm_start_and_teacher_init_exclude_each_other(
    exported: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(synthetic_dataset, tmp_path, "student.init_from_teacher=true")
    with pytest.raises(ValueError, match="exclude each other"):
        run_pipeline(config, export=False, warm_start_from=exported)


def test_a_bundle_of_other_ids_dims_or_without_layers_is_refused(
    exported: Path, synthetic_dataset: Path, tmp_path: Path
) -> None:
    bundle = read_bundle(exported)
    config = frozen(synthetic_dataset, tmp_path)
    renamed = dataclasses.replace(
        bundle, user_ids=[f"x{user}" for user in bundle.user_ids], model_version="renamed"
    )
    bare = dataclasses.replace(bundle, user_ego=None, item_layers=None, model_version="bare")
    cases = {
        "user/item ids": write_bundle(renamed, tmp_path / "models-a"),
        "no propagation.npz": write_bundle(bare, tmp_path / "models-b"),
    }
    for message, path in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            run_pipeline(config, export=False, warm_start_from=path)
    with pytest.raises(ValueError, match=r"student\.dim = 8"):
        run_pipeline(
            frozen(synthetic_dataset, tmp_path, "student.dim=8"),
            export=False,
            warm_start_from=exported,
        )
    with pytest.raises(ValueError, match="cannot warm-start"):
        run_pipeline(config, export=False, warm_start_from=tmp_path / "missing")
