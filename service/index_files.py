"""The served index of a bundle: its kind chosen by catalog size, an ANN graph saved beside it.

An approximate index (HNSW, IVF) over a big catalog takes seconds to build (HNSW over 200k
items of dim 64: tens of seconds on one core), so it is built once and saved beside the bundle
as ``index-<kind>-<parameters>-<embeddings checksum>.faiss``: the name says what it was built
from and how, so a changed bundle or setting never loads a stale index. :func:`load_index`
reads that file when it is there (and valid), else builds the index and saves it atomically
(temporary file, then rename) when ``save_index`` is on and the directory is writable (a
read-only models volume only logs that it is not). ``python -m service.build_index PATH``
builds and saves it ahead of time, e.g. right after training.

``index_kind = "auto"`` (the default) is exact search up to ``exact_max_items`` items and HNSW
above: exact is exact and fast on a small catalog; HNSW keeps a big one within milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import faiss

from bundle import Bundle, resolve
from bundle.format import EMBEDDINGS, MANIFEST
from service.config import Settings
from service.index import IndexKind, ItemIndex, build_index, wrap_index

logger = logging.getLogger(__name__)

SAVED_KINDS: tuple[IndexKind, ...] = ("hnsw", "ivf")
"""Kinds worth saving: an exact index is a copy of the embeddings, built in milliseconds."""


def index_kind(settings: Settings, n_items: int) -> IndexKind:
    """The index kind to serve ``n_items`` items with (``auto``: by ``exact_max_items``)."""
    if settings.index_kind != "auto":
        return settings.index_kind
    return "exact" if n_items <= settings.exact_max_items else "hnsw"


def index_file_name(kind: IndexKind, settings: Settings, embeddings_sha256: str) -> str:
    """The saved index's file name: kind, build parameters and the embeddings' checksum."""
    if kind == "hnsw":
        parameters = f"m{settings.hnsw_m}-efc{settings.hnsw_ef_construction}"
    elif kind == "ivf":
        parameters = f"nlist{settings.ivf_nlist}"
    else:
        raise ValueError(f"a {kind!r} index is not saved")
    return f"index-{kind}-{parameters}-{embeddings_sha256[:16]}.faiss"


def _index_path(bundle: Bundle, path: Path, kind: IndexKind, settings: Settings) -> Path | None:
    """Where ``bundle``'s saved index lives, or None when ``path`` is no longer that bundle."""
    directory = resolve(path)
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("model_version") != bundle.model_version:
        return None
    digest = str(manifest["files"][EMBEDDINGS]["sha256"])
    return directory / index_file_name(kind, settings, digest)


def _read(file: Path, bundle: Bundle, kind: IndexKind, settings: Settings) -> ItemIndex | None:
    try:
        index = faiss.read_index(str(file))
    except RuntimeError as exc:
        logger.warning("%s: unreadable (%s); building the index instead", file, exc)
        return None
    if (
        index.ntotal != bundle.n_items
        or index.d != bundle.dim
        or index.metric_type != faiss.METRIC_INNER_PRODUCT
    ):
        logger.warning("%s: does not match the bundle; building the index instead", file)
        return None
    return wrap_index(bundle.item_embeddings, index, kind, settings)


def _save(index: ItemIndex, file: Path) -> None:
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
        os.close(handle)
        try:
            faiss.write_index(index.faiss_index, temporary)
            os.chmod(temporary, 0o644)
            os.replace(temporary, file)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except (OSError, RuntimeError) as exc:
        logger.warning("could not save the index beside the bundle (%s): %s", file, exc)
        return
    logger.info("saved the %s index to %s", index.kind, file)


def load_index(bundle: Bundle, path: Path, settings: Settings) -> ItemIndex:
    """The index serving ``bundle`` (read from ``path``): loaded from its saved file, or built
    (and saved, for an approximate kind with ``save_index`` on)."""
    kind = index_kind(settings, bundle.n_items)
    started = time.perf_counter()
    file = _index_path(bundle, path, kind, settings) if kind in SAVED_KINDS else None
    if file is not None and file.is_file():
        loaded = _read(file, bundle, kind, settings)
        if loaded is not None:
            logger.info("loaded the %s index from %s in %.2fs", kind, file, _since(started))
            return loaded
    index = build_index(bundle.item_embeddings, kind, settings)
    logger.info("built the %s index in %.2fs", kind, _since(started))
    if file is not None and settings.save_index:
        _save(index, file)
    return index


def _since(started: float) -> float:
    return time.perf_counter() - started
