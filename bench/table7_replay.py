"""The paper's online-update experiment (its Table 7) replayed through the service on tiktok.

    python -m bench.table7_replay [--protocol valid|holdout] [--bundle PATH] [--retrained PATH]

``--protocol valid`` (the issue's protocol):
  (a) stale: the bundle trained on the training split only (``--bundle``, default
      ``models/tiktok``, trained with configs/tiktok.toml when absent);
  (b) online: the service (embedded store) on that bundle receives every validation
      interaction through ``POST /interactions``, one request each; the vectors it then
      serves (folded users, the item overlay) are read through its own ``Recommender``;
  (b') fine-tune: (a)'s student warm-started from its own egos (``training student
      --warm-start``) on (c)'s data for a few epochs, KD off: the paper's Table 7 procedure,
      as a job whose bundle the service takes with ``POST /admin/reload``;
  (c) retrain: the training CLI on a copy of the dataset whose train split is train +
      validation (300 validation interactions stay out as its early-stopping split).
  On tiktok no validation user has a test item, so (b) moves test rankings only through the
  item overlay.
``--protocol holdout`` (where the updated users are evaluated): one training item of every
  test and validation user with >= 2 is held out (:func:`bench.replay_data.holdout_pairs`);
  (a) trains without them (``--bundle``, else trained here on the schedule (c) ended with:
  :func:`schedule_of`), (b) replays them online, (b') fine-tunes (a) on the full training
  split, (c) is the model trained on the full training split
  (``--retrained``, default ``models/tiktok``).
Test Recall@20 / NDCG@20 mask training and validation items in every row. Writes
``bench/results/table7-replay[-holdout].md``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import (
    RESULTS_DIR,
    TIKTOK_CONFIG,
    LatencyStats,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    shared_datasets,
    train,
    write_report,
)
from bench.replay_data import (
    external,
    holdout_pairs,
    metrics_on_test,
    validation_pairs,
    write_holdout,
    write_merged,
)
from bundle import Bundle, read_bundle
from service.config import load_settings
from service.recommender import Recommender
from service.store import SQLiteStore
from training.data import Dataset, load_dataset
from training.export import check_same_ids

logger = logging.getLogger(__name__)


def replay(bundle_path: Path, pairs: list[tuple[str, str]], workdir: Path) -> LatencyStats:
    """Post every pair through ``/interactions`` (one request each); return their latencies."""
    latencies: list[float] = []
    errors = 0
    service = bench_service(bundle_path, workdir / "replay.sqlite3", workdir / "service.log")
    with service:
        started = time.perf_counter()
        with service.client() as client:
            for user_id, item_id in pairs:
                sent = time.perf_counter()
                response = client.post(
                    "/interactions", json={"user_id": user_id, "item_ids": [item_id]}
                )
                latencies.append(time.perf_counter() - sent)
                if response.status_code != 200:
                    errors += 1
                    logger.warning("%s %s: %s", user_id, item_id, response.text[:200])
        elapsed = time.perf_counter() - started
    return LatencyStats.of("POST /interactions", latencies, errors, elapsed)


def online_embeddings(
    bundle_path: Path, store_path: Path, users: set[str]
) -> tuple[np.ndarray, np.ndarray, float]:
    """The user and item vectors the service serves after the replay, and the sync time.

    The service's own :class:`~service.recommender.Recommender` reads the replay's store, so
    the vectors are exactly what ``/recommend`` uses: each updated user's folded vector and
    the item overlay (items re-propagated with the posted interactions). Also returns the
    seconds it took to apply the whole log to a fresh overlay (a replica starting up).
    """
    settings = load_settings(
        bundle_path=bundle_path, store_path=store_path, allow_open_writes=True, REDIS_URL=None
    )
    store = SQLiteStore(store_path)
    try:
        started = time.perf_counter()
        recommender = Recommender.load(settings, store)
        loaded = time.perf_counter() - started
        user_emb = recommender.bundle.user_embeddings.copy()
        index = {user_id: row for row, user_id in enumerate(recommender.bundle.user_ids)}
        for user_id in users:
            vector = recommender.user_vector(user_id)
            if vector is None:
                raise ValueError(f"updated user {user_id!r} has no vector")
            user_emb[index[user_id]] = vector
        item_emb = recommender.item_vectors()
    finally:
        store.close()
    return user_emb, item_emb, loaded


def train_on(data: Path, workdir: Path, extra: Sequence[str] = ()) -> tuple[Path, float]:
    """Train configs/tiktok.toml on ``data``; return the models root and the wall time."""
    models = workdir / "models"
    started = time.perf_counter()
    train(
        TIKTOK_CONFIG,
        [
            f"data.path={data}",
            f"run.models_dir={models}",
            f"run.runs_dir={workdir / 'runs'}",
            "run.progress=false",
            *extra,
        ],
    )
    return models / data.name, time.perf_counter() - started


def schedule_of(reference: Bundle) -> list[str]:
    """Overrides that train exactly the schedule ``reference`` ended with, without early stops.

    The teacher runs all its epochs and the student stops at the reference's best epoch,
    evaluated only there: holding out the validation users' items changes what validation
    early stopping would pick, and (a) must differ from (c) in its data only.
    """
    stage1 = reference.config["stage1"]
    epoch = int(reference.metrics["best_epoch"])
    return [
        f"stage1.patience={stage1['max_epochs']}",
        f"stage2.max_epochs={epoch}",
        f"stage2.eval_every={epoch}",
    ]


FINETUNE_SCHEDULE = (
    "stage2.max_epochs=6",
    "stage2.eval_every=1",
    "stage2.patience=3",
)
"""The warm-start fine-tune's budget: a few epochs, the best on validation kept."""


def finetune(stale: Path, data: Path, workdir: Path) -> tuple[Path, float]:
    """Warm-start (a)'s student on ``data`` (KD off: the teacher is not exported); wall time."""
    models = workdir / "finetuned"
    overrides = [
        f"data.path={data}",
        f"run.models_dir={models}",
        f"run.runs_dir={workdir / 'runs'}",
        "run.progress=false",
        "kd.pair_weight=0",
        "kd.list_weight=0",
        "kd.emb_weight=0",
        *FINETUNE_SCHEDULE,
    ]
    started = time.perf_counter()
    train(TIKTOK_CONFIG, overrides, stage="student", options=["--warm-start", str(stale)])
    return models / data.name, time.perf_counter() - started


@dataclass(frozen=True)
class Plan:
    """What one protocol compares: the stale (a), the pairs to replay, the reference (c).

    ``finetune_data`` is the dataset whose training split holds the replayed pairs too.
    """

    stale: Path
    pairs: list[tuple[int, int]]
    reference: Path
    reference_label: str
    retrain_s: float | None
    finetune_data: Path


def plan(args: argparse.Namespace, dataset: Dataset, workdir: Path) -> Plan:
    """The stale bundle, the pairs to replay and the reference (c) for ``args.protocol``."""
    timed: float | None = None
    if args.protocol == "valid":
        stale = ensure_tiktok_bundle(args.bundle)
        pairs = validation_pairs(dataset)
        reference = args.retrained
        merged = write_merged(dataset, args.data, workdir / "merged" / dataset.name, 300, 0)
        if reference is None:
            reference, timed = train_on(merged, workdir)
        what = "(c) full retrain on train + valid"
        return Plan(stale, pairs, reference, what, timed, merged)
    else:
        pairs = holdout_pairs(dataset, args.seed)
        reference = ensure_tiktok_bundle(args.retrained)
        stale = args.bundle
        if stale is None:
            data = write_holdout(dataset, args.data, workdir / "holdout" / dataset.name, args.seed)
            stale, _ = train_on(data, workdir, schedule_of(read_bundle(reference)))
        what = "(c) trained on the full train split"
    return Plan(stale, pairs, reference, what, timed, args.data)


def cost_note(update: LatencyStats, retrain_s: float | None) -> str:
    note = (
        f"One update (HTTP round trip: validation, durable SQLite write; the user's vector "
        f"is folded from the stored interactions when next served): mean "
        f"{update.mean_ms:.2f} ms, p50 {update.p50_ms:.2f} ms, p99 "
        f"{update.p99_ms:.2f} ms over {update.requests} sequential requests "
        f"({update.errors} errors; {update.seconds:.1f} s for all of them)."
    )
    if retrain_s is not None:
        note += (
            f" The retrain (c) took {retrain_s:.0f} s wall time, "
            f"{retrain_s * 1000 / update.mean_ms:,.0f} times one update."
        )
    return note


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table7_replay", description=__doc__)
    parser.add_argument("--protocol", choices=("valid", "holdout"), default="valid")
    parser.add_argument("--bundle", type=Path, default=None, help="(a): bundle or models root")
    parser.add_argument("--retrained", type=Path, default=None, help="(c): bundle to reuse")
    parser.add_argument("--data", type=Path, default=shared_datasets() / "tiktok")
    parser.add_argument("--seed", type=int, default=0, help="holdout draw")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    if not args.data.is_dir():
        parser.error(f"{args.data}: no dataset there; set PROMPTMM_SHARED_DATASETS or --data")
    suffix = "" if args.protocol == "valid" else "-holdout"
    out = args.out or RESULTS_DIR / f"table7-replay{suffix}.md"
    dataset = load_dataset(args.data)
    test_users = set(np.unique(dataset.test.tocoo().row).tolist())
    with tempfile.TemporaryDirectory(prefix="promptmm-table7-") as tmp:
        workdir = Path(tmp)
        chosen = plan(args, dataset, workdir)
        stale, reference = read_bundle(chosen.stale), read_bundle(chosen.reference)
        for bundle in (stale, reference):
            check_same_ids(bundle, dataset)
        update = replay(chosen.stale, external(dataset, chosen.pairs), workdir)
        updated = {dataset.user_ids[user] for user, _ in chosen.pairs}
        online_users, online_items, loaded = online_embeddings(
            chosen.stale, workdir / "replay.sqlite3", updated
        )
        tuned_root, tuned_s = finetune(chosen.stale, chosen.finetune_data, workdir)
        tuned = read_bundle(tuned_root)
        check_same_ids(tuned, dataset)
    changed = len({user for user, _ in chosen.pairs} & test_users)
    retrain = f"{chosen.retrain_s:.0f} s" if chosen.retrain_s is not None else "(reused bundle)"
    rows = []
    for name, users, items, cost in (
        ("(a) stale", stale.user_embeddings, stale.item_embeddings, "0"),
        ("(b) (a) + online updates", online_users, online_items, f"{update.mean_ms:.1f} ms"),
        (
            "(b') (a) fine-tuned from its own egos on the same data as (c)",
            tuned.user_embeddings,
            tuned.item_embeddings,
            f"{tuned_s:.0f} s (all updates together)",
        ),
        (chosen.reference_label, reference.user_embeddings, reference.item_embeddings, retrain),
    ):
        metrics = metrics_on_test(users, items, dataset)
        rows.append([name, f"{metrics['recall@20']:.4f}", f"{metrics['ndcg@20']:.4f}", cost])
    notes = (
        f"Protocol `{args.protocol}`. (a) `{stale.model_version}`, (c) "
        f"`{reference.model_version}`. {len(chosen.pairs)} interactions of {len(updated)} "
        f"users were posted, one request each; {changed} of the {len(test_users)} test users "
        "are among them. Test metrics mask training and validation items."
    )
    notes += (
        f" (b) serves the updated users' folded vectors and the item overlay: "
        f"{int(np.any(online_items != stale.item_embeddings, axis=1).sum())} items re-propagated "
        f"with the posted interactions (applying the whole log to a fresh service took "
        f"{loaded:.2f} s, bundle load included)."
    )
    notes += (
        f" (b') is `python -m training student --warm-start (a)` on (c)'s data, KD off, "
        f"{', '.join(FINETUNE_SCHEDULE)}: best validation epoch "
        f"{tuned.metrics['best_epoch']}; served by `POST /admin/reload` of its bundle."
    )
    table = markdown_table(["model", "test R@20", "test N@20", "cost"], rows)
    text = write_report(
        out,
        f"Table 7 replay on {dataset.name}: online updates vs retraining ({args.protocol})",
        [notes, table, cost_note(update, chosen.retrain_s)],
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
