"""Restricted unpickling of the HKUDS ``*Mat.pkl`` interaction matrices.

The files are pickled ``scipy.sparse.coo_matrix`` objects (protocol 3) written with
scipy < 1.13 and numpy 1.x, so they name the legacy modules ``scipy.sparse.coo`` and
``numpy.core.multiarray``. :class:`SparseUnpickler` resolves only the handful of
scipy.sparse and numpy globals such a file needs (mapping the legacy module names to
the current ones); any other global is refused before it is imported or called.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.data.errors import DataFormatError

_SPARSE_CLASSES = ("coo_matrix", "csr_matrix", "csc_matrix")
_SPARSE_MODULES = ("scipy.sparse", "scipy.sparse.{kind}", "scipy.sparse._{kind}")
# numpy.core was renamed numpy._core in numpy 2; pickles name either.
_NUMPY_FUNCTIONS = {
    ("multiarray", "_reconstruct"),  # ndarray reconstruction (protocols 2-4)
    ("numeric", "_frombuffer"),  # ndarray reconstruction (protocol 5)
}


def _allowed_sparse() -> dict[tuple[str, str], str]:
    allowed: dict[tuple[str, str], str] = {}
    for name in _SPARSE_CLASSES:
        kind = name.split("_", 1)[0]
        for module in _SPARSE_MODULES:
            allowed[(module.format(kind=kind), name)] = name
    return allowed


_ALLOWED_SPARSE = _allowed_sparse()


def _numpy_core(submodule: str) -> ModuleType:
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


class SparseUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a pickled scipy sparse matrix needs."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_SPARSE:
            return getattr(sp, _ALLOWED_SPARSE[(module, name)])
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix):
                submodule = module[len(prefix) :]
                if (submodule, name) in _NUMPY_FUNCTIONS:
                    return getattr(_numpy_core(submodule), name)
        raise DataFormatError(
            f"{self._source}: refused to unpickle {module}.{name}; only scipy.sparse "
            f"{', '.join(_SPARSE_CLASSES)} and the numpy array classes they contain are "
            "allowed (is this really a pickled interaction matrix?)"
        )


def load_sparse_pickle(path: Path) -> sp.spmatrix:
    """Unpickle the scipy sparse matrix in ``path`` with :class:`SparseUnpickler`.

    Raises :class:`DataFormatError` when the file cannot be read, is truncated or
    corrupt, names a global outside the allow-list, or holds anything but a 2-D
    scipy sparse matrix.
    """
    try:
        with path.open("rb") as handle:
            matrix = SparseUnpickler(handle, path.name).load()
    except OSError as exc:
        raise DataFormatError(f"{path.name}: cannot read the file ({exc})") from exc
    except DataFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataFormatError(
            f"{path.name}: truncated or corrupt pickle ({type(exc).__name__}: {exc}); "
            "expected a complete pickled scipy.sparse matrix"
        ) from exc
    if not sp.issparse(matrix) or len(matrix.shape) != 2:
        raise DataFormatError(
            f"{path.name}: holds a {type(matrix).__name__}, expected a 2-D scipy.sparse matrix"
        )
    return matrix
