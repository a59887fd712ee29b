"""What a ``/recommend``-shaped request costs before the recommender does any work.

    python -m bench.framework_floor [--bundle models/tiktok] [--seconds 5] [--rounds 3]

The service's own app (:func:`service.main.create_app`: its middleware, settings and bundle)
with two no-op routes added by this module only, one uvicorn worker pinned to CPU 0 and ``wrk``
pinned to CPU 1, as in :mod:`bench.wrk_load`. Per round, each after a warm-up:

- ``GET /healthz``: the trivial request the goal compares with;
- ``POST /floor/fastapi``: the ``/recommend`` body validated by FastAPI's body handling
  (``json.loads``, then validation of the Python objects), a fixed k=20 answer returned;
- ``POST /floor/one-pass``: the body read and validated in one pydantic-core pass, as
  ``/recommend`` does (:func:`service.routes.recommend.parse_body`), the same fixed answer;
- ``POST /recommend``: the real endpoint, response cache off (every answer computed), then on.

The ratios to ``/healthz`` bound what ``/recommend`` can reach: the no-op routes are the
framework's floor for this request. Writes ``bench/results/framework-floor.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.common import (
    RESULTS_DIR,
    LatencyStats,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    write_report,
)
from bench.wrk_load import (
    CLIENT_CPU,
    SERVER_CPU,
    recommend_script,
    require_wrk,
    start_pinned,
    wrk_phase,
)
from bundle import read_bundle
from service.main import create_app
from service.routes.recommend import parse_body
from service.schemas import RecommendRequest

ITEM = b'{"item_id":"%d","score":%.15f}'
ANSWER = (
    b'{"user_id":"0","items":['
    + b",".join(ITEM % (1000 + i, 3.14159 - i / 100) for i in range(20))
    + b'],"model_version":"tiktok-20261126T191008Z-9b66d6","fallback":null}'
)
"""A k=20 answer the size of a real one."""


def create_floor_app() -> FastAPI:
    """The service's app plus the two no-op routes (uvicorn ``--factory`` target)."""
    app = create_app()

    @app.post("/floor/fastapi")
    async def floor_fastapi(body: RecommendRequest) -> Response:
        return Response(ANSWER, media_type="application/json")

    @app.post("/floor/one-pass")
    async def floor_one_pass(request: Request) -> Response:
        parse_body(RecommendRequest, await request.body())
        return Response(ANSWER, media_type="application/json")

    return app


def run(bundle: Path, seconds: float, rounds: int, seed: int) -> dict[str, list[LatencyStats]]:
    """Every phase, ``rounds`` times in turn, with the response cache off and then on."""
    results: dict[str, list[LatencyStats]] = {}
    with tempfile.TemporaryDirectory(prefix="promptmm-floor-") as tmp:
        users = Path(tmp) / "users.txt"
        users.write_text("\n".join(read_bundle(bundle).user_ids) + "\n")
        for cache_mb, label in ((0, "cache off"), (64, "cache on")):
            service = bench_service(
                bundle,
                Path(tmp) / f"{cache_mb}.db",
                Path(tmp) / "service.log",
                settings={"PROMPTMM_RESPONSE_CACHE_MB": str(cache_mb)},
                app="bench.framework_floor:create_floor_app",
            )
            start_pinned(service)
            with service:
                url = service.url
                phases = {
                    "GET /healthz": (f"{url}/healthz", ""),
                    "POST /floor/fastapi": (url, recommend_script(users, seed, "/floor/fastapi")),
                    "POST /floor/one-pass": (url, recommend_script(users, seed, "/floor/one-pass")),
                    f"POST /recommend ({label})": (url, recommend_script(users, seed)),
                }
                for name, (target, script) in phases.items():
                    wrk_phase(f"warm-up {name}", target, 16, 3, script)
                for _ in range(rounds):
                    for name, (target, script) in phases.items():
                        stats = wrk_phase(name, target, 16, seconds, script)
                        results.setdefault(f"{name} [{label} run]", []).append(stats)
    return results


def table(results: dict[str, list[LatencyStats]]) -> str:
    """Median req/s, p50 and p99 per phase, and the ratio to ``/healthz`` of the same run."""
    rows = []
    for name, runs in results.items():
        run_label = name[name.index("[") :]
        healthz = statistics.median(
            stats.throughput for stats in results[f"GET /healthz {run_label}"]
        )
        rate = statistics.median(stats.throughput for stats in runs)
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                " ".join(f"{stats.throughput:,.0f}" for stats in runs),
                f"{statistics.median(stats.p50_ms for stats in runs):.2f}",
                f"{statistics.median(stats.p99_ms for stats in runs):.2f}",
                f"{rate / healthz:.2f}",
            ]
        )
    headers = ("phase", "median req/s", "req/s per round", "p50 ms", "p99 ms", "/ healthz")
    return markdown_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.framework_floor", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "framework-floor.md")
    args = parser.parse_args(argv)
    setup_logging()
    require_wrk(parser)
    bundle = ensure_tiktok_bundle(args.bundle)
    results = run(bundle, args.seconds, args.rounds, args.seed)
    notes = (
        f"Bundle `{read_bundle(bundle).model_version}`, one uvicorn worker on CPU {SERVER_CPU}, "
        f"wrk (1 thread, 16 keep-alive connections, closed loop, {args.seconds:g} s per phase, "
        f"{args.rounds} rounds in turn) on CPU {CLIENT_CPU}; two runs of the app, response cache "
        "off then on. The no-op routes return a fixed k=20 answer after validating the body."
    )
    title = "Framework floor of a /recommend request"
    text = write_report(args.out, title, [notes, table(results)])
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
