"""The service on a big synthetic catalog: start time, memory, throughput and ANN recall.

    python -m bench.scale_service [--users 1000000] [--items 200000] [--pairs 20000000]
                                  [--tiktok models/tiktok]

A generator writes a bundle of ``--users`` x ``--items`` (dim ``--dim``) with about ``--pairs``
training pairs (:func:`synthetic_bundle`; memory O(pairs + (users + items) x dim)): users and
items are drawn around ``--clusters`` Gaussian centres and each user's training items come
mostly from their own cluster, so nearest neighbours are structured as in a trained model and
an ANN index's recall means something. It is written once under
``models/synthetic-scale/<parameters>`` (git-ignored) and reused.

The service runs with default settings (one uvicorn worker, the container's command, fresh
SQLite store) pinned to CPU 0, ``wrk`` on CPU 1. Reported: time from spawn to ``/readyz``
(first start: the ANN index is built and saved beside the bundle; second start: loaded), the
worker's RSS after start and after load, ``/recommend`` req/s and p50/p99 for random bundle
users (k=20, response cache off, so every answer is computed), and recall@20 of the served
search (:class:`~service.index.ItemIndex` over the default index kind, training items
excluded) against exact search, over ``--recall-queries`` random users. ``--tiktok`` adds the
RSS of a worker serving that bundle. Writes ``bench/results/scale-service.md``.

Goals (2 cores, default settings): ready <= 30 s, <= 1.5 GB RSS per worker, >= 2,000 req/s at
p99 <= 10 ms, recall@20 >= 0.95; the tiktok bundle <= 150 MB RSS per worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT, RESULTS_DIR, bench_service, markdown_table, setup_logging
from bench.common import write_report as write_markdown
from bench.harness import ServiceProcess
from bench.mixed_load import process_cpu_s
from bench.wrk_load import CLIENT_CPU, SERVER_CPU, recommend_script, require_wrk, wrk_phase
from bundle import Bundle, read_bundle, resolve, write_bundle
from service.config import load_settings
from service.index import ItemIndex, build_index
from service.index_files import index_kind, load_index

logger = logging.getLogger(__name__)

SCALE_MODELS = REPO_ROOT / "models" / "synthetic-scale"
PAIR_CHUNK_USERS = 100_000
"""Users whose training pairs are drawn at once (bounds the generator's temporary arrays)."""
NOISE = 0.35
"""Spread of users and items around their cluster centre (centres have unit scale)."""
OWN_CLUSTER = 0.8
"""Share of a user's training items drawn from their own cluster (the rest: anywhere)."""


def synthetic_bundle(
    n_users: int, n_items: int, dim: int, pairs: int, clusters: int, seed: int
) -> Bundle:
    """A valid bundle with clustered embeddings and about ``pairs`` training pairs.

    Memory: the embeddings, and the CSR rows built ``PAIR_CHUNK_USERS`` users at a time.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    item_cluster = np.sort(rng.integers(0, clusters, size=n_items))
    items = centres[item_cluster] + NOISE * rng.standard_normal((n_items, dim), dtype=np.float32)
    cluster_start = np.searchsorted(item_cluster, np.arange(clusters))
    cluster_size = np.bincount(item_cluster, minlength=clusters)
    user_cluster = rng.integers(0, clusters, size=n_users)
    users = np.empty((n_users, dim), dtype=np.float32)
    mean_pairs = pairs / n_users
    counts = np.clip(rng.poisson(mean_pairs, size=n_users), 1, n_items)
    rows: list[np.ndarray] = []
    lengths = np.empty(n_users, dtype=np.int64)
    for start in range(0, n_users, PAIR_CHUNK_USERS):
        stop = min(start + PAIR_CHUNK_USERS, n_users)
        clusters_here = user_cluster[start:stop]
        users[start:stop] = centres[clusters_here] + NOISE * rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
        owners = np.repeat(np.arange(start, stop), counts[start:stop])
        own = rng.random(owners.size) < OWN_CLUSTER
        size = np.maximum(cluster_size[user_cluster[owners]], 1)
        picked = np.where(
            own & (cluster_size[user_cluster[owners]] > 0),
            cluster_start[user_cluster[owners]] + (rng.random(owners.size) * size).astype(np.int64),
            rng.integers(0, n_items, size=owners.size),
        )
        keys = np.unique(owners.astype(np.int64) * n_items + picked)
        owner_of_key = keys // n_items
        rows.append((keys % n_items).astype(np.int32))
        lengths[start:stop] = np.bincount(owner_of_key - start, minlength=stop - start)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Bundle(
        user_embeddings=users,
        item_embeddings=items.astype(np.float32),
        train_indptr=indptr,
        train_indices=np.concatenate(rows),
        user_ids=[f"u{user}" for user in range(n_users)],
        item_ids=[f"i{item}" for item in range(n_items)],
        model_version=f"scale-{n_users}x{n_items}-d{dim}-p{pairs}-c{clusters}-s{seed}",
        dataset="synthetic-scale",
        data_fingerprint=f"synthetic:{n_users}x{n_items}x{dim}:{pairs}:{clusters}:{seed}",
    )


def ensure_bundle(args: argparse.Namespace) -> Path:
    """The bundle directory for ``args``' parameters, generated and written on first use."""
    root = SCALE_MODELS
    version = (
        f"scale-{args.users}x{args.items}-d{args.dim}-p{args.pairs}-c{args.clusters}-s{args.seed}"
    )
    if (root / version / "manifest.json").is_file():
        return root / version
    started = time.perf_counter()
    bundle = synthetic_bundle(
        args.users, args.items, args.dim, args.pairs, args.clusters, args.seed
    )
    logger.info(
        "generated %s (%d pairs) in %.1f s",
        version,
        bundle.train_indices.size,
        time.perf_counter() - started,
    )
    return write_bundle(bundle, root, update_latest=False)


@dataclass(frozen=True)
class Start:
    seconds: float
    rss_mb: float


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def timed_start(service: ServiceProcess) -> Start:
    started = time.perf_counter()
    start_pinned_with_timeout(service)
    return Start(time.perf_counter() - started, rss_mb(service.pid))


def start_pinned_with_timeout(service: ServiceProcess) -> None:
    own_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        service.start(timeout_s=600.0)
    finally:
        os.sched_setaffinity(0, own_cpus)


@dataclass(frozen=True)
class Recall:
    kind: str
    served: float
    bare: float
    served_cpu_us: float
    exact_cpu_us: float


def _cpu_us_per_query(
    index: ItemIndex, vectors: np.ndarray, excludes: list[np.ndarray], k: int
) -> float:
    """CPU time (this process, one thread) per single-query search, in microseconds."""
    started = time.process_time()
    for row in range(len(vectors)):
        index.search(vectors[row : row + 1], k, [excludes[row]])
    return (time.process_time() - started) / len(vectors) * 1e6


def recall_at(bundle: Bundle, directory: Path, queries: int, k: int, seed: int) -> Recall:
    """Recall@k of the served search and of the bare FAISS index against exact search, and
    the CPU time of one served and one exact search; the served index is the one the service
    saved beside the bundle (built if absent)."""
    settings = load_settings(allow_open_writes=True)
    kind = index_kind(settings, bundle.n_items)
    rng = np.random.default_rng(seed)
    rows = rng.choice(bundle.n_users, size=min(queries, bundle.n_users), replace=False)
    vectors = bundle.user_embeddings[rows]
    excludes = [bundle.seen_items(int(row)).astype(np.int64) for row in rows]
    exact_index = build_index(bundle.item_embeddings, "exact", settings)
    exact = exact_index.search(vectors, k, excludes)
    exact_plain = exact_index.search(vectors, k, [np.empty(0, dtype=np.int64)] * len(rows))
    served_index = load_index(bundle, directory, settings)
    served = served_index.search(vectors, k, excludes)
    _, bare = served_index.faiss_index.search(np.ascontiguousarray(vectors), k)

    def overlap(found: np.ndarray, truth: np.ndarray) -> float:
        hits = sum(
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True)
        )
        return hits / truth.size

    return Recall(
        kind,
        overlap(served.items, exact.items),
        overlap(bare, exact_plain.items),
        _cpu_us_per_query(served_index, vectors, excludes, k),
        _cpu_us_per_query(exact_index, vectors[:100], excludes[:100], k),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_service", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=20_000_000)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--recall-queries", type=int, default=1_000)
    parser.add_argument(
        "--reuse-index",
        action="store_true",
        help="keep a saved index (the first start then loads it too)",
    )
    parser.add_argument("--tiktok", type=Path, default=None, help="also measure this bundle's RSS")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scale-service.md")
    args = parser.parse_args(argv)
    setup_logging()
    require_wrk(parser)
    directory = ensure_bundle(args)
    if not args.reuse_index:
        for saved in directory.glob("index-*.faiss"):
            saved.unlink()  # the first start below builds and saves the index afresh
    sections = [run_scale(directory, args)]
    if args.tiktok is not None:
        sections.append(tiktok_rss(args.tiktok))
    text = write_markdown(args.out, "Service at scale (synthetic bundle)", sections)
    print(text)
    return 0


def run_scale(directory: Path, args: argparse.Namespace) -> str:
    settings = {
        "PROMPTMM_RESPONSE_CACHE_MB": "0",
        "PROMPTMM_LOG_LEVEL": "INFO",
        "PROMPTMM_ACCESS_LOG": "false",
    }
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="promptmm-scale-") as tmp:
        users = Path(tmp) / "users.txt"
        rng = np.random.default_rng(args.seed)
        sample = rng.choice(args.users, size=min(100_000, args.users), replace=False)
        users.write_text("\n".join(f"u{user}" for user in sample) + "\n")
        starts = []
        first = "first start (index " + (
            "loaded: --reuse-index)" if args.reuse_index else "built and saved)"
        )
        for attempt in (first, "second start (index loaded)"):
            service = bench_service(
                directory, Path(tmp) / "store.sqlite3", Path(tmp) / "service.log", settings=settings
            )
            start = timed_start(service)
            starts.append((attempt, start))
            logger.info("%s: ready in %.1f s, RSS %.0f MB", attempt, start.seconds, start.rss_mb)
            if attempt.startswith("second"):
                with service:
                    script = recommend_script(users, args.seed)
                    url = f"{service.url}/recommend"
                    wrk_phase("warm-up", url, args.connections, 3, script)
                    cpu = process_cpu_s(service.pid)
                    health = wrk_phase("healthz", f"{service.url}/healthz", args.connections, 5, "")
                    cpu_health = process_cpu_s(service.pid) - cpu
                    cpu = process_cpu_s(service.pid)
                    load = wrk_phase("recommend", url, args.connections, args.seconds, script)
                    cpu_load = process_cpu_s(service.pid) - cpu
                    after_rss = rss_mb(service.pid)
            else:
                service.stop()
        log_tail = (
            (Path(tmp) / "service.log")
            .read_text(encoding="utf-8")[-1500:]
            .replace(f"{REPO_ROOT}/", "")
        )
    bundle = read_bundle(directory)
    recall = recall_at(bundle, directory, args.recall_queries, 20, args.seed)
    kind = recall.kind
    for attempt, start in starts:
        rows.append([attempt, f"{start.seconds:.1f}", f"{start.rss_mb:,.0f}"])
    settings_used = load_settings(allow_open_writes=True)
    notes = (
        f"Bundle `{bundle.model_version}`: {bundle.n_users:,} users x {bundle.n_items:,} items, "
        f"dim {bundle.dim}, {bundle.train_indices.size:,} training pairs, {args.clusters:,} "
        "clusters (no LightGCN layers: the `mean` update). Default settings "
        f"(index `{kind}`: auto above {settings_used.exact_max_items:,} items; HNSW M="
        f"{settings_used.hnsw_m}, efConstruction={settings_used.hnsw_ef_construction}, "
        f"efSearch={settings_used.hnsw_ef_search}), response cache off so every request is "
        f"computed. One uvicorn worker on CPU {SERVER_CPU}, wrk (1 thread, {args.connections} "
        f"connections, {args.seconds:g} s) on CPU {CLIENT_CPU}. The machine is shared with "
        "other engineers' jobs: compare ratios within this run, not across runs."
    )
    start_table = markdown_table(["start", "spawn to /readyz s", "worker RSS MB"], rows)
    load_table = markdown_table(
        ["endpoint", "requests", "errors", "req/s", "p50 ms", "p99 ms", "server CPU us / request"],
        [
            [
                stats.name,
                *stats.cells(),
                f"{cpu_s * 1e6 / max(stats.requests, 1):,.0f}",
            ]
            for stats, cpu_s in ((health, cpu_health), (load, cpu_load))
        ],
    )
    recall_text = (
        f"Recall@20 against exact search over {args.recall_queries:,} random users: served "
        f"search (`{kind}`, training items excluded, exact fallback on near-ties) "
        f"**{recall.served:.4f}**; the bare FAISS index (no exclusions) {recall.bare:.4f}. "
        f"CPU time of one search in this process (k=20, the user's training items excluded): "
        f"{recall.served_cpu_us:,.0f} us served ({kind}), {recall.exact_cpu_us:,.0f} us exact "
        "(CPU time, so less disturbed by the other jobs than the wall-clock numbers above)."
    )
    return "\n\n".join(
        [
            notes,
            "## Start\n\n" + start_table,
            f"## Load (worker RSS after it: {after_rss:,.0f} MB)\n\n" + load_table,
            "## ANN recall\n\n" + recall_text,
            "## Service log (tail)\n\n```\n" + log_tail.strip() + "\n```",
        ]
    )


def tiktok_rss(bundle: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="promptmm-scale-tiktok-") as tmp:
        service = bench_service(
            bundle, Path(tmp) / "store.sqlite3", Path(tmp) / "service.log", settings={}
        )
        start = timed_start(service)
        with service:
            directory = resolve(bundle)
            users = Path(tmp) / "users.txt"
            users.write_text("\n".join(read_bundle(directory).user_ids) + "\n")
            wrk_phase("recommend", f"{service.url}/recommend", 16, 5, recommend_script(users, 0))
            after = rss_mb(service.pid)
    return (
        f"## Tiktok bundle (`{directory.name}`), default settings\n\n"
        f"Worker RSS: {start.rss_mb:,.0f} MB after start, {after:,.0f} MB after 5 s of "
        f"`/recommend` for every user (response cache filling). Ready in {start.seconds:.1f} s."
    )


if __name__ == "__main__":
    raise SystemExit(main())
