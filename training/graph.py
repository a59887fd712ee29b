"""The normalised user-item graph shared by teacher and student (method.md section 1).

Node order everywhere: users ``0..U-1`` then items ``U..U+I-1``.

The adjacency is the standard LightGCN one, ``Â = D^-1/2 [[0, R], [Rᵀ, 0]] D^-1/2``, built
from the *training* interactions only and stored as a torch sparse CSR tensor (the fastest
layout for ``Â @ X`` on CPU and CUDA). ``Â`` is symmetric, so the backward pass of ``Â @ X``
is ``Â @ grad``: :func:`spmm` uses that instead of letting autograd transpose the matrix.
Item-feature propagation uses the off-diagonal blocks ``Â_ui``/``Â_iu``
(:func:`bipartite_blocks`), so each edge is touched once per direction.

:func:`item_knn_graph` builds the frozen item-item graph of the content features that the
teacher may propagate its item embeddings over (FREEDOM / LATTICE style; a switch, off by
default: ``teacher.item_knn_k``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.weak import WeakTensorKeyDictionary

__all__ = [
    "bipartite_blocks",
    "csr_tensor",
    "item_feature_propagation",
    "item_knn_graph",
    "item_side",
    "layer_mean",
    "normalized_adjacency",
    "propagate",
    "propagate_layers",
    "propagate_perturbed",
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
    return csr_tensor(
        torch.from_numpy(norm.indptr.astype(np.int64)),
        torch.from_numpy(norm.indices.astype(np.int64)),
        torch.from_numpy(norm.data.astype(np.float32)),
        (n_users + n_items, n_users + n_items),
    )


def csr_tensor(
    crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """A float32 sparse CSR tensor (torch's "beta" notice silenced; invariants unchecked, which
    torch 2.11 also announces in a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly.*")
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


def propagate_perturbed(
    adj: torch.Tensor, ego: torch.Tensor, n_layers: int, eps: float
) -> torch.Tensor:
    """SimGCL's perturbed LightGCN view: ``mean(ego, h_1, ..., h_L)`` with
    ``h_l = Â h_{l-1} + eps · sign(Â h_{l-1}) ⊙ normalize(noise)``, ``noise ~ U(0, 1)`` drawn
    per layer from torch's global generator (each row's perturbation has L2 norm ``eps`` and
    keeps the row in its orthant). ``eps`` 0 is :func:`propagate`.

    Args:
        adj: (U+I, U+I) normalised adjacency.
        ego: (U+I, d) stacked user then item ego embeddings.
        n_layers: L >= 0.
        eps: noise radius >= 0.
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    layers = [ego]
    for _ in range(n_layers):
        hidden = spmm(adj, layers[-1])
        noise = torch.nn.functional.normalize(torch.rand_like(hidden), dim=1)
        layers.append(hidden + eps * torch.sign(hidden) * noise)
    return layer_mean(layers)


_BLOCKS: WeakTensorKeyDictionary = WeakTensorKeyDictionary()


def bipartite_blocks(adj: torch.Tensor, n_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The off-diagonal blocks ``(Â_ui (U, I), Â_iu (I, U))`` of the CSR adjacency.

    Slices of ``adj``'s index arrays; ``Â_iu = Â_uiᵀ`` because ``Â`` is symmetric. Built
    once per ``adj`` and kept while ``adj`` lives: building them reads a row offset back
    from the device, which every training step would otherwise wait on.
    """
    if adj.layout != torch.sparse_csr:
        raise ValueError(
            f"adj must be a sparse CSR tensor (normalized_adjacency), got {adj.layout}"
        )
    per_split = _BLOCKS.setdefault(adj, {})
    if n_users not in per_split:
        crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
        n_items = adj.shape[0] - n_users
        split = int(crow[n_users])
        a_ui = csr_tensor(
            crow[: n_users + 1], col[:split] - n_users, val[:split], (n_users, n_items)
        )
        a_iu = csr_tensor(crow[n_users:] - split, col[split:], val[split:], (n_items, n_users))
        per_split[n_users] = (a_ui, a_iu)
    blocks: tuple[torch.Tensor, torch.Tensor] = per_split[n_users]
    return blocks


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


def _knn_edges(x: torch.Tensor, k: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges ``(rows, cols)`` from each item to its ``k`` most cosine-similar others.

    Rows of ``x`` are L2-normalised; the similarity is computed ``chunk_size`` rows at a time
    (memory ``chunk_size x I``), the item itself is excluded. Ties are broken by
    ``torch.topk`` (deterministic for a given device).
    """
    n_items = x.shape[0]
    unit = torch.nn.functional.normalize(x.to(torch.float32), dim=1)
    rows, cols = [], []
    for start in range(0, n_items, chunk_size):
        stop = min(start + chunk_size, n_items)
        sim = unit[start:stop] @ unit.T
        local = torch.arange(stop - start, device=x.device)
        sim[local, local + start] = -float("inf")  # never one's own neighbour
        top = torch.topk(sim, k, dim=1, sorted=True).indices
        rows.append((local + start)[:, None].expand(-1, k).reshape(-1))
        cols.append(top.reshape(-1))
    return torch.cat(rows), torch.cat(cols)


KNN_BLOCK_FLOATS = 1 << 24  # 64 MiB of float32 similarities per block by default


def item_knn_graph(
    features: Mapping[str, torch.Tensor], k: int, chunk_size: int | None = None
) -> torch.Tensor:
    """Frozen item-item kNN graph of the content features, symmetric-normalised.

    Per modality ``m`` (FREEDOM, Zhou et al. 2023; LATTICE): cosine similarity of the item
    feature rows (pass them standardised, as the teacher gets them), each item keeps its
    ``k`` most similar *other* items, the directed kNN edges are made undirected
    (``S^m = max(K^m, K^mᵀ)``, binary), and ``Ŝ^m = D^-1/2 S^m D^-1/2`` with ``D`` the
    degrees of ``S^m``. The modalities are averaged: ``Ŝ = mean_m Ŝ^m``, a symmetric matrix
    (so :func:`spmm` applies) whose spectral radius is at most 1.

    Args:
        features: modality -> (I, d_m) item features, all on one device (CPU or CUDA).
        k: neighbours per item, ``1 <= k < I``.
        chunk_size: items per similarity block (memory ``chunk_size x I`` floats); ``None``:
            as many as fit in :data:`KNN_BLOCK_FLOATS` floats (at least one).

    Returns:
        float32 sparse CSR tensor (I, I) on the features' device.
    """
    if not features:
        raise ValueError("item_knn_graph needs at least one modality")
    n_items = {name: int(x.shape[0]) for name, x in features.items()}
    if len(set(n_items.values())) != 1 or any(x.ndim != 2 for x in features.values()):
        raise ValueError(f"features must be 2-D with the same number of rows, got {n_items}")
    n = next(iter(n_items.values()))
    if not 1 <= k < n:
        raise ValueError(f"k (teacher.item_knn_k) must be in [1, {n - 1}] for {n} items, got {k}")
    if chunk_size is None:
        chunk_size = max(1, KNN_BLOCK_FLOATS // n)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = next(iter(features.values())).device
    keys, values = [], []
    for name in sorted(features):
        rows, cols = _knn_edges(features[name], k, chunk_size)
        # undirected, binary: each pair once per direction (row-major keys, sorted)
        key = torch.unique(torch.cat([rows * n + cols, cols * n + rows]))
        row, col = key // n, key % n
        degree = torch.bincount(row, minlength=n).to(torch.float32)
        inv_sqrt = degree.clamp(min=1.0).rsqrt()
        keys.append(key)
        values.append(inv_sqrt[row] * inv_sqrt[col] / len(features))
    key, inverse = torch.unique(torch.cat(keys), return_inverse=True)  # sorted: CSR order
    value = torch.zeros(key.shape[0], dtype=torch.float32, device=device)
    value.index_add_(0, inverse, torch.cat(values))
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.bincount(key // n, minlength=n), 0)
    return csr_tensor(crow, key % n, value, (n, n))
