"""kill -9 during a stream of acknowledged writes: every acknowledged interaction survives."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.harness import API_KEY, ServiceProcess
from bundle import Bundle
from service.store import RedisStore, SQLiteStore, Store
from tests.integration.conftest import ServiceFactory
from tests.integration.helpers import item_ids_of, load_bundle, train_item_ids, users_with_history

pytestmark = pytest.mark.integration

N_USERS = 8
MIN_ACKED = 30
ACK_TIMEOUT_S = 120.0


class AckedWriter(threading.Thread):
    """Posts one (user, item) per request, round robin over users, until the server dies.

    ``acked`` holds every pair answered 2xx; ``attempted`` every pair sent (acknowledged or
    not: a request in flight at the kill may or may not have been written).
    """

    def __init__(self, url: str, candidates: dict[str, list[str]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.candidates = candidates
        self.acked: list[tuple[str, str]] = []
        self.attempted: list[tuple[str, str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        queues = {user: list(items) for user, items in self.candidates.items()}
        with httpx.Client(base_url=self.url, timeout=10.0, headers={"X-API-Key": API_KEY}) as c:
            while any(queues.values()):
                for user, items in queues.items():
                    if not items:
                        continue
                    item = items.pop(0)
                    self.attempted.append((user, item))
                    try:
                        response = c.post(
                            "/interactions", json={"user_id": user, "item_ids": [item]}
                        )
                    except httpx.TransportError:
                        return
                    if response.is_success:
                        self.acked.append((user, item))
                    else:
                        self.error = AssertionError(f"{response.status_code}: {response.text}")
                        return


def _candidates(bundle: Bundle) -> dict[str, list[str]]:
    """For a few users, every item they have not interacted with in training."""
    result = {}
    for user in users_with_history(bundle, N_USERS):
        seen = train_item_ids(bundle, user)
        result[bundle.user_ids[user]] = [item for item in bundle.item_ids if item not in seen]
    return result


def _kill_during_writes(service: ServiceProcess, writer: AckedWriter) -> None:
    writer.start()
    deadline = time.monotonic() + ACK_TIMEOUT_S
    while len(writer.acked) < MIN_ACKED and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    service.stop(kill=True)
    writer.join(timeout=30.0)
    assert writer.error is None, writer.error
    assert len(writer.acked) >= MIN_ACKED, f"only {len(writer.acked)} writes acknowledged"


def _assert_all_acknowledged_survive(
    service: ServiceProcess, bundle: Bundle, writer: AckedWriter, store: Store
) -> None:
    acked: dict[str, set[str]] = {}
    for user, item in writer.acked:
        acked.setdefault(user, set()).add(item)
    unacked = set(writer.attempted) - set(writer.acked)
    try:
        for user, items in acked.items():
            assert items <= store.seen(user), f"{user}: lost {sorted(items - store.seen(user))}"
    finally:
        store.close()
    with service.start().client() as client:
        for user, items in acked.items():
            internal = bundle.user_ids.index(user)
            body = client.post(
                "/recommend", json={"user_id": user, "k": bundle.n_items, "exclude_seen": True}
            )
            assert body.status_code == 200, body.text
            served = set(item_ids_of(body.json()))
            assert not served & items, f"{user}: acknowledged items served again"
            missing = set(bundle.item_ids) - served - items - train_item_ids(bundle, internal)
            assert {(user, item) for item in missing} <= unacked, (
                f"{user}: items neither served nor seen: {sorted(missing)}"
            )


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_acknowledged_interactions_survive_kill_9(
    store_kind: str,
    tiny_models_root: Path,
    service_factory: ServiceFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    bundle = load_bundle(tiny_models_root)
    store_path = tmp_path / "crash.sqlite3"
    if store_kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        service = service_factory(redis_url=url, redis_prefix=prefix, store_path=store_path)
    else:
        service = service_factory(store_path=store_path)
    service.start()
    writer = AckedWriter(service.url, _candidates(bundle))
    _kill_during_writes(service, writer)
    store: Store = RedisStore(url, prefix) if store_kind == "redis" else SQLiteStore(store_path)
    _assert_all_acknowledged_survive(service, bundle, writer, store)
    service.stop()
