"""Export of the student (its embeddings only) as a bundle, and evaluation of a bundle.

The bundle format is ``bundle/format.py`` (see ``models/README.md``): nothing of the
teacher, the prompt module or torch leaves training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle import Bundle, new_version, read_bundle, write_bundle
from training.coldstart import content_for_export
from training.config import EvalConfig
from training.data import Dataset
from training.evaluate import evaluate

logger = logging.getLogger(__name__)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def export_student(
    dataset: Dataset,
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    config: dict[str, Any],
    metrics: dict[str, Any],
    models_dir: Path,
    *,
    user_ego: torch.Tensor,
    item_layers: torch.Tensor,
) -> Path:
    """Write the student's embeddings to ``<models_dir>/<dataset>/<version>/``, update LATEST.

    Args:
        dataset: the data the student was trained on (its training split and ids go along).
        user_emb: (U, d) final user embeddings.
        item_emb: (I, d) final item embeddings.
        config: the resolved training config (stored in the manifest).
        metrics: validation/test metrics at the selected epoch (stored in the manifest).
        models_dir: the models root; the bundle goes under ``<dataset name>/``.
        user_ego: (U, d) the student's user ego embeddings.
        item_layers: (L, I, d) its item embeddings at LightGCN layers ``0..L-1``; with
            ``user_ego`` they must reproduce ``user_emb`` (``bundle.validate`` checks it).

    Items without a training interaction get their content embedding from the content map
    chosen on the validation split (:func:`training.coldstart.content_for_export`), which
    the bundle carries (format 2) when the dataset has item features and ``run.content_map``
    does not turn the selection off.

    Returns:
        The version directory written.
    """
    train = dataset.train.tocsr()
    users, items, layers = _numpy(user_emb), _numpy(item_emb), _numpy(item_layers)
    run = config.get("run", {})
    content = content_for_export(
        dataset.features,
        users,
        items,
        layers,
        train,
        dataset.valid,
        int(run.get("seed", 0)),
        mode=run.get("content_map", "auto"),
    )
    if content is not None:
        items, layers = content.item_embeddings, content.item_layers
        metrics = {**metrics, "content_map": content.summary}
    bundle = Bundle(
        user_embeddings=users,
        item_embeddings=items,
        train_indptr=train.indptr.astype(np.int64),
        train_indices=train.indices.astype(np.int32),
        user_ids=list(dataset.user_ids),
        item_ids=list(dataset.item_ids),
        model_version=new_version(dataset.name),
        dataset=dataset.name,
        data_fingerprint=dataset.fingerprint,
        config=config,
        metrics=metrics,
        user_ego=_numpy(user_ego),
        item_layers=layers,
        content_map=None if content is None else content.content_map,
    )
    target = write_bundle(bundle, models_dir / dataset.name)
    logger.info("exported the student to %s", target)
    return target


def check_matches(bundle: Bundle, dataset: Dataset) -> None:
    """Raise ValueError unless ``bundle`` was trained on exactly ``dataset``."""
    if bundle.data_fingerprint != dataset.fingerprint:
        raise ValueError(
            f"bundle {bundle.model_version} was trained on data {bundle.data_fingerprint}, "
            f"but {dataset.name!r} has fingerprint {dataset.fingerprint}; "
            "evaluate it on the dataset it was exported from"
        )
    check_same_ids(bundle, dataset)


def check_same_ids(bundle: Bundle, dataset: Dataset) -> None:
    """Raise ValueError unless ``bundle`` indexes users and items exactly as ``dataset`` does."""
    if bundle.user_ids != list(dataset.user_ids) or bundle.item_ids != list(dataset.item_ids):
        raise ValueError(
            f"bundle {bundle.model_version}: its user/item ids ({bundle.n_users} x "
            f"{bundle.n_items}) differ from {dataset.name!r}'s ({dataset.n_users} x "
            f"{dataset.n_items})"
        )


def evaluate_bundle(
    path: Path, dataset: Dataset, eval_config: EvalConfig
) -> tuple[Bundle, dict[str, dict[str, float]]]:
    """Read the bundle at ``path`` (validated) and compute its validation and test metrics.

    Validation masks training items; test masks training and validation items.
    """
    bundle = read_bundle(path)
    check_matches(bundle, dataset)
    users = torch.tensor(bundle.user_embeddings)  # read_bundle's arrays are read-only
    items = torch.tensor(bundle.item_embeddings)
    options: dict[str, Any] = {
        "ks": eval_config.ks,
        "ndcg": eval_config.ndcg,
        "chunk_size": eval_config.chunk_size,
    }
    metrics = {
        "valid": evaluate(users, items, dataset.valid, exclude=[dataset.train], **options),
        "test": evaluate(
            users, items, dataset.test, exclude=[dataset.train, dataset.valid], **options
        ),
    }
    return bundle, metrics
