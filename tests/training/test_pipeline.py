"""End to end on the tiny synthetic dataset: teacher -> student -> export -> read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle import fold_in_user, read_bundle
from training.config import REPO_ROOT, Config, load_config
from training.context import build_context
from training.data import load_dataset
from training.loop import NonFiniteLossError, check_finite
from training.pipeline import PipelineResult, load_teacher, run_pipeline
from training.runs import CONFIG_FILE, CURVE_FILE, METRICS_FILE, SUMMARY_FILE, TEACHER_CKPT

SYNTHETIC = REPO_ROOT / "configs" / "synthetic.toml"


def tiny_config(data: Path, out: Path, *extra: str) -> Config:
    """The synthetic config cut to 2 epochs per stage, writing under ``out``."""
    return load_config(
        SYNTHETIC,
        [
            f"data.path={json.dumps(str(data))}",
            f"run.runs_dir={json.dumps(str(out / 'runs'))}",
            f"run.models_dir={json.dumps(str(out / 'models'))}",
            "run.device='cpu'",
            "run.progress=false",
            "stage1.max_epochs=2",
            "stage2.max_epochs=2",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def full_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    out = tmp_path_factory.mktemp("pipeline")
    return run_pipeline(tiny_config(synthetic_dataset, out))


def test_run_folder_holds_config_metrics_curve_and_summary(full_run: PipelineResult) -> None:
    for name in (CONFIG_FILE, METRICS_FILE, CURVE_FILE, SUMMARY_FILE, TEACHER_CKPT):
        assert (full_run.run_dir / name).is_file(), name
    history = json.loads((full_run.run_dir / METRICS_FILE).read_text())
    assert [r["epoch"] for r in history["teacher"]] == [1, 2]
    assert [r["epoch"] for r in history["student"]] == [1, 2]
    student_record = history["student"][0]
    assert {"loss", "bpr", "pair_kd", "list_kd", "emb_kd", "valid_recall@20"} <= set(student_record)
    saved = json.loads((full_run.run_dir / CONFIG_FILE).read_text())
    assert saved["stage2"]["max_epochs"] == 2


def test_summary_reports_test_at_the_best_validation_epoch(full_run: PipelineResult) -> None:
    summary = full_run.summary
    assert "validation items masked" in summary["protocol"]["test"]
    history = json.loads((full_run.run_dir / METRICS_FILE).read_text())["student"]
    best = max(history, key=lambda r: r["valid_recall@20"])
    assert summary["student"]["best_epoch"] == best["epoch"]
    assert summary["student"]["valid"]["recall@20"] == pytest.approx(best["valid_recall@20"])
    for stage in ("teacher", "student"):
        assert 0.0 <= summary[stage]["test"]["recall@20"] <= 1.0


def test_exported_bundle_reads_back_as_the_student(
    full_run: PipelineResult, synthetic_dataset: Path
) -> None:
    assert full_run.bundle_dir is not None and full_run.student is not None
    bundle = read_bundle(full_run.bundle_dir.parent)  # via LATEST
    assert bundle.model_version == full_run.bundle_dir.name
    np.testing.assert_array_equal(bundle.user_embeddings, full_run.student.user_emb.numpy())
    np.testing.assert_array_equal(bundle.item_embeddings, full_run.student.item_emb.numpy())
    dataset = load_dataset(synthetic_dataset)
    assert bundle.data_fingerprint == dataset.fingerprint
    np.testing.assert_array_equal(bundle.train_indptr, dataset.train.indptr)
    assert bundle.metrics["test"] == full_run.summary["student"]["test"]
    assert bundle.config["stage1"]["max_epochs"] == 2
    assert bundle.dim == 16


def test_exported_bundle_carries_the_best_students_layers(full_run: PipelineResult) -> None:
    assert full_run.bundle_dir is not None and full_run.student is not None
    bundle = read_bundle(full_run.bundle_dir)  # validate() recomputes every user from the layers
    assert bundle.n_layers == bundle.config["student"]["n_layers"] == 2
    assert full_run.student.student.n_layers == 2
    assert bundle.user_ego is not None and bundle.item_layers is not None
    user_ego, item_ego = full_run.student.student.ego_parameters()  # the best epoch's, reloaded
    np.testing.assert_array_equal(bundle.user_ego, user_ego.detach().numpy())
    np.testing.assert_array_equal(bundle.item_layers[0], item_ego.detach().numpy())
    degrees = bundle.item_popularity()
    for user in range(bundle.n_users):
        folded = fold_in_user(
            bundle.user_ego[user], bundle.item_layers, bundle.seen_items(user), degrees
        )
        np.testing.assert_allclose(folded, bundle.user_embeddings[user], rtol=1e-5, atol=1e-6)


def test_prompt_trains_with_the_student_and_the_teacher_stays_frozen(
    full_run: PipelineResult, synthetic_dataset: Path, tmp_path: Path
) -> None:
    teacher = full_run.teacher
    assert teacher is not None and teacher.prompt is not None
    assert not any(p.requires_grad for p in teacher.teacher.parameters())
    assert not teacher.teacher.training
    saved = torch.load(full_run.run_dir / TEACHER_CKPT, weights_only=True)
    for key, value in saved["teacher"].items():
        torch.testing.assert_close(teacher.teacher.state_dict()[key], value)
    changed = [
        not torch.equal(teacher.prompt.state_dict()[key], value)
        for key, value in saved["prompt"].items()
    ]
    assert any(changed), "stage 2 should have updated the prompt module"


def test_prompt_every_n_steps_still_tunes_the_prompt(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        synthetic_dataset,
        tmp_path,
        "stage1.max_epochs=1",
        "stage2.max_epochs=1",
        "kd.prompt_every=3",
    )
    result = run_pipeline(config, export=False)
    assert result.teacher is not None and result.teacher.prompt is not None
    saved = torch.load(result.run_dir / TEACHER_CKPT, weights_only=True)["prompt"]
    current = result.teacher.prompt.state_dict()
    assert any(not torch.equal(current[key], value) for key, value in saved.items())


def test_teacher_init_copies_the_teacher_ids(synthetic_dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(
        synthetic_dataset,
        tmp_path,
        "student.init_from_teacher=true",
        "stage2.max_epochs=1",
        "stage2.lr=0",
        "kd.tune_prompt=false",
    )
    result = run_pipeline(config, export=False)
    assert result.teacher is not None and result.student is not None
    for student_ego, teacher_ego in zip(
        result.student.student.ego_parameters(),
        result.teacher.teacher.ego_parameters(),
        strict=True,
    ):
        torch.testing.assert_close(student_ego, teacher_ego)


def test_lightgcn_alone_needs_no_teacher(synthetic_dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(
        synthetic_dataset,
        tmp_path,
        "stage1.enabled=false",
        "kd.pair_weight=0",
        "kd.list_weight=0",
        "kd.emb_weight=0",
    )
    result = run_pipeline(config, export=False)
    assert result.teacher is None and result.bundle_dir is None
    history = json.loads((result.run_dir / METRICS_FILE).read_text())
    assert set(history) == {"student"}
    assert set(history["student"][0]) >= {"bpr", "l2"}
    assert "pair_kd" not in history["student"][0]


def test_kd_without_a_teacher_is_an_error(synthetic_dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(synthetic_dataset, tmp_path, "stage1.enabled=false")
    with pytest.raises(ValueError, match="no teacher"):
        run_pipeline(config)


def test_nan_loss_raises() -> None:
    with pytest.raises(NonFiniteLossError, match="student epoch 3: loss is nan"):
        check_finite(torch.tensor(float("nan")), {"bpr": 0.7}, "student epoch 3")


def test_contrastive_teacher_loss_is_logged_and_bad_values_are_rejected(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        synthetic_dataset, tmp_path, "teacher.cl_weight=0.5", "stage1.max_epochs=1"
    )
    result = run_pipeline(config, export=False)
    first = json.loads((result.run_dir / METRICS_FILE).read_text())["teacher"][0]
    assert first["cl"] > 0 and first["loss"] > first["bpr"] + first["cl"]
    off = tiny_config(synthetic_dataset, tmp_path, "stage1.max_epochs=1")
    first_off = json.loads((run_pipeline(off, export=False).run_dir / METRICS_FILE).read_text())
    assert "cl" not in first_off["teacher"][0]
    for bad in ("teacher.cl_weight=-1", "teacher.cl_tau=0", "teacher.cl_eps=-0.1"):
        with pytest.raises(ValueError, match=r"teacher\.cl_weight and teacher\.cl_eps"):
            run_pipeline(tiny_config(synthetic_dataset, tmp_path, bad), export=False)


def test_item_knn_teacher_trains_distils_and_reloads(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        synthetic_dataset,
        tmp_path,
        "teacher.item_knn_k=3",
        "teacher.item_knn_hops=2",
        "stage1.max_epochs=1",
        "stage2.max_epochs=1",
    )
    result = run_pipeline(config, export=False)
    assert result.teacher is not None and result.student is not None
    teacher = result.teacher.teacher
    graph = teacher.item_graph()
    assert graph is not None and teacher.item_graph_hops == 2
    # the checkpoint holds no graph: loading rebuilds it from the saved config and features
    ctx = build_context(load_dataset(synthetic_dataset), config)
    loaded = load_teacher(result.run_dir, ctx).teacher
    reloaded_graph = loaded.item_graph()
    assert reloaded_graph is not None
    assert torch.equal(reloaded_graph.to_dense(), graph.to_dense())
    with torch.no_grad():
        torch.testing.assert_close(loaded.propagate_ids(ctx.adj), teacher.propagate_ids(ctx.adj))
