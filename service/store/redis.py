"""The shared store: Redis, so that every replica serves the same interactions and vectors.

Keys, all under ``<prefix>:``:

- ``<prefix>:seen:<user_id>``: a set of the item ids the user interacted with;
- ``<prefix>:events``: a stream, the append-only log of every event (fields ``user``,
  ``items`` as a JSON list, ``ts``), kept with its timestamp;
- ``<prefix>:log``: a list, one entry per (user, item) pair in append order, each the JSON
  array ``[user_id, item_id]``; :meth:`RedisStore.events_since` reads it, its revision being
  the list's length (entries written before this key existed are only in the stream);
- ``<prefix>:vec:<model_version>``: a hash, field ``<user_id>`` -> little-endian float32 bytes;
- ``<prefix>:snapshot:<model_version>``: a hash, ``revision`` and ``state``, the newest
  online-state snapshot, both fields replaced by one ``HSET`` (atomic).

:meth:`RedisStore.append` queues every event on one ``MULTI``/``EXEC`` pipeline: a bad event
discards the whole batch before anything is sent, and Redis applies the ``EXEC`` as one unit,
so the seen sets, the stream and the log never disagree and no reader sees half an append.
A connection lost after ``EXEC`` was applied is retried, which may log that batch twice in the
stream and the log, as if it had been appended twice (the seen sets are unaffected). How long
an acknowledged write survives a crash of Redis itself is the server's persistence setting
(``appendonly yes``, ``appendfsync``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from service.store.base import (
    Event,
    StoreClosedError,
    StoreError,
    ahead_of_store,
    check_event,
    check_limit,
    check_revision,
    vector_from_bytes,
    vector_to_bytes,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
RETRIES = 2


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    """:class:`~service.store.base.Store` backed by Redis at ``url``, keys under ``prefix:``."""

    def __init__(self, url: str, prefix: str) -> None:
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError(f"Redis key prefix must be non-empty without spaces, got {prefix!r}")
        self._url = redact(url)
        self._prefix = prefix
        self._closed = False
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                retry=Retry(ExponentialBackoff(), RETRIES),
            )
        except ValueError as exc:
            raise ValueError(
                f"REDIS_URL {self._url!r} is not a Redis URL ({exc}); "
                "expected redis://host:port/db, rediss://... or unix://..."
            ) from exc
        logger.info("Redis store at %s, keys under %s:", self._url, prefix)

    @property
    def prefix(self) -> str:
        return self._prefix

    def append(self, events: Sequence[Event]) -> None:
        """Queue every event on one transaction, then apply it; a bad event sends nothing."""
        with self._errors("append"), self._live().pipeline(transaction=True) as pipe:
            for event in events:
                self._write_event(pipe, check_event(event))
            if len(pipe):
                pipe.execute()

    def seen(self, user_id: str) -> set[str]:
        with self._errors("read seen items"):
            members = cast(set[bytes], self._live().smembers(self._seen_key(user_id)))
        return {member.decode() for member in members}

    def events_since(
        self, revision: int, limit: int | None = None
    ) -> tuple[int, list[tuple[str, str]]]:
        """The log's entries from index ``revision`` on (at most ``limit``) and the index
        after the last one, read in one transaction with the log's length."""
        revision = check_revision(revision)
        limit = check_limit(limit)
        with (
            self._errors("read the interaction log"),
            self._live().pipeline(transaction=True) as pipe,
        ):
            pipe.llen(self._log_key)
            pipe.lrange(self._log_key, revision, -1 if limit is None else revision + limit - 1)
            latest, entries = cast(tuple[int, list[bytes]], tuple(pipe.execute()))
        if revision > latest:
            raise ahead_of_store(revision, latest, f"Redis log {self._log_key}")
        return revision + len(entries), [self._decode_pair(entry) for entry in entries]

    def latest_revision(self) -> int:
        with self._errors("read the log's revision"):
            return int(self._live().llen(self._log_key))

    def put_snapshot(self, model_version: str, revision: int, state: bytes) -> None:
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        fields: dict[Any, Any] = {"revision": check_revision(revision), "state": bytes(state)}
        with self._errors("write a snapshot"):
            self._live().hset(self._snapshot_key(model_version), mapping=fields)

    def get_snapshot(self, model_version: str) -> tuple[int, bytes] | None:
        with self._errors("read a snapshot"):
            found = cast(
                list[bytes | None],
                self._live().hmget(self._snapshot_key(model_version), ["revision", "state"]),
            )
        revision, state = found
        if revision is None or state is None:
            return None
        return int(revision), state

    def get_vector(self, user_id: str, model_version: str) -> np.ndarray | None:
        with self._errors("read a user vector"):
            blob = cast(bytes | None, self._live().hget(self._vec_key(model_version), user_id))
        return None if blob is None else vector_from_bytes(blob)

    def put_vector(self, user_id: str, model_version: str, vector: np.ndarray) -> None:
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        blob = vector_to_bytes(vector)
        with self._errors("write a user vector"):
            self._live().hset(self._vec_key(model_version), user_id, blob)

    def ping(self) -> bool:
        if self._closed:
            return False
        try:
            return bool(self._client.ping())
        except (redis.RedisError, OSError) as exc:
            logger.warning("Redis at %s does not answer: %s", self._url, exc)
            return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def _write_event(self, pipe: redis.client.Pipeline, event: Event) -> None:
        pipe.sadd(self._seen_key(event.user_id), *event.item_ids)
        fields: dict[Any, Any] = {
            "user": event.user_id,
            "items": json.dumps(list(event.item_ids)),
            "ts": repr(float(event.timestamp)),
        }
        pipe.xadd(self._events_key, fields)
        pipe.rpush(self._log_key, *(json.dumps([event.user_id, item]) for item in event.item_ids))

    def _decode_pair(self, entry: bytes) -> tuple[str, str]:
        """The (user_id, item_id) of one log entry; a malformed entry is a ``StoreError``."""
        try:
            pair = json.loads(entry)
        except ValueError as exc:
            raise StoreError(f"Redis log {self._log_key} holds a corrupt entry {entry!r}") from exc
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        ):
            raise StoreError(f"Redis log {self._log_key} holds a corrupt entry {entry!r}")
        return pair[0], pair[1]

    @property
    def _events_key(self) -> str:
        return f"{self._prefix}:events"

    @property
    def _log_key(self) -> str:
        return f"{self._prefix}:log"

    def _seen_key(self, user_id: str) -> str:
        return f"{self._prefix}:seen:{user_id}"

    def _snapshot_key(self, model_version: str) -> str:
        return f"{self._prefix}:snapshot:{model_version}"

    def _vec_key(self, model_version: str) -> str:
        return f"{self._prefix}:vec:{model_version}"

    def _live(self) -> redis.Redis:
        if self._closed:
            raise StoreClosedError(f"Redis store at {self._url} ({self._prefix}:) is closed")
        return self._client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreError(
                f"Redis at {self._url} is unreachable: cannot {action}: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise StoreError(f"Redis at {self._url} refused to {action}: {exc}") from exc
