"""Reads and writes at the same time: ``wrk`` with Lua scripts, both stores, one worker.

    python -m bench.mixed_load [--bundle models/tiktok] [--stores sqlite,redis]
                               [--redis-url redis://127.0.0.1:6379/15] [--seconds 8]

The service (the container's command, one uvicorn worker, default settings, a fresh store) runs
on CPU 0 and every ``wrk`` process on CPU 1. For each store, after a warm-up, in this order:

- ``healthz``: ``GET /healthz`` on 16 connections, the framework's ceiling in this run;
- ``read-only``: ``POST /recommend`` for random bundle users (k=20) on 16 connections;
- ``15+1``: two ``wrk`` processes at once, 15 connections of ``/recommend`` and one connection
  posting one interaction (a random user, a random item) at a time; read and write latencies
  are each process's own;
- ``90/10``: one ``wrk`` on 16 connections whose Lua script makes each request a write with
  probability 0.1, else a read (latencies of both together; the writes are counted);
- ``1%``: the same with probability 0.01.

Writes accumulate over the cases (the log grows as a live service's does). Reported per case:
req/s, p50/p99 (wrk's, from send to the full answer), errors, throughput / ``/healthz``, and the
server process's CPU time per request over the case (from ``/proc``: on a machine shared with
other jobs the wall-clock numbers mostly measure the others, CPU time much less so).
Goals (issue 12): 15+1 reads >= 0.8 x read-only, read p99 <= 10 ms, write p99 <= 20 ms; 90/10
total >= 0.6 x ``/healthz``, p99 <= 15 ms. Writes ``bench/results/mixed-load-<label>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    setup_logging,
    write_report,
)
from bench.harness import API_KEY, drop_redis_prefix
from bench.wrk_load import CLIENT_CPU, SERVER_CPU, require_wrk, start_pinned
from bundle import read_bundle

logger = logging.getLogger(__name__)

CONNECTIONS = 16
WARM_UP_S = 3.0

LOAD_SCRIPT = """
local users, items = {}, {}
for line in io.lines("%(users)s") do users[#users + 1] = line end
for line in io.lines("%(items)s") do items[#items + 1] = line end
math.randomseed(%(seed)d)
local write_share = %(write_share)f
local read_headers = {["Content-Type"] = "application/json"}
local write_headers = {["Content-Type"] = "application/json", ["X-API-Key"] = "%(key)s"}
writes = 0
reads = 0
request = function()
  local user = users[math.random(#users)]
  if write_share > 0 and math.random() < write_share then
    writes = writes + 1
    return wrk.format("POST", "/interactions", write_headers,
      '{"user_id":"' .. user .. '","item_ids":["' .. items[math.random(#items)] .. '"]}')
  end
  reads = reads + 1
  return wrk.format("POST", "/recommend", read_headers,
    '{"user_id":"' .. user .. '","k":20,"exclude_seen":true}')
end
"""
HEALTH_SCRIPT = """
writes = 0
reads = 0
request = function()
  reads = reads + 1
  return wrk.format("GET", "/healthz")
end
"""
REPORT_SCRIPT = """
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local e = summary.errors
  local writes, reads = 0, 0
  for _, thread in ipairs(threads) do
    writes = writes + thread:get("writes")
    reads = reads + thread:get("reads")
  end
  io.write(string.format(
    '\\nRESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,'
    .. '"writes":%d,"reads":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status, writes, reads))
end
"""


@dataclass(frozen=True)
class Run:
    """One wrk process's summary (``writes``/``reads``: requests its script built of each)."""

    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    writes: int
    reads: int
    server_cpu_us: float = 0.0
    """The server's CPU time per request of the whole case (every wrk of it together)."""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Files:
    users: Path
    items: Path


def script(files: Files, write_share: float, seed: int) -> str:
    return LOAD_SCRIPT % {
        "users": files.users,
        "items": files.items,
        "seed": seed,
        "write_share": write_share,
        "key": API_KEY,
    }


def wrk_together(url: str, seconds: float, jobs: Sequence[tuple[str, int, str]]) -> list[Run]:
    """Run one wrk per ``(name, connections, lua)`` at the same time on CLIENT_CPU."""
    with tempfile.TemporaryDirectory(prefix="promptmm-mixed-lua-") as tmp:
        processes = []
        for position, (name, connections, lua) in enumerate(jobs):
            path = Path(tmp) / f"{position}.lua"
            path.write_text(lua + REPORT_SCRIPT, encoding="utf-8")
            command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(path), url]
            processes.append(
                (
                    name,
                    subprocess.Popen(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}),
                    ),
                )
            )
        return [_result(name, process) for name, process in processes]


def _result(name: str, process: subprocess.Popen[str]) -> Run:
    output, _ = process.communicate()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk ({name}) failed ({process.returncode}):\n{output}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return Run(
        name=name,
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        errors=result["errors"],
        writes=result["writes"],
        reads=result["reads"],
    )


def cases(files: Files, seed: int) -> list[tuple[str, list[tuple[str, int, str]]]]:
    """The measured cases, in order: (case, [(process name, connections, lua)])."""
    return [
        ("healthz", [("healthz", CONNECTIONS, HEALTH_SCRIPT)]),
        ("read-only", [("reads", CONNECTIONS, script(files, 0.0, seed))]),
        (
            "15+1",
            [
                ("reads", CONNECTIONS - 1, script(files, 0.0, seed)),
                ("writes", 1, script(files, 1.0, seed + 1)),
            ],
        ),
        ("90/10", [("mixed", CONNECTIONS, script(files, 0.1, seed + 2))]),
        ("1%", [("mixed", CONNECTIONS, script(files, 0.01, seed + 3))]),
    ]


def run_store(
    store: str,
    bundle: Path,
    files: Files,
    seconds: float,
    seed: int,
    redis_url: str,
    tmp: Path,
) -> list[tuple[str, list[Run]]]:
    settings: dict[str, str] = {}
    prefix = f"promptmm-bench-{uuid.uuid4().hex[:8]}"
    if store == "redis":
        settings = {"REDIS_URL": redis_url, "PROMPTMM_REDIS_PREFIX": prefix}
    service = bench_service(
        bundle, tmp / f"{store}.sqlite3", tmp / f"{store}.log", settings=settings
    )
    start_pinned(service)
    results = []
    try:
        with service:
            for case, jobs in cases(files, seed):
                wrk_together(service.url, WARM_UP_S, jobs)
                cpu_before = process_cpu_s(service.pid)
                runs = wrk_together(service.url, seconds, jobs)
                cpu_us = (process_cpu_s(service.pid) - cpu_before) * 1e6
                requests = sum(run.requests for run in runs)
                runs = [replace(run, server_cpu_us=cpu_us / max(requests, 1)) for run in runs]
                for run in runs:
                    logger.info(
                        "%s %s %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors, %d writes",
                        store,
                        case,
                        run.name,
                        run.throughput,
                        run.p50_ms,
                        run.p99_ms,
                        run.errors,
                        run.writes,
                    )
                results.append((case, runs))
    finally:
        if store == "redis":
            drop_redis_prefix(redis_url, prefix)
    return results


def table(results: list[tuple[str, list[Run]]]) -> str:
    healthz = results[0][1][0].throughput
    read_only = results[1][1][0].throughput
    rows = []
    for case, runs in results:
        for run in runs:
            ratios = f"{run.throughput / healthz:.2f}"
            if case == "15+1" and run.name == "reads":
                ratios += f" ({run.throughput / read_only:.2f} of read-only)"
            rows.append(
                [
                    case,
                    run.name,
                    run.requests,
                    run.writes,
                    run.errors,
                    f"{run.throughput:,.0f}",
                    f"{run.p50_ms:.2f}",
                    f"{run.p99_ms:.2f}",
                    ratios,
                    f"{run.server_cpu_us:,.0f}",
                ]
            )
    headers = ["case", "wrk", "requests", "of them writes", "errors", "req/s", "p50 ms", "p99 ms"]
    return markdown_table([*headers, "req/s / healthz", "server CPU us / request"], rows)


def goals(results: list[tuple[str, list[Run]]]) -> str:
    by_case = {case: {run.name: run for run in runs} for case, runs in results}
    healthz = by_case["healthz"]["healthz"].throughput
    reads, writes = by_case["15+1"]["reads"], by_case["15+1"]["writes"]
    mixed = by_case["90/10"]["mixed"]
    checks = [
        (
            "15+1 reads >= 0.8 x read-only",
            f"{reads.throughput / by_case['read-only']['reads'].throughput:.2f}",
            reads.throughput >= 0.8 * by_case["read-only"]["reads"].throughput,
        ),
        ("15+1 read p99 <= 10 ms", f"{reads.p99_ms:.2f} ms", reads.p99_ms <= 10),
        ("15+1 write p99 <= 20 ms", f"{writes.p99_ms:.2f} ms", writes.p99_ms <= 20),
        (
            "90/10 total >= 0.6 x /healthz",
            f"{mixed.throughput / healthz:.2f}",
            mixed.throughput >= 0.6 * healthz,
        ),
        ("90/10 p99 <= 15 ms", f"{mixed.p99_ms:.2f} ms", mixed.p99_ms <= 15),
    ]
    return markdown_table(
        ["goal", "measured", "met"],
        [[name, value, "yes" if ok else "**no**"] for name, value, ok in checks],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed_load", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--stores", default="sqlite,redis", help="comma-separated: sqlite,redis")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PROMPTMM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="the Redis of the redis case (keys under a fresh prefix, deleted afterwards)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="main", help="names the results file")
    args = parser.parse_args(argv)
    setup_logging()
    stores = [store for store in args.stores.split(",") if store]
    if not stores or not set(stores) <= {"sqlite", "redis"}:
        parser.error("--stores takes sqlite and/or redis")
    require_wrk(parser)
    bundle = ensure_tiktok_bundle(args.bundle)
    loaded = read_bundle(bundle)
    sections = []
    with tempfile.TemporaryDirectory(prefix="promptmm-mixed-") as tmp:
        files = Files(Path(tmp) / "users.txt", Path(tmp) / "items.txt")
        files.users.write_text("\n".join(loaded.user_ids) + "\n", encoding="utf-8")
        items = list(loaded.item_ids)
        random.Random(args.seed).shuffle(items)
        files.items.write_text("\n".join(items) + "\n", encoding="utf-8")
        for store in stores:
            results = run_store(
                store, bundle, files, args.seconds, args.seed, args.redis_url, Path(tmp)
            )
            sections.append(f"## {store}\n\n" + table(results) + "\n\n" + goals(results))
    notes = (
        f"Bundle `{loaded.model_version}` ({loaded.n_users:,} users, {loaded.n_items:,} items), "
        f"default settings, one uvicorn worker pinned to CPU {SERVER_CPU}, a fresh store per "
        f"store kind; every wrk (1 thread, closed loop, {args.seconds:g} s per case after a "
        f"{WARM_UP_S:g} s warm-up) on CPU {CLIENT_CPU}. Writes post one random item for a "
        "random bundle user and accumulate over the cases (warm-ups included). The machine is "
        "shared with other engineers' jobs: compare the ratios within one run."
    )
    text = write_report(
        RESULTS_DIR / f"mixed-load-{args.label}.md",
        f"Mixed read/write load (wrk), {args.label}",
        [notes, *sections],
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
