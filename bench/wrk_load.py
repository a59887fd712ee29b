"""Closed-loop load from ``wrk`` (C) on its own CPU, the service pinned to another one.

    python -m bench.wrk_load [--bundle models/tiktok] [--connections 16] [--seconds 8]

``bench.service_load`` drives the service from a Python client that shares the 2 cores with
the server, so its numbers mix the client's cost into the server's. Here the service (one
uvicorn worker, the container's command, a fresh SQLite store) runs on CPU 0 and ``wrk`` on
CPU 1 (``sched_setaffinity``, inherited by each process), so the server has a core to itself
and the client costs it nothing. Phases, each after a warm-up, ``--rounds`` times in turn so
that drift hits every endpoint alike:

- before any write: ``GET /healthz`` and ``POST /recommend`` for random bundle users (k=20,
  exclude_seen), answered from the per-user lists (:mod:`service.toplists`, kept from a
  user's first request);
- then ``POSTERS`` users post one interaction each (about as many items get an overlay), and
  again ``GET /healthz``, ``POST /recommend`` for users who did not post (their list, with every
  overlaid item scored and merged) and for users who posted (the vector folded from the log,
  then a FAISS search).

Latency is wrk's, from send to the full response; ``--connections`` keep-alive connections send
as soon as their last answer came (closed loop: at saturation latency = connections /
throughput). Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``) and two CPUs.
Writes ``bench/results/service-load-wrk.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import (
    RESULTS_DIR,
    LatencyStats,
    bench_service,
    ensure_tiktok_bundle,
    markdown_table,
    response_cache_counts,
    setup_logging,
    write_report,
)
from bench.harness import API_KEY, ServiceProcess
from bundle import read_bundle

logger = logging.getLogger(__name__)

SERVER_CPU, CLIENT_CPU = 0, 1
POSTERS = 2000
"""Users who post one interaction before the search-path phase."""

REQUEST_SCRIPT = """
local users = {}
for line in io.lines("%(users)s") do users[#users + 1] = line end
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local user = users[math.random(#users)]
  return wrk.format(nil, "%(path)s", nil,
    '{"user_id":"' .. user .. '","k":20,"exclude_seen":true}')
end
"""
REPORT_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,'
    .. '"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def start_pinned(service: ServiceProcess) -> None:
    """Start ``service`` on SERVER_CPU alone (the child inherits this process's affinity)."""
    own_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        service.start()
    finally:
        os.sched_setaffinity(0, own_cpus)


def recommend_script(users: Path, seed: int, path: str = "/recommend") -> str:
    """wrk's Lua: POST ``path`` with a ``/recommend`` body for a random user of ``users``."""
    return REQUEST_SCRIPT % {"users": users, "seed": seed, "path": path}


def wrk_phase(name: str, url: str, connections: int, seconds: float, script: str) -> LatencyStats:
    """One wrk run on CLIENT_CPU; its Lua ``done`` hook reports exact percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + REPORT_SCRIPT)
    try:
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", handle.name, url],
            check=True,
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}),
        ).stdout
    finally:
        Path(handle.name).unlink()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"wrk printed no RESULT line for {name}:\n{output}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return LatencyStats(
        name=name,
        requests=result["requests"],
        errors=result["errors"],
        seconds=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        mean_ms=result["mean_us"] / 1e3,
    )


def post_one_each(url: str, users: Sequence[str], items: Sequence[str], seed: int) -> None:
    """One interaction (a random item) for each of ``users``, acknowledged before returning."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30.0) as client:
        for user in users:
            response = client.post(
                "/interactions", json={"user_id": user, "item_ids": [rng.choice(items)]}
            )
            response.raise_for_status()


def run(
    bundle: Path, connections: int, seconds: float, rounds: int, seed: int, cache_mb: int
) -> tuple[list[list[LatencyStats]], tuple[int, int]]:
    """The phases before and after ``POSTERS`` users posted one interaction each, and the
    response cache's (hits, misses) over the whole run."""
    loaded = read_bundle(bundle)
    rng = random.Random(seed)
    posters = rng.sample(loaded.user_ids, min(POSTERS, loaded.n_users // 2))
    quiet = sorted(set(loaded.user_ids) - set(posters))
    with tempfile.TemporaryDirectory(prefix="promptmm-wrk-") as tmp:
        files = {name: Path(tmp) / f"{name}.txt" for name in ("all", "quiet", "posted")}
        for name, users in (("all", loaded.user_ids), ("quiet", quiet), ("posted", posters)):
            files[name].write_text("\n".join(users) + "\n")
        service = bench_service(
            bundle,
            Path(tmp) / "store.sqlite3",
            Path(tmp) / "service.log",
            settings={"PROMPTMM_RESPONSE_CACHE_MB": str(cache_mb)},
        )
        start_pinned(service)
        with service:
            recommend = f"{service.url}/recommend"
            quiet_script = recommend_script(files["quiet"], seed)
            before = {
                "healthz": (f"{service.url}/healthz", ""),
                "recommend": (recommend, recommend_script(files["all"], seed)),
            }
            results = [measure(before, service.url, connections, seconds, rounds, "before")]
            post_one_each(service.url, posters, loaded.item_ids, seed)
            after = {
                "healthz": before["healthz"],
                "recommend, users who did not post": (recommend, quiet_script),
                "recommend, users who posted": (
                    recommend,
                    recommend_script(files["posted"], seed),
                ),
            }
            results.append(measure(after, service.url, connections, seconds, rounds, "after"))
            return results, response_cache_counts(service.url)


def measure(
    phases: dict[str, tuple[str, str]],
    url: str,
    connections: int,
    seconds: float,
    rounds: int,
    label: str,
) -> list[LatencyStats]:
    """Warm each phase up, then run them ``rounds`` times in turn."""
    for name, (target, script) in phases.items():
        wrk_phase(f"warm-up {name}", target, connections, 3, script)
    results = []
    for round_ in range(1, rounds + 1):
        for name, (target, script) in phases.items():
            stats = wrk_phase(name, target, connections, seconds, script)
            logger.info(
                "%s writes, round %d, %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms",
                label,
                round_,
                name,
                stats.throughput,
                stats.p50_ms,
                stats.p99_ms,
            )
            results.append(stats)
    return results


def table(results: Sequence[LatencyStats], rounds: int) -> str:
    """One row per phase and round, then the medians, with recommend/healthz per round."""
    per_round = len(results) // rounds
    rows: list[list[object]] = []
    for round_ in range(rounds):
        chunk = results[round_ * per_round : (round_ + 1) * per_round]
        healthz = chunk[0].throughput
        for stats in chunk:
            ratio = "" if stats is chunk[0] else f"{stats.throughput / healthz:.2f}"
            rows.append(_row(str(round_ + 1), stats, ratio))
    names = [stats.name for stats in results[:per_round]]
    for name in names:
        same = [stats for stats in results if stats.name == name]
        median = LatencyStats(
            name=name,
            requests=sum(stats.requests for stats in same),
            errors=sum(stats.errors for stats in same),
            seconds=sum(stats.seconds for stats in same),
            p50_ms=statistics.median(stats.p50_ms for stats in same),
            p99_ms=statistics.median(stats.p99_ms for stats in same),
            mean_ms=statistics.median(stats.mean_ms for stats in same),
        )
        rows.append(_row("all (req/s overall; median p50/p99)", median, ""))
    headers = ["round", "endpoint", "requests", "errors", "req/s", "p50 ms", "p99 ms"]
    return markdown_table([*headers, "/ healthz req/s"], rows)


def _row(label: str, stats: LatencyStats, ratio: str) -> list[object]:
    return [label, stats.name, *stats.cells(), ratio]


def wrk_parser(module: str, description: str | None, per: str) -> argparse.ArgumentParser:
    """The options of a wrk benchmark ``python -m bench.<module>``: ``--bundle``,
    ``--connections``, ``--seconds`` (``per`` what), ``--rounds``, ``--seed``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{module}", description=description)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle or models root")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help=f"per {per}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_wrk_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser.error`` unless the counts are positive and :func:`require_wrk`."""
    if args.connections < 1 or args.rounds < 1 or not args.seconds > 0:
        parser.error("--connections and --rounds must be >= 1 and --seconds > 0")
    require_wrk(parser)


def require_wrk(parser: argparse.ArgumentParser) -> None:
    """Exit through ``parser.error`` unless wrk is installed and this process may use both
    CPUs (the server's and wrk's)."""
    if shutil.which("wrk") is None:
        parser.error("wrk is not on PATH: install it (Debian: apt-get install wrk)")
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        parser.error(
            f"needs CPUs {SERVER_CPU} and {CLIENT_CPU}; this process may use only "
            f"{sorted(os.sched_getaffinity(0))}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = wrk_parser("wrk_load", __doc__, "phase and round")
    parser.add_argument(
        "--response-cache-mb",
        type=int,
        default=64,
        help="PROMPTMM_RESPONSE_CACHE_MB of the service (0: every answer computed)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "service-load-wrk.md")
    args = parser.parse_args(argv)
    setup_logging()
    check_wrk_args(parser, args)
    bundle = ensure_tiktok_bundle(args.bundle)
    if args.response_cache_mb < 0:
        parser.error("--response-cache-mb must be >= 0")
    results, (hits, misses) = run(
        bundle, args.connections, args.seconds, args.rounds, args.seed, args.response_cache_mb
    )
    if args.response_cache_mb:
        cache = (
            f"Response cache on ({args.response_cache_mb} MB): {hits:,} hits, "
            f"{misses:,} misses over the whole run (warm-ups included): the measured "
            "`/recommend` phases are mostly answers rendered earlier at the same log revision "
            "(the 2,000 posts emptied the cache once). Without it "
            "(`--response-cache-mb 0`) every answer is computed as described next."
        )
    else:
        cache = "Response cache off (`--response-cache-mb 0`): every answer is computed."
    notes = (
        f"Bundle `{read_bundle(bundle).model_version}`, embedded SQLite store, one uvicorn "
        f"worker pinned to CPU {SERVER_CPU}; wrk (1 thread, {args.connections} keep-alive "
        f"connections, closed loop, {args.seconds:g} s per phase) pinned to CPU {CLIENT_CPU}. "
        f"{cache} Before any write, `/recommend` is computed from the per-user lists; "
        f"after {POSTERS} users posted, users who did not post still are (with every overlaid "
        "item scored and merged), users who posted fold their vector from the log and search "
        "the index. Goals: recommend/healthz >= 0.8, /recommend p99 <= 10 ms."
    )
    sections = [
        notes,
        "## Before any write\n\n" + table(results[0], args.rounds),
        f"## After {POSTERS} users posted one interaction each\n\n"
        + table(results[1], args.rounds),
    ]
    text = write_report(args.out, "Service load benchmark (wrk)", sections)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
