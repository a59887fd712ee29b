"""python -m service.export_log: either store's interaction log as JSON lines, in log order."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from service.export_log import main
from service.store import RedisStore, SQLiteStore
from service.store.base import Event, Store


@pytest.fixture(params=["sqlite", "redis"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Store]:
    """Opens one store of each kind, configured through the environment as the service is."""
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"
        monkeypatch.setenv("PROMPTMM_STORE_PATH", str(path))
        monkeypatch.delenv("REDIS_URL", raising=False)
        return lambda: SQLiteStore(path)
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("PROMPTMM_REDIS_PREFIX", prefix)
    return lambda: RedisStore(url, prefix)


@pytest.fixture
def logged(open_store: Callable[[], Store]) -> Callable[[], Store]:
    """The store holding three events (4 pairs)."""
    store = open_store()
    store.append([Event(user_id="u1", item_ids=("a", "b"), timestamp=1.0)])
    store.append([Event(user_id="u2", item_ids=("c",), timestamp=2.0)])
    store.append([Event(user_id="u1", item_ids=("d",), timestamp=3.0)])
    store.close()
    return open_store


def lines(path: Path) -> list[tuple[str, str]]:
    return [
        (record["user_id"], record["item_id"])
        for record in map(json.loads, path.read_text().splitlines())
    ]


def test_writes_every_pair_in_log_order(
    logged: Callable[[], Store], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exports" / "log.jsonl"

    assert main(["--out", str(out)]) == 0

    assert lines(out) == [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u1", "d")]
    assert "wrote 4 interactions" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["log.jsonl"]


def test_since_exports_only_what_came_after(logged: Callable[[], Store], tmp_path: Path) -> None:
    out = tmp_path / "delta.jsonl"
    store = logged()
    revision, _ = store.events_since(0)
    store.append([Event(user_id="u3", item_ids=("e",), timestamp=4.0)])
    store.close()

    assert main(["--out", str(out), "--since", str(revision)]) == 0

    assert lines(out) == [("u3", "e")]


def test_a_revision_ahead_of_the_log_is_an_error_and_writes_nothing(
    logged: Callable[[], Store], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.jsonl"
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(out), "--since", "99"])

    assert exited.value.code == 2
    assert "revision 99 is ahead of" in capsys.readouterr().err
    assert not out.exists()
