"""The exported-model bundle: the one contract between training and the service.

A bundle is a directory of plain numpy and JSON files (no pickle), described in
``models/README.md``. This module writes and reads it and validates everything it reads;
it depends on numpy only, so both the training side (torch) and the service (no torch)
can import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bundle.content import ContentMap, check
from bundle.lightgcn import fold_in_all_users

FORMAT_NAME = "promptmm-bundle"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # 2 adds the optional content map; 1 reads unchanged
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npz"
INTERACTIONS = "interactions.npz"
IDS = "ids.json"
PROPAGATION = "propagation.npz"
CONTENT_MAP = "content_map.npz"
LATEST = "LATEST"
DATA_FILES = (EMBEDDINGS, INTERACTIONS, IDS)
# propagation.npz must reproduce user_embeddings to within this times max(1, max |entry|)
PROPAGATION_TOLERANCE = 1e-4


class BundleError(ValueError):
    """A bundle is missing, corrupted, or of a version this reader does not support."""


@dataclass(frozen=True)
class Bundle:
    """An exported student: final embeddings, ID maps and training interactions.

    ``train_indptr``/``train_indices`` are the CSR rows of the (n_users, n_items) training
    matrix: the items of user ``u`` are ``train_indices[train_indptr[u]:train_indptr[u+1]]``.
    Scores are inner products ``user_embeddings[u] @ item_embeddings[i]``.

    ``user_ego`` (n_users, dim) and ``item_layers`` (n_layers, n_items, dim), both float32,
    are the student's LightGCN user ego embeddings and item embeddings at layers
    ``0..n_layers-1`` (layer 0 is the item ego table; ``n_layers`` = 0 for MF). They are
    optional (both present or both ``None``) and, when present, reproduce
    ``user_embeddings`` through :func:`fold_in_user` over each user's training items.

    ``content_map`` (format 2, optional) maps an item's modality features to its embedding
    (:func:`bundle.content.content_embeddings`); the items without a training interaction
    were given their content embedding at export.
    """

    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    train_indptr: np.ndarray
    train_indices: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    model_version: str
    dataset: str
    data_fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    user_ego: np.ndarray | None = None
    item_layers: np.ndarray | None = None
    content_map: ContentMap | None = None

    @property
    def n_users(self) -> int:
        return int(self.user_embeddings.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_embeddings.shape[1])

    @property
    def n_layers(self) -> int | None:
        """The student's number of LightGCN layers L, or ``None`` without ``item_layers``."""
        return None if self.item_layers is None else int(self.item_layers.shape[0])

    def seen_items(self, user: int) -> np.ndarray:
        """Training items of internal user index ``user`` (sorted int32 array)."""
        return self.train_indices[self.train_indptr[user] : self.train_indptr[user + 1]]

    def item_popularity(self) -> np.ndarray:
        """Number of training interactions per item, shape (n_items,)."""
        return np.bincount(self.train_indices, minlength=self.n_items).astype(np.int64)


def _check_propagation(bundle: Bundle) -> None:
    """Validate ``user_ego``/``item_layers`` (when present) against the rest of ``bundle``."""
    user_ego, item_layers = bundle.user_ego, bundle.item_layers
    if user_ego is None and item_layers is None:
        return
    if user_ego is None or item_layers is None:
        raise BundleError(
            f"{PROPAGATION}: user_ego and item_layers must both be present or both absent"
        )
    if user_ego.shape != (bundle.n_users, bundle.dim):
        raise BundleError(
            f"{PROPAGATION}: user_ego has shape {user_ego.shape}, "
            f"expected (n_users={bundle.n_users}, dim={bundle.dim})"
        )
    if item_layers.ndim != 3 or item_layers.shape[1:] != (bundle.n_items, bundle.dim):
        raise BundleError(
            f"{PROPAGATION}: item_layers has shape {item_layers.shape}, "
            f"expected (L, n_items={bundle.n_items}, dim={bundle.dim})"
        )
    for name, array in (("user_ego", user_ego), ("item_layers", item_layers)):
        if array.dtype != np.float32:
            raise BundleError(f"{PROPAGATION}: {name} must be float32, got {array.dtype}")
        if not np.isfinite(array).all():
            raise BundleError(f"{PROPAGATION}: {name} contains NaN or inf")
    if bundle.n_users == 0:
        return
    recomputed = fold_in_all_users(
        user_ego, item_layers, bundle.train_indptr, bundle.train_indices, bundle.item_popularity()
    )
    errors = np.abs(recomputed - bundle.user_embeddings).max(axis=1)
    worst = int(np.argmax(errors))
    tolerance = PROPAGATION_TOLERANCE * max(1.0, float(np.abs(bundle.user_embeddings).max()))
    if errors[worst] > tolerance:
        raise BundleError(
            f"{PROPAGATION}: user_ego and item_layers do not reproduce user_embeddings: "
            f"user row {worst} is off by {errors[worst]:.3g} (tolerance {tolerance:.3g})"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_ids(ids: Sequence[str], expected: int, what: str) -> list[str]:
    if len(ids) != expected:
        raise BundleError(f"{IDS}: {what} has {len(ids)} ids, expected {expected}")
    if not all(isinstance(value, str) for value in ids):
        raise BundleError(f"{IDS}: {what} ids must all be strings")
    if len(set(ids)) != len(ids):
        raise BundleError(f"{IDS}: {what} ids are not unique")
    return list(ids)


def validate(bundle: Bundle) -> None:
    """Raise :class:`BundleError` naming the first inconsistency in ``bundle``."""
    users, items = bundle.user_embeddings, bundle.item_embeddings
    for name, array in (("user_embeddings", users), ("item_embeddings", items)):
        if array.ndim != 2:
            raise BundleError(f"{EMBEDDINGS}: {name} must be 2-D, got shape {array.shape}")
        if array.dtype != np.float32:
            raise BundleError(f"{EMBEDDINGS}: {name} must be float32, got {array.dtype}")
        if not np.isfinite(array).all():
            raise BundleError(f"{EMBEDDINGS}: {name} contains NaN or inf")
    if users.shape[1] != items.shape[1]:
        raise BundleError(f"{EMBEDDINGS}: user dim {users.shape[1]} != item dim {items.shape[1]}")
    indptr, indices = bundle.train_indptr, bundle.train_indices
    for name, array in (("indptr", indptr), ("indices", indices)):
        if array.dtype.kind not in "iu":
            raise BundleError(f"{INTERACTIONS}: {name} must be integers, got {array.dtype}")
    if indptr.ndim != 1 or indptr.shape[0] != users.shape[0] + 1:
        raise BundleError(
            f"{INTERACTIONS}: indptr has shape {indptr.shape}, expected ({users.shape[0] + 1},)"
        )
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
        raise BundleError(f"{INTERACTIONS}: indptr is not a valid CSR row pointer")
    if indices.size and (indices.min() < 0 or indices.max() >= items.shape[0]):
        raise BundleError(f"{INTERACTIONS}: item index out of range [0, {items.shape[0]})")
    _check_ids(bundle.user_ids, users.shape[0], "users")
    _check_ids(bundle.item_ids, items.shape[0], "items")
    _check_propagation(bundle)
    if bundle.content_map is not None:
        try:
            check(bundle.content_map)
        except ValueError as exc:
            raise BundleError(f"{CONTENT_MAP}: {exc}") from exc
        if bundle.content_map.dim != bundle.dim:
            raise BundleError(
                f"{CONTENT_MAP}: the map gives {bundle.content_map.dim}-d embeddings, "
                f"the bundle's are {bundle.dim}-d"
            )


def new_version(dataset: str, now: datetime | None = None) -> str:
    """A sortable, unique version name such as ``tiktok-20261126T120000Z-3f2a1b``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{dataset}-{stamp}-{os.urandom(3).hex()}"


def write_bundle(bundle: Bundle, root: Path, *, update_latest: bool = True) -> Path:
    """Write ``bundle`` atomically to ``root/<model_version>/``; return that directory.

    Files go to a temporary directory beside the target, which is renamed into place only
    when complete, so a reader never sees a half-written bundle. ``root/LATEST`` (the
    version name) is then replaced atomically when ``update_latest`` is true.
    """
    validate(bundle)
    root.mkdir(parents=True, exist_ok=True)
    target = root / bundle.model_version
    if target.exists():
        raise BundleError(f"bundle {target} already exists; versions are immutable")
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle.model_version}.", dir=root))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes 0700: let other users serve it
        np.savez(
            staging / EMBEDDINGS,
            user_embeddings=bundle.user_embeddings,
            item_embeddings=bundle.item_embeddings,
        )
        np.savez(
            staging / INTERACTIONS,
            indptr=bundle.train_indptr.astype(np.int64),
            indices=bundle.train_indices.astype(np.int32),
        )
        (staging / IDS).write_text(
            json.dumps({"users": bundle.user_ids, "items": bundle.item_ids}), encoding="utf-8"
        )
        names: tuple[str, ...] = DATA_FILES
        extra: dict[str, Any] = {}
        if bundle.user_ego is not None and bundle.item_layers is not None:
            np.savez(
                staging / PROPAGATION, user_ego=bundle.user_ego, item_layers=bundle.item_layers
            )
            names += (PROPAGATION,)
            extra["propagation"] = {"n_layers": bundle.n_layers}
        if bundle.content_map is not None:
            np.savez(staging / CONTENT_MAP, **bundle.content_map.arrays())  # type: ignore[arg-type]
            names += (CONTENT_MAP,)
            extra["content_map"] = bundle.content_map.describe()
        manifest = {
            "format": FORMAT_NAME,
            # a bundle without a content map stays readable by format-1 readers
            "format_version": FORMAT_VERSION if bundle.content_map is not None else 1,
            "model_version": bundle.model_version,
            "created_at": bundle.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
            "dataset": bundle.dataset,
            "data_fingerprint": bundle.data_fingerprint,
            "n_users": bundle.n_users,
            "n_items": bundle.n_items,
            "dim": bundle.dim,
            "score": "dot",
            "files": {
                name: {"sha256": _sha256(staging / name), "bytes": (staging / name).stat().st_size}
                for name in names
            },
            **extra,
            "config": bundle.config,
            "metrics": bundle.metrics,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        for child in staging.iterdir():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if update_latest:
        _write_atomic(root / LATEST, bundle.model_version + "\n")
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def resolve(path: Path) -> Path:
    """Return the bundle directory that ``path`` names.

    ``path`` is either a bundle directory (it holds ``manifest.json``) or a models root
    whose ``LATEST`` file names a version directory inside it.
    """
    if (path / MANIFEST).is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        version = latest.read_text(encoding="utf-8").strip()
        if not version or "/" in version or version.startswith("."):
            raise BundleError(f"{latest}: invalid version name {version!r}")
        target = path / version
        if not (target / MANIFEST).is_file():
            raise BundleError(f"{latest} names {version!r}, but {target} holds no {MANIFEST}")
        return target
    raise BundleError(f"{path}: neither a bundle (no {MANIFEST}) nor a models root (no {LATEST})")


def _freeze(array: np.ndarray) -> None:
    """Make ``array`` and every array it views read-only."""
    view: Any = array
    while isinstance(view, np.ndarray):
        view.flags.writeable = False
        view = view.base


def frozen(array: np.ndarray) -> np.ndarray:
    """``array`` itself when it is C-contiguous and nothing can modify it (it and every array
    it views are read-only, as :func:`read_bundle` loads them), else a read-only copy.

    Readers of a bundle keep its arrays through this instead of copying them: one copy in
    memory, however many hold it.
    """
    view: Any = array
    while isinstance(view, np.ndarray) and not view.flags.writeable:
        view = view.base
    if view is None and array.flags.c_contiguous:
        return array
    copy = np.array(array, order="C", copy=True)
    copy.flags.writeable = False
    return copy


def _load_npz(path: Path, keys: Sequence[str] | None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all of them when ``None``) of the ``.npz`` at ``path``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = archive.files if keys is None else keys
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise BundleError(f"{path.name}: missing arrays {missing}")
            arrays = {key: archive[key] for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{path.name}: unreadable ({exc})") from exc
    for array in arrays.values():
        _freeze(array)
    return arrays


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{directory / MANIFEST}: unreadable ({exc})") from exc
    if not isinstance(manifest, Mapping) or manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{directory / MANIFEST}: not a {FORMAT_NAME} manifest")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(
            f"{directory / MANIFEST}: format_version {version!r} is not supported "
            f"(this reader supports {list(SUPPORTED_VERSIONS)}); re-export the model"
        )
    return dict(manifest)


def read_bundle(path: Path) -> Bundle:
    """Read and fully validate the bundle at ``path`` (see :func:`resolve`)."""
    directory = resolve(path)
    manifest = _read_manifest(directory)
    files = manifest.get("files", {})
    has_propagation = PROPAGATION in files
    if "propagation" in manifest and not has_propagation:
        raise BundleError(f"{MANIFEST}: has a 'propagation' key but lists no {PROPAGATION}")
    has_content_map = CONTENT_MAP in files
    if has_content_map != ("content_map" in manifest):
        raise BundleError(
            f"{MANIFEST}: the 'content_map' key and the listed {CONTENT_MAP} go together"
        )
    if has_content_map and manifest.get("format_version") != 2:
        raise BundleError(f"{MANIFEST}: a content map needs format_version 2")
    optional = ((PROPAGATION,) if has_propagation else ()) + (
        (CONTENT_MAP,) if has_content_map else ()
    )
    for name in DATA_FILES + optional:
        file_path = directory / name
        if not file_path.is_file():
            raise BundleError(f"{directory}: missing {name}")
        expected = files.get(name, {}).get("sha256")
        if expected != _sha256(file_path):
            raise BundleError(f"{file_path}: checksum does not match the manifest (corrupted?)")
    embeddings = _load_npz(directory / EMBEDDINGS, ("user_embeddings", "item_embeddings"))
    interactions = _load_npz(directory / INTERACTIONS, ("indptr", "indices"))
    propagation = (
        _load_npz(directory / PROPAGATION, ("user_ego", "item_layers")) if has_propagation else {}
    )
    content_map = None
    if has_content_map:
        described = manifest["content_map"]
        if not isinstance(described, Mapping):
            raise BundleError(f"{MANIFEST}: 'content_map' must be an object")
        try:
            content_map = ContentMap.from_arrays(
                described, _load_npz(directory / CONTENT_MAP, None)
            )
        except ValueError as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"{CONTENT_MAP}: {exc}") from exc
    try:
        ids = json.loads((directory / IDS).read_text(encoding="utf-8"))
        user_ids, item_ids = ids["users"], ids["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(
            f"{directory / IDS}: expected {{'users': [...], 'items': [...]}}"
        ) from exc
    bundle = Bundle(
        user_embeddings=embeddings["user_embeddings"],
        item_embeddings=embeddings["item_embeddings"],
        train_indptr=interactions["indptr"],
        train_indices=interactions["indices"],
        user_ids=user_ids,
        item_ids=item_ids,
        model_version=str(manifest.get("model_version", "")),
        dataset=str(manifest.get("dataset", "")),
        data_fingerprint=str(manifest.get("data_fingerprint", "")),
        config=dict(manifest.get("config", {})),
        metrics=dict(manifest.get("metrics", {})),
        created_at=str(manifest.get("created_at", "")),
        user_ego=propagation.get("user_ego"),
        item_layers=propagation.get("item_layers"),
        content_map=content_map,
    )
    validate(bundle)
    for key, actual in (
        ("n_users", bundle.n_users),
        ("n_items", bundle.n_items),
        ("dim", bundle.dim),
    ):
        if manifest.get(key) != actual:
            raise BundleError(
                f"{MANIFEST}: {key}={manifest.get(key)!r} but the arrays say {actual}"
            )
    if has_propagation:
        declared = manifest.get("propagation")
        n_layers = declared.get("n_layers") if isinstance(declared, Mapping) else None
        if n_layers != bundle.n_layers:
            raise BundleError(
                f"{MANIFEST}: propagation.n_layers={n_layers!r} but {PROPAGATION} holds "
                f"{bundle.n_layers} item layers"
            )
    return bundle
