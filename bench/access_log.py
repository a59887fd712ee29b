"""What the access log costs ``/recommend``: req/s with it off, as JSON lines, as text.

    python -m bench.access_log [--bundle models/tiktok] [--connections 16] [--seconds 8]

One service per variant (the container's command, a fresh SQLite store, ``log_level`` INFO,
its lines written to a file as a container's stdout would be), each pinned to CPU 0 and
loaded in turn by ``wrk`` on CPU 1 (see :mod:`bench.wrk_load`), ``--rounds`` times, so that
drift on this shared machine hits every variant alike. The ratio to "off" within a round is
one number to read; the other, steadier when other jobs load the machine, is the server's CPU
time per request (``/proc/<pid>/stat`` user + system over the phase, divided by requests).
Writes ``bench/results/access-log.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
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
from bench.harness import ServiceProcess
from bench.wrk_load import CLIENT_CPU, SERVER_CPU, recommend_script, start_pinned, wrk_phase
from bundle import read_bundle

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
    """Per round, each variant's stats and CPU µs per request; the bytes of each log."""
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
            start_pinned(services[name])
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
    return results, {name: (workdir / f"{name}.log").stat().st_size for name in VARIANTS}


def table(results: Sequence[dict[str, tuple[LatencyStats, float]]]) -> str:
    rows: list[list[object]] = []
    for round_, stats in enumerate(results, start=1):
        off, off_cpu = stats["off"]
        for name, (one, cpu) in stats.items():
            rows.append(
                [
                    round_,
                    name,
                    one.requests,
                    one.errors,
                    f"{one.throughput:,.0f}",
                    f"{one.p50_ms:.2f}",
                    f"{one.p99_ms:.2f}",
                    f"{one.throughput / off.throughput:.3f}",
                    f"{cpu:.1f}",
                    "" if name == "off" else f"{cpu - off_cpu:+.1f}",
                ]
            )
    for name in VARIANTS:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.access_log", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "access-log.md")
    args = parser.parse_args(argv)
    setup_logging()
    if args.connections < 1 or args.rounds < 1 or not args.seconds > 0:
        parser.error("--connections and --rounds must be >= 1 and --seconds > 0")
    if shutil.which("wrk") is None:
        parser.error("wrk is not on PATH: install it (Debian: apt-get install wrk)")
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        parser.error(f"needs CPUs {SERVER_CPU} and {CLIENT_CPU}")
    bundle = ensure_tiktok_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="promptmm-access-log-") as tmp:
        results, log_bytes = run(
            bundle, args.connections, args.seconds, args.rounds, args.seed, Path(tmp)
        )
    requests = {name: sum(stats[name][0].requests for stats in results) for name in VARIANTS}
    per_line = ", ".join(
        f"{name} {log_bytes[name] / max(requests[name], 1):.0f} B"
        for name in VARIANTS
        if name != "off"
    )
    notes = (
        f"Bundle `{read_bundle(bundle).model_version}`, `POST /recommend` (k=20, random "
        f"bundle users, response cache on: the cheapest request, so the largest relative "
        f"cost), one uvicorn worker per variant pinned to CPU {SERVER_CPU}, wrk (1 thread, "
        f"{args.connections} keep-alive connections, {args.seconds:g} s per variant and round) "
        f"on CPU {CLIENT_CPU}; variants loaded in turn, {args.rounds} rounds. Each service "
        f"logs at INFO to a file (log bytes per request: {per_line}). The machine is shared "
        "with other engineers' jobs: compare within a round."
    )
    text = write_report(args.out, "Access log cost on /recommend (wrk)", [notes, table(results)])
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
