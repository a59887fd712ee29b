"""Item feature files: ``<modality>_feat.npy``, one row per item."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.errors import DataFormatError
from training.data.validate import check_finite

FEATURE_SUFFIX = "_feat.npy"


def load_features(folder: Path) -> dict[str, np.ndarray]:
    """Load every ``<modality>_feat.npy`` in ``folder`` as a float32 (items, dim) array.

    The modality name is the file name before ``_feat.npy`` (``image``, ``audio``,
    ``text``, ...). Pickled arrays are never loaded (``allow_pickle=False``).
    """
    features: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob(f"*{FEATURE_SUFFIX}")):
        name = path.name[: -len(FEATURE_SUFFIX)]
        if not name:
            raise DataFormatError(
                f"{path.name}: no modality name; expected <modality>{FEATURE_SUFFIX}"
            )
        features[name] = _load_matrix(path)
    return features


def feature_rows(features: dict[str, np.ndarray]) -> int | None:
    """The row count all modalities share, or ``None`` when there are no features."""
    rows = {name: matrix.shape[0] for name, matrix in sorted(features.items())}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{name}{FEATURE_SUFFIX} {count}" for name, count in rows.items())
        raise DataFormatError(
            f"feature files disagree on the number of items ({listed} rows); expected the "
            "same row count (one row per item) in every file"
        )
    return next(iter(rows.values()), None)


def _load_matrix(path: Path) -> np.ndarray:
    try:
        raw = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DataFormatError(f"{path.name}: cannot read the file ({exc})") from exc
    except (ValueError, EOFError) as exc:
        raise DataFormatError(
            f"{path.name}: truncated or corrupt .npy file ({exc}); expected a complete "
            "numeric (items, dim) array"
        ) from exc
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.dtype.kind not in "fiub":
        shape = getattr(raw, "shape", None)
        dtype = getattr(raw, "dtype", type(raw).__name__)
        raise DataFormatError(
            f"{path.name}: holds {dtype} data of shape {shape}; expected a 2-D numeric "
            "(items, dim) array"
        )
    if raw.shape[1] == 0:
        raise DataFormatError(f"{path.name}: has 0 columns; expected dim >= 1")
    with np.errstate(over="ignore"):  # an overflow to inf is reported by check_finite
        matrix = np.ascontiguousarray(raw, dtype=np.float32)
    check_finite(matrix, path.name)
    return matrix
