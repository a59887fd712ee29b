"""``python -m service.export_log --out FILE [--since REVISION]``: the log as JSON lines.

Reads the store the service is configured with (``PROMPTMM_STORE_PATH``, or ``REDIS_URL``
and ``PROMPTMM_REDIS_PREFIX``) and writes every ``(user_id, item_id)`` appended after
``--since`` (0: all of them), in log order, one ``{"user_id": ..., "item_id": ...}`` object
per line: the format a training config's ``data.interactions`` reads, to fine-tune the
exported student on them (``python -m training student CONFIG --warm-start BUNDLE``). The
file appears complete or not at all (written beside, then renamed). Prints the number of
pairs and the log revision reached, the ``--since`` of the next incremental export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from service.config import load_settings
from service.store import open_store
from service.store.base import StoreError


def write_pairs(pairs: Sequence[tuple[str, str]], out: Path) -> None:
    """Write ``pairs`` as JSON lines to ``out`` atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for user_id, item_id in pairs:
                stream.write(json.dumps({"user_id": user_id, "item_id": item_id}) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, out)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.export_log", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument(
        "--since", type=int, default=0, help="log revision to start after (default 0: all)"
    )
    args = parser.parse_args(argv)
    if args.since < 0:
        parser.error(f"--since must be >= 0, got {args.since}")
    settings = load_settings(allow_open_writes=True)
    store = open_store(settings)
    try:
        revision, pairs = store.events_since(args.since)
    except StoreError as exc:
        parser.exit(2, f"error: {exc}\n")
    finally:
        store.close()
    write_pairs(pairs, args.out)
    sys.stdout.write(f"wrote {len(pairs)} interactions to {args.out}; log revision {revision}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
