"""The content map of a bundle (format 2): an item's modality features -> its student embedding.

Items nobody has interacted with get their embedding from their content. Training learns
the map (``training/coldstart.py``) and exports it as plain numpy; this module applies it,
with numpy only, so the service can place a new item (``PUT /items``) exactly where the
offline evaluator placed the cold items of the export.

Every modality ``m`` is first standardised, ``z_m = (x_m - mean_m) / std_m``; then

- ``linear``: ``e = scale · (Σ_m z_m @ weight_m + bias)``;
- ``knn``: the ``k`` reference (warm) items whose content is most similar,
  ``sim = mean_m cos(z_m, reference_m)``, give
  ``e = scale · Σ_j w_j reference_embeddings[j] / Σ_j w_j`` with ``w_j = max(sim_j, 0)``
  (plain mean when every ``w_j`` is 0); ties in similarity go to the smaller reference row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["METHODS", "ContentMap", "content_embeddings"]

METHODS = ("linear", "knn")
_EPS = 1e-12


@dataclass(frozen=True)
class ContentMap:
    """A content -> student-space map (see the module doc for the formulas).

    ``mean``/``std`` map each modality to its float32 ``(d_m,)`` standardisation (std > 0).
    ``linear`` uses ``weights`` (modality -> float32 ``(d_m, dim)``) and ``bias``
    (``(dim,)``); ``knn`` uses ``references`` (modality -> float32 ``(n_ref, d_m)``, rows
    L2-normalised standardised features), ``reference_embeddings`` (``(n_ref, dim)``) and
    ``k``. ``info`` is free-form JSON (how the map was chosen), kept in the manifest.
    """

    method: str
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    scale: float = 1.0
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    bias: np.ndarray | None = None
    references: dict[str, np.ndarray] = field(default_factory=dict)
    reference_embeddings: np.ndarray | None = None
    k: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> dict[str, int]:
        """Modality name -> feature dimension, sorted by name."""
        return {name: int(self.mean[name].shape[0]) for name in sorted(self.mean)}

    @property
    def dim(self) -> int:
        if self.method == "linear":
            assert self.bias is not None
            return int(self.bias.shape[0])
        assert self.reference_embeddings is not None
        return int(self.reference_embeddings.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The map's arrays by ``.npz`` key (``<modality>.mean`` ...)."""
        result: dict[str, np.ndarray] = {}
        for name in self.modalities:
            result[f"{name}.mean"] = self.mean[name]
            result[f"{name}.std"] = self.std[name]
            if self.method == "linear":
                result[f"{name}.weight"] = self.weights[name]
            else:
                result[f"{name}.reference"] = self.references[name]
        if self.method == "linear":
            assert self.bias is not None
            result["bias"] = self.bias
        else:
            assert self.reference_embeddings is not None
            result["reference_embeddings"] = self.reference_embeddings
        return result

    def describe(self) -> dict[str, Any]:
        """The manifest's ``content_map`` entry (everything but the arrays)."""
        return {
            "method": self.method,
            "modalities": self.modalities,
            "scale": self.scale,
            "k": self.k,
            "info": self.info,
        }

    @classmethod
    def from_arrays(
        cls, described: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> ContentMap:
        """Rebuild a map from :meth:`describe` and :meth:`arrays`; raise ValueError if malformed."""
        method = described.get("method")
        modalities = described.get("modalities")
        if method not in METHODS:
            raise ValueError(f"content_map: method {method!r} is not one of {METHODS}")
        if not isinstance(modalities, Mapping) or not modalities:
            raise ValueError("content_map: 'modalities' must name at least one modality")
        per = "weight" if method == "linear" else "reference"
        needed = [f"{m}.{part}" for m in modalities for part in ("mean", "std", per)]
        needed.append("bias" if method == "linear" else "reference_embeddings")
        missing = [key for key in needed if key not in arrays]
        if missing:
            raise ValueError(f"content_map: missing arrays {missing}")
        content_map = cls(
            method=str(method),
            mean={m: arrays[f"{m}.mean"] for m in modalities},
            std={m: arrays[f"{m}.std"] for m in modalities},
            scale=float(described.get("scale", 1.0)),
            weights={m: arrays[f"{m}.weight"] for m in modalities} if per == "weight" else {},
            bias=arrays.get("bias"),
            references={m: arrays[f"{m}.reference"] for m in modalities}
            if per == "reference"
            else {},
            reference_embeddings=arrays.get("reference_embeddings"),
            k=int(described.get("k", 0)),
            info=dict(described.get("info", {})),
        )
        check(content_map)
        if content_map.modalities != {str(m): d for m, d in modalities.items()}:
            raise ValueError(
                f"content_map: manifest modalities {dict(modalities)} but the arrays say "
                f"{content_map.modalities}"
            )
        return content_map


def _check_array(name: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if array.dtype != np.float32:
        raise ValueError(f"content_map: {name} must be float32, got {array.dtype}")
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        raise ValueError(f"content_map: {name} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"content_map: {name} contains NaN or inf")


def check(content_map: ContentMap) -> None:
    """Raise ValueError naming the first inconsistency of ``content_map``."""
    if content_map.method not in METHODS:
        raise ValueError(f"content_map: method {content_map.method!r} is not one of {METHODS}")
    if not content_map.mean or set(content_map.mean) != set(content_map.std):
        raise ValueError("content_map: mean and std must cover the same, non-empty modalities")
    if not np.isfinite(content_map.scale) or content_map.scale <= 0:
        raise ValueError(f"content_map: scale must be finite and > 0, got {content_map.scale}")
    linear = content_map.method == "linear"
    table = content_map.bias if linear else content_map.reference_embeddings
    table_name = "bias" if linear else "reference_embeddings"
    if table is None:
        raise ValueError(f"content_map: a {content_map.method} map needs its {table_name}")
    _check_array(
        "bias" if linear else "reference_embeddings", table, (None,) if linear else (None, None)
    )
    dim = content_map.dim
    n_ref = None if linear else int(table.shape[0])
    if not linear and not 1 <= content_map.k <= int(table.shape[0]):
        raise ValueError(f"content_map: k={content_map.k} must be in [1, {table.shape[0]}]")
    per = content_map.weights if linear else content_map.references
    if set(per) != set(content_map.mean):
        raise ValueError(
            f"content_map: {'weights' if linear else 'references'} cover {sorted(per)}, "
            f"but mean/std cover {sorted(content_map.mean)}"
        )
    for name, d_m in content_map.modalities.items():
        _check_array(f"{name}.mean", content_map.mean[name], (d_m,))
        _check_array(f"{name}.std", content_map.std[name], (d_m,))
        if not (content_map.std[name] > 0).all():
            raise ValueError(f"content_map: {name}.std must be > 0")
        if linear:
            _check_array(f"{name}.weight", per[name], (d_m, dim))
        else:
            _check_array(f"{name}.reference", per[name], (n_ref, d_m))


def _standardised(
    content_map: ContentMap, features: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    expected = content_map.modalities
    unknown = sorted(set(features) - set(expected))
    missing = sorted(set(expected) - set(features))
    if unknown or missing:
        raise ValueError(
            f"features must give exactly the modalities {sorted(expected)}"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
        )
    rows: set[int] = set()
    result = {}
    for name, d_m in expected.items():
        x = np.asarray(features[name], dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != d_m:
            raise ValueError(
                f"modality {name!r}: expected (n, {d_m}) features, got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"modality {name!r}: features contain NaN or inf")
        rows.add(x.shape[0])
        result[name] = (x - content_map.mean[name]) / content_map.std[name]
    if len(rows) != 1:
        raise ValueError(f"every modality must have the same number of rows, got {sorted(rows)}")
    return result


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
    return unit


def content_embeddings(content_map: ContentMap, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """The float32 ``(n, dim)`` embeddings of ``n`` items from their ``(n, d_m)`` features.

    Raises ValueError (naming the modality) for a missing or unknown modality, a wrong
    dimension, rows that differ between modalities, or NaN/inf.
    """
    z = _standardised(content_map, features)
    if content_map.method == "linear":
        assert content_map.bias is not None
        out = content_map.bias.astype(np.float64) + sum(
            z[name] @ content_map.weights[name].astype(np.float64) for name in z
        )
    else:
        assert content_map.reference_embeddings is not None
        sim = sum(_unit(z[name]) @ content_map.references[name].T.astype(np.float64) for name in z)
        sim = np.asarray(sim) / len(z)
        k = content_map.k
        # stable sort of -sim: the k most similar, ties to the smaller reference row
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        weights = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.where(total > 0, weights / np.maximum(total, _EPS), 1.0 / k)
        table = content_map.reference_embeddings.astype(np.float64)
        out = np.einsum("nk,nkd->nd", weights, table[top])
    return np.asarray(content_map.scale * out, dtype=np.float32)
