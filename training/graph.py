"""The normalised user-item graph shared by teacher and student (method.md section 1).

Node order everywhere: users ``0..U-1`` then items ``U..U+I-1``.

The adjacency is the standard LightGCN one, ``Â = D^-1/2 [[0, R], [Rᵀ, 0]] D^-1/2``, built
from the *training* interactions only and stored as a torch sparse CSR tensor (the fastest
layout for ``Â @ X`` on CPU and CUDA). ``Â`` is symmetric, so the backward pass of ``Â @ X``
is ``Â @ grad``: :func:`spmm` uses that instead of letting autograd transpose the matrix.
Item-feature propagation uses the off-diagonal blocks ``Â_ui``/``Â_iu``
(:func:`bipartite_blocks`), so each edge is touched once per direction.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "bipartite_blocks",
    "item_feature_propagation",
    "item_side",
    "layer_mean",
    "normalized_adjacency",
    "propagate",
    "propagate_layers",
    "spmm",
    "user_side",
]


def normalized_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """Symmetric normalised bipartite adjacency of the training interactions.

    Args:
        train: (U, I) binary interaction matrix (any scipy sparse format; values are
            binarised: every stored non-zero counts as one edge).

    Returns:
        float32 sparse CSR tensor (U+I, U+I) on the CPU, ``D^-1/2 A D^-1/2`` with
        ``A = [[0, R], [Rᵀ, 0]]``. Rows and columns of zero-degree nodes are zero.
        Move it with ``.to(device)``.
    """
    if not sp.issparse(train) or train.ndim != 2:
        raise ValueError(
            f"train must be a 2-D scipy sparse (U, I) matrix, got {type(train).__name__}"
        )
    r = sp.csr_matrix(train, dtype=np.float32, copy=True)
    r.eliminate_zeros()
    r.data[:] = 1.0
    r.sum_duplicates()
    r.data[:] = 1.0
    n_users, n_items = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a.sort_indices()
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    nonzero = degree > 0
    inv_sqrt[nonzero] = degree[nonzero] ** -0.5
    d = sp.diags(inv_sqrt)
    norm = sp.csr_matrix(d @ a @ d, dtype=np.float32)
    norm.sort_indices()
    return _csr(
        torch.from_numpy(norm.indptr.astype(np.int64)),
        torch.from_numpy(norm.indices.astype(np.int64)),
        torch.from_numpy(norm.data.astype(np.float32)),
        (n_users + n_items, n_users + n_items),
    )


def _csr(
    crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """A float32 sparse CSR tensor (torch's "beta" notice silenced; invariants unchecked)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(
            crow, col, val, size=size, dtype=torch.float32, check_invariants=False
        )


class _SparseMM(torch.autograd.Function):
    """``a @ x`` with the gradient w.r.t. ``x`` taken as ``a_t @ grad`` (``a_t = aᵀ``, given)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a_t)
        out: torch.Tensor = torch.sparse.mm(a, x)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        (a_t,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(a_t, grad)


def _sparse_mm(a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _SparseMM.apply(a, a_t, x)  # type: ignore[no-untyped-call]
    return out


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One propagation ``adj @ x``.

    Args:
        adj: (N, N) sparse, **symmetric** (as :func:`normalized_adjacency` returns).
        x: (N, d) dense, on ``adj``'s device.

    Returns:
        (N, d) dense. Differentiable w.r.t. ``x`` (not w.r.t. ``adj``).
    """
    if adj.shape[1] != x.shape[0]:
        raise ValueError(f"adjacency is {tuple(adj.shape)} but x has {x.shape[0]} rows")
    return _sparse_mm(adj, adj, x)


def propagate_layers(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> list[torch.Tensor]:
    """The LightGCN layers ``[ego, Â ego, ..., Â^L ego]``.

    Args:
        adj: (U+I, U+I) normalised adjacency.
        ego: (U+I, d) stacked user then item ego embeddings.
        n_layers: L >= 0.

    Returns:
        L + 1 tensors (U+I, d); the first is ``ego`` itself.
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    layers = [ego]
    for _ in range(n_layers):
        layers.append(spmm(adj, layers[-1]))
    return layers


def layer_mean(layers: list[torch.Tensor]) -> torch.Tensor:
    """The LightGCN final embeddings: the mean of :func:`propagate_layers`' output.

    A single layer (L = 0, MF) is returned unchanged.
    """
    total = layers[0]
    for layer in layers[1:]:
        total = total + layer
    return total if len(layers) == 1 else total / len(layers)


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN propagation with layer mean: ``mean(ego, Â ego, ..., Â^L ego)``.

    Args:
        adj: (U+I, U+I) normalised adjacency.
        ego: (U+I, d) stacked user then item ego embeddings.
        n_layers: L >= 0; ``0`` returns ``ego`` unchanged (MF).

    Returns:
        (U+I, d) final embeddings.
    """
    return layer_mean(propagate_layers(adj, ego, n_layers))


def bipartite_blocks(adj: torch.Tensor, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The off-diagonal blocks ``(Â_ui (U, I), Â_iu (I, U))`` of the CSR adjacency.

    Cheap (slices of ``adj``'s index arrays); ``Â_iu = Â_uiᵀ`` because ``Â`` is symmetric.
    """
    if adj.layout != torch.sparse_csr:
        raise ValueError(
            f"adj must be a sparse CSR tensor (normalized_adjacency), got {adj.layout}"
        )
    crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
    n_items = adj.shape[0] - n_users
    split = int(crow[n_users])
    a_ui = _csr(crow[: n_users + 1], col[:split] - n_users, val[:split], (n_users, n_items))
    a_iu = _csr(crow[n_users:] - split, col[split:], val[split:], (n_items, n_users))
    return a_ui, a_iu


def user_side(adj: torch.Tensor, item_x: torch.Tensor, n_users: int) -> torch.Tensor:
    """Users aggregate their items' rows through ``Â``: ``Â_ui @ item_x``.

    Args:
        adj: (U+I, U+I) normalised CSR adjacency.
        item_x: (I, d) item rows.
        n_users: U.

    Returns:
        (U, d): row ``u`` is ``Σ_{i∈N(u)} item_x[i] / sqrt(|N(u)| |N(i)|)``.
    """
    a_ui, a_iu = bipartite_blocks(adj, n_users)
    return _sparse_mm(a_ui, a_iu, item_x)


def item_side(adj: torch.Tensor, user_x: torch.Tensor, n_users: int) -> torch.Tensor:
    """Items aggregate their users' rows through ``Â``: ``Â_iu @ user_x``, (I, d)."""
    a_ui, a_iu = bipartite_blocks(adj, n_users)
    return _sparse_mm(a_iu, a_ui, user_x)


def item_feature_propagation(
    adj: torch.Tensor, item_feat: torch.Tensor, n_users: int, n_hops: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality-aware user and item features ``F_u^m, F_i^m`` from item features ``f^m``.

    One hop is a round trip item -> user -> item over ``Â``:
    ``u_h = Â_ui i_{h-1}``, ``i_h = Â_iu u_h`` with ``i_0 = f^m``. The outputs are layer means:
    ``F_u = mean(u_1..u_H)`` and ``F_i = mean(i_0..i_H)`` (the item keeps its own feature,
    so items without training interactions still carry their content). Columns propagate
    independently, so several modalities can go through at once, stacked along ``d``.

    Args:
        adj: (U+I, U+I) normalised CSR adjacency.
        item_feat: (I, d) reduced item features ``f^m``.
        n_users: U.
        n_hops: H >= 1.

    Returns:
        ``(F_u (U, d), F_i (I, d))``.
    """
    if n_hops < 1:
        raise ValueError(f"n_hops (feat_hops) must be >= 1, got {n_hops}")
    a_ui, a_iu = bipartite_blocks(adj, n_users)
    item_layer = item_feat
    users_total = item_feat.new_zeros(n_users, item_feat.shape[1])
    items_total = item_feat
    for _ in range(n_hops):
        user_layer = _sparse_mm(a_ui, a_iu, item_layer)
        item_layer = _sparse_mm(a_iu, a_ui, user_layer)
        users_total = users_total + user_layer
        items_total = items_total + item_layer
    return users_total / n_hops, items_total / (n_hops + 1)
