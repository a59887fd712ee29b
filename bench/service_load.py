"""Load benchmark of the service on the tiktok bundle with the embedded store.

    python -m bench.service_load [--bundle models/tiktok] [--workers 1 2] [--connections 16]

For each uvicorn worker count: start the service (the container's command on a loopback
port, a fresh SQLite store in a temporary directory), warm up, then measure in the same run
``/healthz`` and ``/recommend`` (random known users, k=20) at ``--connections`` concurrent
keep-alive connections, closed loop (saturation throughput), then ``/recommend`` open loop at
``--rate`` requests/s over the same connections, then ``/interactions`` (one random item for
a random user) closed loop at the same concurrency and at one connection, and open loop at
``--write-rate``, and ``/recommend`` closed loop again, now that the writes gave users folded
vectors and items an overlay. Prints a Markdown table and writes
``bench/results/service-load.md``. Goals: recommend/healthz throughput >= 0.8, /recommend
p99 <= 10 ms, /interactions p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    LatencyStats,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    write_report,
)
from bench.harness import API_KEY
from bench.loadgen import RequestSpec, run_async, run_phase
from bundle import read_bundle

logger = logging.getLogger(__name__)

Maker = Callable[[int], RequestSpec]
WARMUP_REQUESTS = 500


@dataclass(frozen=True)
class Load:
    """How hard and how long each phase drives the service."""

    connections: int
    requests: int
    writes: int
    max_seconds: float
    rate: float
    write_rate: float


def request_makers(user_ids: Sequence[str], item_ids: Sequence[str], seed: int) -> dict[str, Maker]:
    """Request builders per endpoint, drawing users and items from a seeded generator."""
    rng = random.Random(seed)

    def healthz(_: int) -> RequestSpec:
        return "GET", "/healthz", b""

    def recommend(_: int) -> RequestSpec:
        body = {"user_id": rng.choice(user_ids), "k": 20, "exclude_seen": True}
        return "POST", "/recommend", json.dumps(body).encode()

    def interactions(_: int) -> RequestSpec:
        body = {"user_id": rng.choice(user_ids), "item_ids": [rng.choice(item_ids)]}
        return "POST", "/interactions", json.dumps(body).encode()

    return {"healthz": healthz, "recommend": recommend, "interactions": interactions}


async def measure(port: int, load: Load, makers: dict[str, Maker]) -> list[LatencyStats]:
    """Warm up, then /healthz and /recommend back to back, then /interactions."""
    for name in ("healthz", "recommend"):
        await run_phase(
            "warmup",
            port,
            makers[name],
            connections=load.connections,
            n_requests=WARMUP_REQUESTS,
            max_seconds=load.max_seconds,
        )
    results = [
        await run_phase(
            name,
            port,
            makers[name],
            connections=load.connections,
            n_requests=load.requests,
            max_seconds=load.max_seconds,
        )
        for name in ("healthz", "recommend")
    ]
    results.append(
        await run_phase(
            f"recommend at {load.rate:g}/s",
            port,
            makers["recommend"],
            connections=load.connections,
            n_requests=min(load.requests, int(load.rate * load.max_seconds)),
            max_seconds=load.max_seconds + 5,
            rate=load.rate,
        )
    )
    writes = {"headers": {"X-API-Key": API_KEY}, "n_requests": load.writes}
    for connections in (load.connections, 1):
        results.append(
            await run_phase(
                f"interactions ({connections} conn.)",
                port,
                makers["interactions"],
                connections=connections,
                max_seconds=load.max_seconds,
                **writes,
            )
        )
    results.append(
        await run_phase(
            f"interactions at {load.write_rate:g}/s",
            port,
            makers["interactions"],
            connections=load.connections,
            max_seconds=load.max_seconds + 5,
            rate=load.write_rate,
            **writes,
        )
    )
    results.append(
        await run_phase(
            "recommend after the writes",
            port,
            makers["recommend"],
            connections=load.connections,
            n_requests=load.requests,
            max_seconds=load.max_seconds,
        )
    )
    return results


def bench_workers(bundle: Path, workers: int, load: Load, seed: int) -> list[LatencyStats]:
    """Start the service with ``workers`` uvicorn workers on a fresh store and measure it."""
    loaded = read_bundle(bundle)
    makers = request_makers(loaded.user_ids, loaded.item_ids, seed)
    with tempfile.TemporaryDirectory(prefix="promptmm-load-") as tmp:
        store, log = Path(tmp) / "store.sqlite3", Path(tmp) / "service.log"
        with bench_service(bundle, store, log, workers) as service:
            logger.info("service up on port %d with %d worker(s)", service.port, workers)
            return run_async(measure(service.port, load, makers))


def table(results: dict[int, list[LatencyStats]]) -> str:
    rows = []
    for workers, stats in results.items():
        by_name = {s.name: s for s in stats}
        ratio = by_name["recommend"].throughput / by_name["healthz"].throughput
        for s in stats:
            rows.append(
                [
                    workers,
                    s.name,
                    *s.cells(),
                    f"{ratio:.2f}" if s.name == "recommend" else "",
                ]
            )
    headers = ["workers", "endpoint", "requests", "non-200", "req/s", "p50 ms", "p99 ms"]
    return markdown_table([*headers, "recommend/healthz"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service_load", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="uvicorn workers")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20000, help="per read phase")
    parser.add_argument("--writes", type=int, default=2000, help="per /interactions phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per phase")
    parser.add_argument(
        "--rate", type=float, default=500.0, help="open-loop /recommend requests per second"
    )
    parser.add_argument(
        "--write-rate", type=float, default=200.0, help="open-loop /interactions per second"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "service-load.md")
    args = parser.parse_args(argv)
    setup_logging()
    if args.connections < 1 or args.requests < 1 or args.writes < 1:
        parser.error("--connections, --requests and --writes must be >= 1")
    if not (args.rate > 0 and args.write_rate > 0):
        parser.error("--rate and --write-rate must be > 0")
    bundle = ensure_tiktok_bundle(args.bundle)
    load = Load(
        args.connections, args.requests, args.writes, args.seconds, args.rate, args.write_rate
    )
    results = {w: bench_workers(bundle, w, load, args.seed) for w in args.workers}
    version = read_bundle(bundle).model_version
    notes = (
        f"Bundle `{version}`, embedded SQLite store, {args.connections} concurrent keep-alive "
        "connections from one asyncio client process on the same machine (loopback), latency "
        "measured at the client. Rows without a rate are closed loop (each connection sends "
        "as soon as its last answer came: the throughput at saturation, where latency is "
        "connections / throughput by Little's law); rows 'at N/s' are open loop (request n is "
        "due at n/N s on the first free connection, latency counted from its due time). "
        "Goals: recommend/healthz >= 0.8, /recommend p99 <= 10 ms, /interactions p99 <= 20 ms."
    )
    text = write_report(args.out, "Service load benchmark", [notes, table(results)])
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
