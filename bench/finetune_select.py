"""Choose the online user-update method without the test split (Table 7 holdout bundle).

    python -m bench.finetune_select --bundle PATH [--data DIR] [--seed 0]

Selection sets (none reads tiktok's test split), on the stale bundle trained without the
held-out item ``h`` of each user of :func:`bench.replay_data.holdout_pairs`:

- **online**: each validation user with a held-out item posts it;
  the update sees the user's stale training items plus ``h`` and must rank the user's
  validation item, which no model saw (Recall@20 = hit@20, NDCG@20);
- **cold**: the same users as new users (start from the mean user), their items posted;
- **hidden**: each test user posts ``h`` with one other stale training item ``g`` (drawn
  with ``seed + 1``) hidden from the update, and must rank ``g``; the stale vector was
  trained on ``g``, so this set measures forgetting.

The method with the best mean R@20 over online and cold is chosen (the service updates
known and new users alike). Then the chosen method alone is scored on the test split once, as in
``bench.table7_replay`` (training and validation items masked).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, markdown_table, setup_logging, shared_datasets, write_report
from bench.replay_data import holdout_pairs, metrics_on_test
from bundle import Bundle, fold_in_user, read_bundle
from service.finetune import finetune_user, mean_fold_in, mean_square
from training.data import Dataset, load_dataset
from training.export import check_same_ids

logger = logging.getLogger(__name__)
Update = Callable[[int | None, np.ndarray, int], np.ndarray]
BPR_GRID = ((20, 2.0, 0.01), (20, 10.0, 0.01), (50, 10.0, 0.01), (20, 10.0, 0.0))
MEAN_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
RIDGE_GRID = ((1.0, 20), (10.0, 1), (10.0, 100), (100.0, 100))


def top_score(item_emb: np.ndarray, user: np.ndarray, rank: int) -> float:
    """The ``rank``-th highest score ``user . e_i`` over the catalog (1-based, clipped)."""
    scores = item_emb.astype(np.float64) @ user
    kth = min(max(rank, 1), scores.size)
    return float(np.partition(scores, scores.size - kth)[scores.size - kth])


def ridge_fold_in(
    item_emb: np.ndarray,
    start: np.ndarray,
    positives: np.ndarray,
    reg: float,
    target_rank: int,
    item_scale: float,
) -> np.ndarray:
    """Candidate: the smallest ridge change of ``start`` lifting every positive's score.

    Solves ``u = argmin sum_i (y_i - u . e_i)^2 + reg * s * ||u - start||^2`` over the
    positives ``i``, with ``y_i = max(start . e_i, t)`` where ``t`` is the ``target_rank``-th
    highest catalog score of ``start``: positives already scored in the top ``target_rank``
    keep their score, the others are pulled up to that level. Closed form
    ``u = start + (E^T E + reg * s * I)^-1 E^T (y - E start)``, a (dim x dim) solve.
    """
    pos_emb = item_emb[positives].astype(np.float64)
    scores = pos_emb @ start
    targets = np.maximum(scores, top_score(item_emb, start, target_rank))
    gram = pos_emb.T @ pos_emb + (reg * item_scale) * np.eye(start.size)
    return np.asarray(start + np.linalg.solve(gram, pos_emb.T @ (targets - scores)))


def candidates(bundle: Bundle) -> dict[str, Update]:
    """Every method and setting compared: name -> update(user row or None, positives, seed).

    A ``None`` row is a new user: it starts from the mean user vector (the mean ego for
    ``propagate``), as the service does.
    """
    items = bundle.item_embeddings
    scale = mean_square(items)
    mean_user = bundle.user_embeddings.mean(axis=0)

    def start(row: int | None) -> np.ndarray:
        return mean_user if row is None else bundle.user_embeddings[row]

    methods: dict[str, Update] = {"stale (no update)": lambda row, pos, seed: start(row)}
    if bundle.user_ego is not None and bundle.item_layers is not None:
        ego, layers = bundle.user_ego, bundle.item_layers
        mean_ego, degrees = ego.mean(axis=0), bundle.item_popularity()
        methods["propagate"] = lambda row, pos, seed: fold_in_user(
            mean_ego if row is None else ego[row], layers, pos, degrees
        )

    def bpr(steps: int, lr: float, prox: float) -> Update:
        return lambda row, pos, seed: finetune_user(
            items,
            start(row),
            pos,
            np.random.default_rng(seed),
            steps,
            lr,
            64,
            prox,
            item_scale=scale,
            method="bpr",
        )

    def mean(beta: float) -> Update:
        return lambda row, pos, seed: mean_fold_in(items, start(row), pos, beta, scale)

    def ridge(reg: float, rank: int) -> Update:
        return lambda row, pos, seed: ridge_fold_in(items, start(row), pos, reg, rank, scale)

    for steps, lr, prox in BPR_GRID:
        methods[f"bpr steps={steps} lr={lr} prox={prox}"] = bpr(steps, lr, prox)
    for beta in MEAN_GRID:
        methods[f"mean beta={beta}"] = mean(beta)
    for reg, rank in RIDGE_GRID:
        methods[f"ridge reg={reg} rank={rank}"] = ridge(reg, rank)
    return methods


Case = tuple[int | None, np.ndarray, np.ndarray, int]
"""(user row, or None for a new user; update positives; ranking mask; target item)."""


def hidden_item_set(bundle: Bundle, dataset: Dataset, seed: int) -> list[Case]:
    """Test users of the replay: post ``h``, one stale item ``g`` hidden from the update."""
    rng = np.random.default_rng(seed + 1)
    test_users = set(dataset.test.tocoo().row.tolist())
    cases: list[Case] = []
    for user, posted in holdout_pairs(dataset, seed):
        if user not in test_users:
            continue
        stale = bundle.seen_items(user).astype(np.int64)
        hidden = int(rng.choice(stale))
        positives = np.union1d(stale[stale != hidden], [posted])
        cases.append((user, positives, positives, hidden))
    return cases


def online_set(bundle: Bundle, dataset: Dataset, seed: int, cold: bool) -> list[Case]:
    """Validation users of the replay: post ``h``, rank the validation item.

    The user starts from its stale vector, or as a new user (``cold``) whose posted items
    are its stale training items plus ``h``.
    """
    valid = dataset.valid.tocsr()
    cases: list[Case] = []
    for user, posted in holdout_pairs(dataset, seed):
        targets = valid.indices[valid.indptr[user] : valid.indptr[user + 1]]
        if targets.size == 0:
            continue
        positives = np.union1d(bundle.seen_items(user).astype(np.int64), [posted])
        for target in targets.tolist():
            cases.append((None if cold else user, positives, positives, int(target)))
    return cases


def hit_metrics(
    vectors: np.ndarray, items: np.ndarray, masks: Sequence[np.ndarray], targets: np.ndarray
) -> tuple[float, float]:
    """Mean hit@20 and NDCG@20 of one target per row, ``masks`` excluded (ties: lower index)."""
    scores = vectors.astype(np.float64) @ items.T.astype(np.float64)
    for row, mask in enumerate(masks):
        scores[row, mask] = -np.inf
    rows = np.arange(len(targets))
    target = scores[rows, targets][:, None]
    lower = np.arange(items.shape[0])[None, :] < targets[:, None]
    rank = (scores > target).sum(axis=1) + ((scores == target) & lower).sum(axis=1)
    hit = rank < 20
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())


def selection_score(results: dict[str, dict[str, tuple[float, float, float]]], name: str) -> float:
    """Mean R@20 of ``name`` over the online and cold sets: the service updates both kinds."""
    return (results["online"][name][0] + results["cold"][name][0]) / 2


def select(bundle: Bundle, cases: list[Case]) -> dict[str, tuple[float, float, float]]:
    """Method -> (R@20, N@20, mean ms per update) of every candidate on ``cases``."""
    items = bundle.item_embeddings
    masks = [mask for _, _, mask, _ in cases]
    targets = np.array([target for *_, target in cases])
    scored = {}
    for name, update in candidates(bundle).items():
        started = time.perf_counter()
        vectors = np.stack(
            [update(user, pos, seed) for seed, (user, pos, _, _) in enumerate(cases)]
        )
        cost = (time.perf_counter() - started) * 1e3 / len(cases)
        recall, ndcg = hit_metrics(vectors, items, masks, targets)
        scored[name] = (recall, ndcg, cost)
    return scored


def test_metrics(
    bundle: Bundle, dataset: Dataset, seed: int, update: Update
) -> tuple[dict[str, float], dict[str, float]]:
    """Test metrics of the stale bundle and of it after one update per replayed post."""
    users = bundle.user_embeddings.copy()
    for user, posted in holdout_pairs(dataset, seed):
        positives = np.union1d(bundle.seen_items(user).astype(np.int64), [posted])
        users[user] = update(user, positives, user)
    return (
        metrics_on_test(bundle.user_embeddings, bundle.item_embeddings, dataset),
        metrics_on_test(users, bundle.item_embeddings, dataset),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune_select", description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="stale holdout bundle")
    parser.add_argument("--data", type=Path, default=shared_datasets() / "tiktok")
    parser.add_argument("--seed", type=int, default=0, help="holdout draw")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "finetune-select.md")
    args = parser.parse_args(argv)
    setup_logging()
    dataset = load_dataset(args.data)
    bundle = read_bundle(args.bundle)
    check_same_ids(bundle, dataset)
    sets = {
        "online": online_set(bundle, dataset, args.seed, cold=False),
        "cold": online_set(bundle, dataset, args.seed, cold=True),
        "hidden": hidden_item_set(bundle, dataset, args.seed),
    }
    results = {name: select(bundle, cases) for name, cases in sets.items()}
    methods = list(results["online"])
    best = max(methods[1:], key=lambda name: selection_score(results, name))
    rows = [
        [f"**{name}**" if name == best else name]
        + [f"{results[kind][name][metric]:.4f}" for kind in sets for metric in (0, 1)]
        + [f"{results['online'][name][2]:.2f}"]
        for name in methods
    ]
    stale, updated = test_metrics(bundle, dataset, args.seed, candidates(bundle)[best])
    logger.info("chosen %s: test %s -> %s", best, stale, updated)
    headers = ["method"] + [f"{kind} {m}" for kind in sets for m in ("R@20", "N@20")] + ["ms"]
    sizes = ", ".join(f"{kind} {len(cases)}" for kind, cases in sets.items())
    test_rows = [
        [label, f"{metrics['recall@20']:.4f}", f"{metrics['ndcg@20']:.4f}"]
        for label, metrics in (("(a) stale", stale), (f"(b) {best}, one update", updated))
    ]
    write_report(
        args.out,
        f"Online user-update selection on {dataset.name} (no test data)",
        [
            f"Stale bundle `{bundle.model_version}`. Selection sets ({sizes} users): " + SETS,
            f"Chosen on the mean R@20 of online and cold (the service updates known and new "
            f"users): **{best}**; ms = mean per update on online.",
            markdown_table(headers, rows),
            "Test split, read once for the chosen method only (training and validation items "
            "masked, as `bench.table7_replay`; one update per replayed post):",
            markdown_table(["model", "test R@20", "test N@20"], test_rows),
        ],
    )
    return 0


SETS = (
    "**online**: each validation user with a held-out item posts it, starting from its "
    "stale vector, and must rank its validation item, which no model saw. **cold**: the "
    "same users as new users (mean user start; their stale training items and the held-out "
    "item posted). **hidden**: each test user posts its held-out item with one other stale "
    "training item hidden from the update, and must rank it; the stale vector was trained on "
    "it, so this set measures forgetting, not progress. Targets are never masked; all other "
    "positives are."
)


if __name__ == "__main__":
    raise SystemExit(main())
