"""What the access log costs ``/recommend``: with it off, as JSON lines, as text.

    python -m bench.access_log [--bundle models/tiktok] [--connections 16] [--seconds 8]

Two measurements. **In process**: the app (its whole middleware and routing stack, no
HTTP server) answers ``POST /recommend`` called as ASGI, ``--requests`` calls per variant
and repeat, the process's CPU time per call, the minimum over ``--repeats`` interleaved
repeats (the least disturbed by other jobs on this shared machine). **Over HTTP**: one
service per variant (the container's command, a fresh SQLite store, ``log_level`` INFO,
its lines written to a file as a container's stdout would be), each pinned to CPU 0 and
loaded in turn by ``wrk`` on CPU 1 (see :mod:`bench.wrk_load`), ``--rounds`` times; the
ratio to "off" within a round and the server's CPU time per request (``/proc/<pid>/stat``)
are the numbers to read. Writes ``bench/results/access-log.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench.common import (
    RESULTS_DIR,
    LatencyStats,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    write_report,
)
from bench.harness import ServiceProcess
from bench.wrk_load import (
    CLIENT_CPU,
    SERVER_CPU,
    check_wrk_args,
    recommend_script,
    start_pinned,
    wrk_parser,
    wrk_phase,
)
from bundle import read_bundle
from service.config import load_settings
from service.logs import configure_logging
from service.main import create_app

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"PROMPTMM_ACCESS_LOG": "false"},
    "json": {"PROMPTMM_LOG_FORMAT": "json"},
    "text": {"PROMPTMM_LOG_FORMAT": "text"},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    service: ServiceProcess, name: str, connections: int, seconds: float, script: str
) -> tuple[LatencyStats, float]:
    """One wrk phase against ``service``, and the server's CPU microseconds per request."""
    before = cpu_seconds(service.pid)
    stats = wrk_phase(name, f"{service.url}/recommend", connections, seconds, script)
    return stats, (cpu_seconds(service.pid) - before) * 1e6 / max(stats.requests, 1)


def run(
    bundle: Path, connections: int, seconds: float, rounds: int, seed: int, workdir: Path
) -> tuple[list[dict[str, tuple[LatencyStats, float]]], dict[str, int]]:
    """Per round, each variant's stats and CPU µs per request; each log's bytes per line."""
    users = workdir / "users.txt"
    users.write_text("\n".join(read_bundle(bundle).user_ids) + "\n")
    script = recommend_script(users, seed)
    services: dict[str, ServiceProcess] = {}
    try:
        for name, settings in VARIANTS.items():
            services[name] = bench_service(
                bundle,
                workdir / f"{name}.sqlite3",
                workdir / f"{name}.log",
                settings={"PROMPTMM_LOG_LEVEL": "INFO", **settings},
            )
        services["uvicorn"] = uvicorn_access_service(bundle, workdir)
        for service in services.values():
            start_pinned(service)
        for name, service in services.items():
            wrk_phase(f"warm-up {name}", f"{service.url}/recommend", connections, 3, script)
        results = []
        for _ in range(rounds):
            results.append(
                {
                    name: measured(service, name, connections, seconds, script)
                    for name, service in services.items()
                }
            )
    finally:
        for service in services.values():
            service.stop()
    return results, {name: _bytes_per_line(workdir / f"{name}.log") for name in services}


def uvicorn_access_app() -> FastAPI:
    """The service with uvicorn's own access log instead of its own (as before it had one)."""
    app = create_app()
    logging.getLogger("uvicorn.access").disabled = False
    return app


def uvicorn_access_service(bundle: Path, workdir: Path) -> ServiceProcess:
    """The service logging uvicorn's access lines (the container's command without
    ``--no-access-log``) and none of its own."""
    env = {
        "PROMPTMM_BUNDLE_PATH": str(bundle.resolve()),
        "PROMPTMM_STORE_PATH": str(workdir / "uvicorn.sqlite3"),
        "PROMPTMM_ACCESS_LOG": "false",
    }
    return ServiceProcess(
        env,
        workdir / "uvicorn.log",
        extra_args=["--log-level", "info"],
        app="bench.access_log:uvicorn_access_app",
    )


def _bytes_per_line(log: Path) -> int:
    """Mean bytes of the access lines of ``log`` (0 when it has none)."""
    access = (b"service.access", b'"POST /recommend HTTP/1.1" 200')
    lines = [line for line in log.read_bytes().splitlines() if any(a in line for a in access)]
    return round(sum(len(line) + 1 for line in lines) / len(lines)) if lines else 0


def table(results: Sequence[dict[str, tuple[LatencyStats, float]]]) -> str:
    rows: list[list[object]] = []
    for round_, stats in enumerate(results, start=1):
        off, off_cpu = stats["off"]
        for name, (one, cpu) in stats.items():
            rows.append(
                [
                    round_,
                    name,
                    *one.cells(),
                    f"{one.throughput / off.throughput:.3f}",
                    f"{cpu:.1f}",
                    "" if name == "off" else f"{cpu - off_cpu:+.1f}",
                ]
            )
    for name in results[0]:
        ratios = [stats[name][0].throughput / stats["off"][0].throughput for stats in results]
        extra = [stats[name][1] - stats["off"][1] for stats in results]
        rows.append(
            [
                "median",
                name,
                *[""] * 5,
                f"{statistics.median(ratios):.3f}",
                f"{statistics.median(stats[name][1] for stats in results):.1f}",
                "" if name == "off" else f"{statistics.median(extra):+.1f}",
            ]
        )
    headers = ["round", "access log", "requests", "errors", "req/s", "p50 ms", "p99 ms"]
    return markdown_table([*headers, "req/s / off", "server CPU µs/request", "CPU µs vs off"], rows)


async def _call(app: FastAPI, body: bytes) -> None:
    """One ``POST /recommend`` through the app's ASGI interface; raise unless 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/recommend",
        "raw_path": b"/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"POST /recommend answered {status}")


async def _in_process(
    bundle: Path, workdir: Path, n_requests: int, repeats: int, seed: int
) -> dict[str, float]:
    users = read_bundle(bundle).user_ids
    rng = random.Random(seed)
    bodies = [
        f'{{"user_id":"{rng.choice(users)}","k":20,"exclude_seen":true}}'.encode()
        for _ in range(n_requests)
    ]
    apps = {
        access_log: create_app(
            load_settings(
                bundle_path=bundle,
                store_path=workdir / f"in-process-{access_log}.sqlite3",
                allow_open_writes=True,
                log_level="INFO",
                access_log=access_log,
            )
        )
        for access_log in (False, True)
    }
    best = dict.fromkeys(VARIANTS, float("inf"))
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        for repeat in range(repeats + 1):  # the first pass warms the caches up
            for name in VARIANTS:
                configure_logging("INFO", "text" if name == "text" else "json")
                app = apps[name != "off"]
                started = time.process_time()
                for body in bodies:
                    await _call(app, body)
                spent = (time.process_time() - started) * 1e6 / n_requests
                if repeat:
                    best[name] = min(best[name], spent)
    return best


def in_process(bundle: Path, workdir: Path, n_requests: int, repeats: int, seed: int) -> str:
    """The in-process table (the lines go to a file, as the server's would, and nowhere
    else: this benchmark's own log handlers are detached meanwhile)."""
    root = logging.getLogger()
    own_handlers, real_stderr = root.handlers[:], sys.stderr
    with (workdir / "in-process.log").open("w", encoding="utf-8") as log:
        sys.stderr = log
        for handler in own_handlers:
            root.removeHandler(handler)
        try:
            best = asyncio.run(_in_process(bundle, workdir, n_requests, repeats, seed))
        finally:
            sys.stderr = real_stderr
            for handler in root.handlers[:]:
                root.removeHandler(handler)
            for handler in own_handlers:
                root.addHandler(handler)
    rows = [
        [
            name,
            f"{best[name]:.1f}",
            "" if name == "off" else f"{best[name] - best['off']:+.1f}",
            f"{best['off'] / best[name]:.3f}",
        ]
        for name in VARIANTS
    ]
    headers = ["access log", "CPU µs per request", "vs off", "requests/CPU-second / off"]
    return markdown_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = wrk_parser("access_log", __doc__, "variant and round (over HTTP)")
    parser.add_argument("--requests", type=int, default=2000, help="in process, per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="in process")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "access-log.md")
    args = parser.parse_args(argv)
    setup_logging()
    check_wrk_args(parser, args)
    if min(args.requests, args.repeats) < 1:
        parser.error("--requests and --repeats must be >= 1")
    bundle = ensure_tiktok_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="promptmm-access-log-") as tmp:
        local = in_process(bundle, Path(tmp), args.requests, args.repeats, args.seed)
        results, line_bytes = run(
            bundle, args.connections, args.seconds, args.rounds, args.seed, Path(tmp)
        )
    per_line = ", ".join(f"{name} {size} B" for name, size in line_bytes.items() if name != "off")
    notes = (
        f"Bundle `{read_bundle(bundle).model_version}`, `POST /recommend` (k=20, random "
        "bundle users, response cache on: the cheapest request, so the largest relative "
        "cost), log_level INFO, the lines written to a file. The machine is shared with "
        "other engineers' jobs (see the load average above): compare within one table."
    )
    local_notes = (
        f"The app called as ASGI in this process, {args.requests} requests per variant and "
        f"repeat, CPU time per request, minimum of {args.repeats} interleaved repeats."
    )
    http_notes = (
        f"One uvicorn worker per variant pinned to CPU {SERVER_CPU}, wrk (1 thread, "
        f"{args.connections} keep-alive connections, {args.seconds:g} s per variant and "
        f"round) on CPU {CLIENT_CPU}; variants loaded in turn, {args.rounds} rounds. "
        "`uvicorn`: no access line of the service's own, uvicorn's instead (text, as the "
        "container logged before the service had one). An access line is on average "
        f"{per_line}."
    )
    text = write_report(
        args.out,
        "Access log cost on /recommend",
        [
            notes,
            "## In process\n\n" + local_notes + "\n\n" + local,
            "## Over HTTP (wrk)\n\n" + http_notes + "\n\n" + table(results),
        ],
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
