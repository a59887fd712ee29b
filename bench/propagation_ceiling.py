"""The best any propagation-only online update can do on the Table 7 protocol (offline).

    PYTHONPATH=. python -m bench.propagation_ceiling [--bundle models/tiktok] [--data DIR]

The service's online update holds the student's ego embeddings fixed and re-propagates: users
over their enlarged neighbourhood, and the items that got interactions (``service/overlay.py``).
Its ceiling is the student's full LightGCN forward, with the same egos, over the graph of
train + validation: every user and every item moved. This computes that forward with the
training code's own adjacency and propagation, and the variants between it and the stale
bundle, and prints test Recall@20 / NDCG@20 (training and validation items masked):

- stale: the bundle as exported;
- items with validation interactions: only those items take their full-forward vectors
  (what the item overlay aims at);
- + the training items of validation users: also the items whose neighbours' degrees changed;
- every user and item: the full forward.

Whatever is left between the last row and a retrain (``bench.table7_replay``'s (c)) is only
recoverable by training the egos again. Writes ``bench/results/propagation-ceiling.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    shared_datasets,
    write_report,
)
from bench.replay_data import metrics_on_test
from bundle import Bundle, read_bundle
from training.data import Dataset, load_dataset
from training.export import check_same_ids
from training.graph import normalized_adjacency, propagate

logger = logging.getLogger(__name__)


def full_forward(bundle: Bundle, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The student's final embeddings over train + valid with the bundle's egos (fixed)."""
    if bundle.user_ego is None or bundle.item_layers is None:
        raise ValueError(f"bundle {bundle.model_version} has no LightGCN layers (re-export it)")
    ego = torch.from_numpy(np.concatenate([bundle.user_ego, bundle.item_layers[0]]))
    adj = normalized_adjacency(dataset.train + dataset.valid)
    with torch.no_grad():
        final = propagate(adj, ego, bundle.item_layers.shape[0]).numpy()
    return final[: bundle.n_users], final[bundle.n_users :]


def rows(bundle: Bundle, dataset: Dataset) -> list[list[object]]:
    users, items = full_forward(bundle, dataset)
    valid = dataset.valid.tocsr()
    valid_users = np.flatnonzero(np.diff(valid.indptr))
    touched = np.unique(valid.indices)
    neighbours = np.union1d(touched, np.unique(dataset.train.tocsr()[valid_users].indices))
    variants = {
        "stale (the bundle)": (bundle.user_embeddings, bundle.item_embeddings, 0),
    }
    for name, moved in (
        ("items with validation interactions", touched),
        ("+ the training items of validation users", neighbours),
    ):
        partial = bundle.item_embeddings.copy()
        partial[moved] = items[moved]
        variants[name] = (bundle.user_embeddings, partial, moved.size)
    variants["every user and item (full forward)"] = (users, items, bundle.n_items)
    table = []
    for name, (user_emb, item_emb, n_moved) in variants.items():
        metrics = metrics_on_test(user_emb, item_emb, dataset)
        logger.info("%s: %s", name, metrics)
        table.append([name, n_moved, f"{metrics['recall@20']:.4f}", f"{metrics['ndcg@20']:.4f}"])
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.propagation_ceiling", description=__doc__
    )
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--data", type=Path, default=shared_datasets() / "tiktok")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "propagation-ceiling.md")
    args = parser.parse_args(argv)
    setup_logging()
    if not args.data.is_dir():
        parser.error(f"{args.data}: no dataset there; set PROMPTMM_SHARED_DATASETS or --data")
    bundle = read_bundle(ensure_tiktok_bundle(args.bundle))
    dataset = load_dataset(args.data)
    check_same_ids(bundle, dataset)
    notes = (
        f"Bundle `{bundle.model_version}` (trained on the training split), dataset "
        f"`{os.path.relpath(args.data, REPO_ROOT)}`. Test Recall@20 / NDCG@20, training and "
        "validation items masked; the egos are the bundle's, only the graph grows by the "
        "validation interactions."
    )
    text = write_report(
        args.out,
        "Ceiling of a propagation-only online update (Table 7 protocol)",
        [
            notes,
            markdown_table(
                ["item vectors moved", "items moved", "R@20", "N@20"], rows(bundle, dataset)
            ),
        ],
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
