"""A minimal keep-alive HTTP/1.1 load generator on asyncio streams (loopback only).

Why not httpx: on a 2-core machine the client shares the CPU with the server, and httpx's
per-request cost (~0.3 ms) is of the order of the server's own cost for ``/healthz``, which
would hide the difference between endpoints that the benchmark exists to show. This client
writes one request and reads one ``Content-Length`` response per round trip, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.common import LatencyStats

logger = logging.getLogger(__name__)

T = TypeVar("T")
RequestSpec = tuple[str, str, bytes]
"""(method, path, JSON body or b"")."""


class Connection:
    """One persistent HTTP/1.1 connection to ``host:port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host)

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ValueError(f"{method} {path}: response has no Content-Length; expected one")
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        """Close the connection; a reset from the server at this point ends it just as well."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


@dataclass
class _Phase:
    n_requests: int
    started: float
    deadline: float
    rate: float | None = None
    next_index: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def take(self) -> int | None:
        if self.next_index >= self.n_requests or time.perf_counter() >= self.deadline:
            return None
        self.next_index += 1
        return self.next_index - 1


async def _worker(
    phase: _Phase,
    host: str,
    port: int,
    make: Callable[[int], RequestSpec],
    headers: dict[str, str],
) -> None:
    connection = await Connection.open(host, port)
    try:
        while (index := phase.take()) is not None:
            method, path, body = make(index)
            started = time.perf_counter()
            if phase.rate is not None:
                # open loop: request ``index`` is due at a fixed time; its latency counts from
                # then, so time spent waiting for a free connection is not hidden
                due = phase.started + index / phase.rate
                if due > started:
                    await asyncio.sleep(due - started)
                started = due
            status, payload = await connection.request(method, path, body, headers)
            phase.latencies.append(time.perf_counter() - started)
            if status != 200:
                phase.errors += 1
                phase.first_error = phase.first_error or f"{status}: {payload[:300]!r}"
    finally:
        await connection.close()


async def run_phase(
    name: str,
    port: int,
    make: Callable[[int], RequestSpec],
    *,
    connections: int,
    n_requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    rate: float | None = None,
) -> LatencyStats:
    """Send ``n_requests`` (at most ``max_seconds``) over ``connections`` concurrent connections.

    ``rate`` None: closed loop, each connection sends its next request as soon as the last
    answered (the throughput at saturation). ``rate`` r: open loop, request ``n`` is due at
    ``n / r`` seconds and sent on the first free connection; latency counts from the due time.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator drives loopback only, got host {host!r}")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    started = time.perf_counter()
    phase = _Phase(n_requests, started, started + max_seconds, rate)
    await asyncio.gather(
        *(_worker(phase, host, port, make, headers or {}) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    if phase.errors:
        logger.warning("%s: %d non-200 answers, first: %s", name, phase.errors, phase.first_error)
    return LatencyStats.of(name, phase.latencies, phase.errors, elapsed)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)
