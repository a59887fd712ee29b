"""kill -9 a process that is appending: every append it acknowledged is still there.

The child appends one event per loop and prints ``ack <n>`` only after ``append`` returned;
the test SIGKILLs it mid-stream, collects every ack it printed, reopens the store and looks
for each acknowledged event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service.store import RedisStore, SQLiteStore, Store

REPO = Path(__file__).resolve().parents[2]
ACKS_BEFORE_KILL = 40

CHILD = """
import sys
from service.store.base import Event

kind, where, prefix = sys.argv[1:4]
if kind == "sqlite":
    from service.store.sqlite import SQLiteStore
    store = SQLiteStore(where)
else:
    from service.store.redis import RedisStore
    store = RedisStore(where, prefix)
for n in range(1_000_000):
    store.append([Event(f"u{n % 3}", (f"item-{n}", f"extra-{n}"), float(n))])
    print(f"ack {n}", flush=True)
"""


def acked_after_kill(kind: str, where: str, prefix: str) -> list[int]:
    """Run the appending child, SIGKILL it after some acks, return every ack it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, where, prefix],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acks: list[int] = []
    try:
        assert child.stdout is not None
        while len(acks) < ACKS_BEFORE_KILL:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=10)
                pytest.fail(f"the appending child exited early ({child.returncode}): {err}")
            acks.append(int(line.split()[1]))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it was killed"
    acks += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ack ")]
    return acks


def assert_all_present(store: Store, acks: list[int]) -> None:
    assert acks == list(range(len(acks))), "acks were printed out of order"
    seen = {user: store.seen(f"u{user}") for user in range(3)}
    missing = [n for n in acks if not {f"item-{n}", f"extra-{n}"} <= seen[n % 3]]
    assert missing == [], f"{len(missing)} acknowledged appends lost after kill -9: {missing[:10]}"


def check_store(kind: str, where: str, prefix: str, reopen: Callable[[], Store]) -> None:
    acks = acked_after_kill(kind, where, prefix)
    assert len(acks) >= ACKS_BEFORE_KILL
    store = reopen()
    try:
        assert_all_present(store, acks)
    finally:
        store.close()


@pytest.mark.integration
def test_sqlite_keeps_every_acknowledged_append_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    check_store("sqlite", str(path), "", lambda: SQLiteStore(path))


@pytest.mark.integration
def test_redis_keeps_every_acknowledged_append_after_kill_9(
    redis_url: str, redis_prefix: str
) -> None:
    check_store("redis", redis_url, redis_prefix, lambda: RedisStore(redis_url, redis_prefix))
