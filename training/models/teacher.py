"""Multi-modal teacher T (paper Eq. 1 and 4, method.md section 2).

- ID embeddings ``E_u, E_i`` (Xavier) propagated ``L`` layers over ``Â``, layer mean: ``Ē``.
- Per modality a reduction layer ``f^m = dropout((x^m + λ1 p^m) W^m + b^m)`` (I, d).
  The raw features ``x^m`` must be standardised per column by the caller (the pipeline)
  before they reach the teacher; the prompts arrive already multiplied by ``λ1``.
- Modality-aware features ``F_u^m, F_i^m`` by propagating ``f^m`` over ``Â``
  (:func:`training.graph.item_feature_propagation`, ``feat_hops`` round trips).
- Scores use ``E_u^T = Ē_u + alpha Σ_m norm(F_u^m)``, ``E_i^T = Ē_i + alpha Σ_m norm(F_i^m)`` where
  ``norm`` is row-wise L2 normalisation.
- Optional (a departure from the paper, off unless an item graph is given; config
  ``teacher.item_knn_k``): FREEDOM's frozen item-item content graph ``Ŝ``
  (:func:`training.graph.item_knn_graph`). The ID item output becomes
  ``Ē_i + w Ŝ^h E_i`` (the ego item embeddings propagated ``h`` hops over ``Ŝ``, scaled by
  ``w``), so an item without training interactions gets the embeddings of its content
  neighbours. It is part of the ID part (:meth:`Teacher.propagate_ids`): no prompt changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from training.graph import (
    csr_tensor,
    item_feature_propagation,
    propagate,
    propagate_perturbed,
    spmm,
)

__all__ = ["Teacher", "TeacherOutput"]


class TeacherOutput(NamedTuple):
    """What the teacher produces (shapes for U users, I items, d dims)."""

    user_emb: torch.Tensor  # (U, d) E_u^T, used for scores
    item_emb: torch.Tensor  # (I, d) E_i^T
    modal_users: dict[str, torch.Tensor]  # m -> (U, d) F_u^m
    modal_items: dict[str, torch.Tensor]  # m -> (I, d) F_i^m


class Teacher(nn.Module):
    """Graph-based multi-modal teacher with prompt-aware reduction layers.

    Args:
        n_users: U.
        n_items: I.
        dim: d.
        n_layers: L >= 0 layers for the ID embeddings.
        modality_dims: modality -> d_m (may be empty: the teacher is then a LightGCN).
        dropout: rate of the reduction layers' dropout, in [0, 1).
        alpha: weight of the modality features in ``E^T``.
        feat_hops: item->user->item round trips for ``F^m`` (>= 1).
        item_graph: optional (I, I) symmetric sparse CSR item-item graph ``Ŝ``
            (:func:`training.graph.item_knn_graph`); ``None``: no item graph (the paper).
            Kept as non-persistent buffers: checkpoints do not carry it, it is rebuilt from
            the features and the config.
        item_graph_hops: ``h >= 1`` hops over ``Ŝ``.
        item_graph_weight: ``w``, the weight of ``Ŝ^h E_i`` in the item output.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        modality_dims: Mapping[str, int],
        dropout: float,
        alpha: float,
        feat_hops: int,
        item_graph: torch.Tensor | None = None,
        item_graph_hops: int = 1,
        item_graph_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if min(n_users, n_items, dim) < 1 or n_layers < 0 or feat_hops < 1:
            raise ValueError(
                "Teacher needs n_users, n_items, dim, feat_hops >= 1 and n_layers >= 0, got "
                f"{n_users}, {n_items}, {dim}, {feat_hops}, {n_layers}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if any(d_m < 1 for d_m in modality_dims.values()):
            raise ValueError(f"modality dims must be >= 1, got {dict(modality_dims)}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.n_layers, self.alpha, self.feat_hops = n_layers, float(alpha), feat_hops
        self.modality_dims = dict(modality_dims)
        self.user_ego = nn.Parameter(torch.empty(n_users, dim))
        self.item_ego = nn.Parameter(torch.empty(n_items, dim))
        nn.init.xavier_uniform_(self.user_ego)
        nn.init.xavier_uniform_(self.item_ego)
        reduce = {m: nn.Linear(d_m, dim) for m, d_m in modality_dims.items()}
        for layer in reduce.values():
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.reduce = nn.ModuleDict(reduce)
        self.dropout = nn.Dropout(dropout)
        self.item_graph_hops, self.item_graph_weight = item_graph_hops, float(item_graph_weight)
        self.has_item_graph = item_graph is not None
        if item_graph is not None:
            if item_graph.layout != torch.sparse_csr or tuple(item_graph.shape) != (
                n_items,
                n_items,
            ):
                raise ValueError(
                    f"item_graph must be a sparse CSR ({n_items}, {n_items}) tensor, got "
                    f"{item_graph.layout} {tuple(item_graph.shape)}"
                )
            if item_graph_hops < 1:
                raise ValueError(f"item_graph_hops must be >= 1, got {item_graph_hops}")
            # plain tensors (a sparse CSR attribute could not be deep-copied)
            self.register_buffer("item_graph_crow", item_graph.crow_indices(), persistent=False)
            self.register_buffer("item_graph_col", item_graph.col_indices(), persistent=False)
            self.register_buffer("item_graph_val", item_graph.values(), persistent=False)

    def item_graph(self) -> torch.Tensor | None:
        """The item-item graph ``Ŝ`` (I, I) on the module's device, or ``None``."""
        if not self.has_item_graph:
            return None
        return csr_tensor(
            self.item_graph_crow,
            self.item_graph_col,
            self.item_graph_val,
            (self.n_items, self.n_items),
        )

    def ego_parameters(self) -> tuple[nn.Parameter, nn.Parameter]:
        """The ID ego tables ``(users (U, d), items (I, d))``."""
        return self.user_ego, self.item_ego

    def propagate_ids(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Ē_u (U, d), Ē_i (I, d))``: the ID part, fixed once the teacher is frozen.

        With an item graph, ``Ē_i`` here already includes ``w Ŝ^h E_i``.

        In stage 2 compute it once (under ``torch.no_grad()``) and pass it to :meth:`forward`
        as ``ids`` so only the prompt-dependent modality part is recomputed per step.
        """
        return self._split_ids(
            propagate(adj, torch.cat([self.user_ego, self.item_ego], dim=0), self.n_layers)
        )

    def perturbed_ids(self, adj: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A SimGCL view of :meth:`propagate_ids`: noise of radius ``eps`` added at every
        LightGCN layer (:func:`training.graph.propagate_perturbed`); the item graph term is
        added unperturbed. Two calls give two views for the contrastive loss of stage 1."""
        ego = torch.cat([self.user_ego, self.item_ego], dim=0)
        return self._split_ids(propagate_perturbed(adj, ego, self.n_layers, eps))

    def _split_ids(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked (U+I, d) propagated rows -> ``(users, items)``, items plus ``w Ŝ^h E_i``."""
        user_bar, item_bar = out[: self.n_users], out[self.n_users :]
        graph = self.item_graph()
        if graph is not None:
            hop = self.item_ego
            for _ in range(self.item_graph_hops):
                hop = spmm(graph, hop)
            item_bar = item_bar + self.item_graph_weight * hop
        return user_bar, item_bar

    def _check_inputs(
        self,
        features: Mapping[str, torch.Tensor],
        prompts: Mapping[str, torch.Tensor] | None,
    ) -> None:
        if set(features) != set(self.modality_dims):
            raise ValueError(
                f"features have modalities {sorted(features)}, the teacher was built for "
                f"{sorted(self.modality_dims)}"
            )
        for m, d_m in self.modality_dims.items():
            if tuple(features[m].shape) != (self.n_items, d_m):
                raise ValueError(
                    f"features[{m!r}] must be ({self.n_items}, {d_m}), "
                    f"got {tuple(features[m].shape)}"
                )
        if prompts and set(prompts) != set(self.modality_dims):
            raise ValueError(
                f"prompts have modalities {sorted(prompts)}, expected {sorted(self.modality_dims)}"
                " (or None / {} for no prompt)"
            )

    def forward(
        self,
        adj: torch.Tensor,
        features: Mapping[str, torch.Tensor],
        prompts: Mapping[str, torch.Tensor] | None = None,
        ids: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> TeacherOutput:
        """Teacher embeddings and modality-aware features.

        Args:
            adj: (U+I, U+I) normalised adjacency.
            features: m -> (I, d_m) column-standardised item features, for every modality.
            prompts: m -> (I, d_m) prompts already scaled by ``λ1`` (from
                :class:`~training.models.prompt.PromptModule`); ``None`` or ``{}``: no prompt.
            ids: precomputed :meth:`propagate_ids` output (frozen teacher), else computed.

        Returns:
            :class:`TeacherOutput`.
        """
        self._check_inputs(features, prompts)
        user_bar, item_bar = self.propagate_ids(adj) if ids is None else ids
        modal_users: dict[str, torch.Tensor] = {}
        modal_items: dict[str, torch.Tensor] = {}
        user_emb, item_emb = user_bar, item_bar
        if not self.reduce:
            return TeacherOutput(user_emb, item_emb, modal_users, modal_items)
        reduced = [
            self.dropout(layer(features[m] + prompts[m] if prompts else features[m]))
            for m, layer in self.reduce.items()
        ]
        # one propagation for all modalities, stacked along the columns
        f_u_all, f_i_all = item_feature_propagation(
            adj, torch.cat(reduced, dim=1), self.n_users, self.feat_hops
        )
        for m, f_u, f_i in zip(
            self.reduce,
            torch.split(f_u_all, self.dim, dim=1),
            torch.split(f_i_all, self.dim, dim=1),
            strict=True,
        ):
            modal_users[m], modal_items[m] = f_u, f_i
            user_emb = user_emb + self.alpha * F.normalize(f_u, dim=1)
            item_emb = item_emb + self.alpha * F.normalize(f_i, dim=1)
        return TeacherOutput(user_emb, item_emb, modal_users, modal_items)
