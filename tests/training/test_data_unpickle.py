"""The restricted unpickler: legacy names map, anything beyond sparse matrices is refused."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.training.conftest import TinyContent, write_hkuds
from training.data import DataFormatError, load_dataset
from training.data.unpickle import load_sparse_pickle


class _RunsShell:
    """Unpickling this would call os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "trnMat.pkl"
    path.write_bytes(pickle.dumps(_RunsShell(f"touch {marker}"), protocol=3))
    refused = f"{os.system.__module__}.system"  # posix.system on Linux

    with pytest.raises(DataFormatError, match=rf"trnMat\.pkl: refused to unpickle {refused}"):
        load_sparse_pickle(path)

    assert not marker.exists()


def test_a_malicious_split_file_stops_the_whole_load(tmp_path: Path, tiny: TinyContent) -> None:
    folder = write_hkuds(tmp_path / "h", tiny)
    marker = tmp_path / "executed"
    (folder / "valMat.pkl").write_bytes(pickle.dumps(_RunsShell(f"touch {marker}")))

    with pytest.raises(DataFormatError, match=r"valMat\.pkl: refused to unpickle"):
        load_dataset(folder)

    assert not marker.exists()


def test_builtins_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tstMat.pkl"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DataFormatError, match=r"tstMat\.pkl: refused to unpickle builtins\.eval"):
        load_sparse_pickle(path)


def test_an_allowed_module_does_not_open_its_other_names(tmp_path: Path) -> None:
    path = tmp_path / "trnMat.pkl"
    path.write_bytes(b"cscipy.sparse\nload_npz\n(S'x.npz'\ntR.")
    with pytest.raises(DataFormatError, match=r"refused to unpickle scipy\.sparse\.load_npz"):
        load_sparse_pickle(path)


def test_a_pickled_array_is_not_a_sparse_matrix(tmp_path: Path) -> None:
    path = tmp_path / "trnMat.pkl"
    path.write_bytes(pickle.dumps(np.ones((2, 2)), protocol=3))
    with pytest.raises(DataFormatError, match=r"trnMat\.pkl: holds a ndarray, expected a 2-D"):
        load_sparse_pickle(path)


def test_legacy_module_names_load_without_a_deprecation_warning(tmp_path: Path) -> None:
    """The HKUDS files name scipy.sparse.coo and numpy.core.multiarray (scipy<1.13, numpy 1.x)."""
    matrix = sp.coo_matrix((np.ones(3), ([0, 1, 2], [2, 0, 1])), shape=(3, 4))
    payload = pickle.dumps(matrix, protocol=3)
    legacy = payload.replace(b"scipy.sparse._coo\n", b"scipy.sparse.coo\n").replace(
        b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"
    )
    assert b"scipy.sparse.coo\n" in legacy
    assert b"numpy.core.multiarray\n" in legacy
    path = tmp_path / "trnMat.pkl"
    path.write_bytes(legacy)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_sparse_pickle(path)

    assert loaded.shape == (3, 4)
    assert (sp.csr_matrix(loaded) != sp.csr_matrix(matrix)).nnz == 0
