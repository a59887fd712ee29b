"""Heavy but legal writes against one service process (issue 12): latency during and after.

    python -m bench.heavy_user [--bundle PATH] [--restart-events N ...] [--skip-restart]

For a synthetic LightGCN bundle (2,000 users x 2,000 items, dim 64, made here) and the
tiktok-knn bundle (``--bundle``, default ``models/tiktok``, where
``python -m training run configs/tiktok-knn.toml`` writes it), one service process (SQLite
store, one worker, API key) takes, one case after another:

- one ``POST /interactions/batch`` of 4 users x 200 items;
- one of 256 users x 200 items (51,200 pairs);
- one ``POST /interactions`` of 1,000 items by one user.

Meanwhile a probe thread cycles ``POST /recommend`` (random bundle users), ``GET /healthz`` and
``GET /readyz``; each case reports their latency (max, p99) from the post until the effect is
visible and one second more ("during"), and over the two seconds after that ("after"), with
"visible" the first moment the last posting user's answer differs from the one before the
post. Then, on the tiktok bundle, the restart time with 10^5 and 10^6 logged pairs: the first
start (no snapshot: the whole log is replayed), then, once the service has checkpointed its
online state, a restart after 1,000 more pairs (snapshot + tail). Writes
``bench/results/heavy-user.md``.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    bench_service,
    markdown_table,
    setup_logging,
    write_report,
)
from bench.harness import ServiceProcess
from bundle import Bundle, propagate_to_users, read_bundle, write_bundle
from service.store import SQLiteStore
from service.store.base import Event

logger = logging.getLogger(__name__)

TIKTOK_KNN = REPO_ROOT / "models" / "tiktok"
AFTER_VISIBLE_S = 1.0
AFTER_S = 2.0
VISIBLE_TIMEOUT_S = 120.0
RESTART_EVENTS = (100_000, 1_000_000)
PAIRS_PER_EVENT = 100


def synthetic_bundle(root: Path, n_users: int = 2000, n_items: int = 2000, dim: int = 64) -> Path:
    """A 2-layer LightGCN bundle over random egos and 5-39 random items per user."""
    rng = np.random.default_rng(0)
    counts = rng.integers(5, 40, size=n_users)
    rows = [np.sort(rng.choice(n_items, size=count, replace=False)) for count in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    owners = np.repeat(np.arange(n_users), counts)
    order = np.argsort(indices, kind="stable")
    item_indptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=n_items))])
    item_users = owners[order]
    user_deg, item_deg = counts.astype(np.float64), np.bincount(indices, minlength=n_items)
    user_ego = (0.1 * rng.standard_normal((n_users, dim))).astype(np.float32)
    item_ego = (0.1 * rng.standard_normal((n_items, dim))).astype(np.float32)
    user_layers, item_layers = [user_ego.astype(np.float64)], [item_ego.astype(np.float64)]
    for _ in range(2):
        user_layers.append(propagate_to_users(indptr, indices, item_layers[-1], item_deg))
        item_layers.append(
            propagate_to_users(item_indptr.astype(np.int64), item_users, user_layers[-2], user_deg)
        )
    bundle = Bundle(
        user_embeddings=np.mean(user_layers, axis=0).astype(np.float32),
        item_embeddings=np.mean(item_layers, axis=0).astype(np.float32),
        train_indptr=indptr,
        train_indices=indices.astype(np.int32),
        user_ids=[f"u{user}" for user in range(n_users)],
        item_ids=[f"i{item}" for item in range(n_items)],
        model_version="synthetic-heavy-v1",
        dataset="synthetic",
        data_fingerprint="sha256:synthetic-heavy",
        user_ego=user_ego,
        item_layers=np.stack(item_layers[:2]).astype(np.float32),
    )
    return write_bundle(bundle, root)


@dataclass
class Probe:
    """Cycles ``/recommend``, ``/healthz``, ``/readyz`` in a thread; keeps (start, kind, s, ok)."""

    url: str
    users: list[str]
    samples: list[tuple[float, str, float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        rng = np.random.default_rng(1)
        with httpx.Client(base_url=self.url, timeout=60.0) as client:
            while not self._stop.is_set():
                user = self.users[int(rng.integers(len(self.users)))]
                for kind in ("recommend", "healthz", "readyz"):
                    started = time.monotonic()
                    try:
                        if kind == "recommend":
                            response = client.post("/recommend", json={"user_id": user, "k": 20})
                        else:
                            response = client.get(f"/{kind}")
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.samples.append((started, kind, time.monotonic() - started, ok))

    def stats(self, kind: str, start: float, stop: float) -> str:
        window = [s for s in self.samples if s[1] == kind and start <= s[0] < stop]
        if not window:
            return "no sample"
        ms = np.asarray([s[2] for s in window]) * 1e3
        errors = sum(not s[3] for s in window)
        text = f"max {ms.max():.1f}, p99 {np.percentile(ms, 99):.1f} (n={ms.size})"
        return text + (f", {errors} errors" if errors else "")


def answer_of(client: httpx.Client, user: str) -> list[object]:
    response = client.post("/recommend", json={"user_id": user, "k": 20})
    response.raise_for_status()
    items: list[object] = response.json()["items"]
    return items


def heavy_case(
    service: ServiceProcess, probe: Probe, name: str, events: list[dict[str, Any]]
) -> list[object]:
    """Post ``events`` in one request; the row of the report."""
    watched = str(events[-1]["user_id"])
    with service.client() as client:
        before = answer_of(client, watched)
        started = time.monotonic()
        if len(events) == 1:
            response = client.post("/interactions", json=events[0])
        else:
            response = client.post("/interactions/batch", json={"events": events})
        posted = time.monotonic()
        response.raise_for_status()
        while answer_of(client, watched) == before:
            if time.monotonic() - started > VISIBLE_TIMEOUT_S:
                raise RuntimeError(f"{name}: no effect within {VISIBLE_TIMEOUT_S} s")
            time.sleep(0.005)
        visible = time.monotonic()
    time.sleep(AFTER_VISIBLE_S + AFTER_S)
    during, after = visible + AFTER_VISIBLE_S, visible + AFTER_VISIBLE_S + AFTER_S
    pairs = sum(len(event["item_ids"]) for event in events)
    return [
        name,
        pairs,
        f"{(posted - started) * 1e3:.0f}",
        f"{(visible - started) * 1e3:.0f}",
        *(probe.stats(kind, started, during) for kind in ("recommend", "healthz", "readyz")),
        *(probe.stats(kind, during, after) for kind in ("recommend", "healthz", "readyz")),
    ]


def heavy_rows(bundle_path: Path, workdir: Path) -> list[list[object]]:
    bundle = read_bundle(bundle_path)
    rng = np.random.default_rng(2)
    users = list(bundle.user_ids)

    def events(n_users: int, n_items: int) -> list[dict[str, Any]]:
        chosen = rng.choice(len(users), size=n_users, replace=False)
        return [
            {
                "user_id": users[int(user)],
                "item_ids": [
                    bundle.item_ids[int(item)]
                    for item in rng.choice(bundle.n_items, size=n_items, replace=False)
                ],
            }
            for user in chosen
        ]

    service = bench_service(
        bundle_path, workdir / f"{bundle.model_version}.sqlite3", workdir / "service.log"
    )
    rows = []
    with service:
        probe = Probe(service.url, users)
        probe.start()
        time.sleep(1.0)
        for name, batch in (
            ("4 x 200 batch", events(4, 200)),
            ("256 x 200 batch", events(256, 200)),
            ("1 x 1,000 event", events(1, 1000)),
        ):
            logger.info("%s: %s", bundle.model_version, name)
            rows.append([bundle.model_version, *heavy_case(service, probe, name, batch)])
        probe.stop()
    return rows


def fill_log(store_path: Path, bundle: Bundle, n_pairs: int, seed: int) -> None:
    """Append ``n_pairs`` random (bundle user, item) pairs, events of :data:`PAIRS_PER_EVENT`."""
    rng = np.random.default_rng(seed)
    store = SQLiteStore(store_path)
    try:
        batch: list[Event] = []
        for _ in range(n_pairs // PAIRS_PER_EVENT):
            user = bundle.user_ids[int(rng.integers(bundle.n_users))]
            items = rng.integers(bundle.n_items, size=PAIRS_PER_EVENT)
            batch.append(Event(user, tuple(bundle.item_ids[int(i)] for i in items), 1.0))
            if len(batch) == 1000:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
    finally:
        store.close()


def wait_for_snapshot(store_path: Path, model_version: str, timeout_s: float = 600.0) -> int:
    """Wait until the store's snapshot of ``model_version`` reflects the whole log."""
    store = SQLiteStore(store_path)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = store.get_snapshot(model_version)
            if found is not None and found[0] == store.latest_revision():
                return found[0]
            time.sleep(0.5)
    finally:
        store.close()
    raise RuntimeError(f"no snapshot of the whole log within {timeout_s} s")


RESTORED = re.compile(
    r"online state of \S+: snapshot at revision (\d+), replayed to (\d+) in ([\d.]+)s"
)


def restored_in(log: Path) -> str:
    """The service's own time to load the snapshot and replay the tail (its last start)."""
    found = RESTORED.findall(log.read_text(encoding="utf-8", errors="replace"))
    return f"{float(found[-1][2]):.2f}" if found else "?"


def timed_start(service: ServiceProcess) -> float:
    started = time.monotonic()
    service.start(timeout_s=900.0)
    return time.monotonic() - started


def restart_rows(bundle_path: Path, workdir: Path, sizes: list[int]) -> list[list[object]]:
    """Per log size: start time with the whole log replayed, then restart from the snapshot.

    The service logs at INFO so that its own restore time can be read from the log.
    """
    bundle = read_bundle(bundle_path)
    rows: list[list[object]] = []
    for n_pairs in [0, *sizes]:
        store_path = workdir / f"restart-{n_pairs}.sqlite3"
        log = workdir / f"restart-{n_pairs}.log"
        fill_log(store_path, bundle, n_pairs, seed=n_pairs)
        service = bench_service(
            bundle_path, store_path, log, settings={"PROMPTMM_LOG_LEVEL": "INFO"}
        )
        first = timed_start(service)
        first_restore = restored_in(log)
        snapshot = wait_for_snapshot(store_path, bundle.model_version) if n_pairs else 0
        service.stop()
        fill_log(store_path, bundle, 1000, seed=n_pairs + 1)
        again = timed_start(service)
        again_restore = restored_in(log)
        service.stop()
        size_mb = store_path.stat().st_size / 2**20
        rows.append(
            [
                f"{n_pairs:,}",
                f"{first:.2f} ({first_restore})",
                f"{snapshot:,}",
                f"{again:.2f} ({again_restore})",
                f"{size_mb:.0f}",
            ]
        )
        logger.info("restart with %d pairs: first %.2f s, again %.2f s", n_pairs, first, again)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=TIKTOK_KNN)
    parser.add_argument("--restart-events", type=int, nargs="*", default=list(RESTART_EVENTS))
    parser.add_argument("--skip-restart", action="store_true")
    args = parser.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="heavy-user-") as tmp:
        workdir = Path(tmp)
        synthetic = synthetic_bundle(workdir / "models")
        rows = heavy_rows(synthetic, workdir) + heavy_rows(args.bundle, workdir)
        restarts = (
            [] if args.skip_restart else restart_rows(args.bundle, workdir, args.restart_events)
        )
    sections = [
        "Shared 2-core machine (other engineers' jobs ran alongside); one uvicorn worker, SQLite "
        "store, the probe in the benchmark's process. Latencies in ms (client side).",
        "## Heavy writes\n\n"
        + markdown_table(
            [
                "bundle",
                "case",
                "pairs",
                "post ms",
                "visible after ms",
                "/recommend during",
                "/healthz during",
                "/readyz during",
                "/recommend after",
                "/healthz after",
                "/readyz after",
            ],
            rows,
        ),
    ]
    if restarts:
        sections.append(
            "## Restart with a long log (tiktok-knn)\n\n"
            "Seconds from the process start to `/readyz` 200 (in brackets: the service's own "
            "time to load the snapshot and replay the tail, from its log). First start: no "
            "snapshot, the whole log replayed; restart: the snapshot the first run wrote plus "
            "1,000 newer pairs. The 0 row is the start without any log (bundle, index, lists).\n\n"
            + markdown_table(
                ["logged pairs", "first start s", "snapshot at", "restart s", "store MB"],
                restarts,
            )
        )
    print(write_report(RESULTS_DIR / "heavy-user.md", "Heavy users (issue 12)", sections))


if __name__ == "__main__":
    main()
