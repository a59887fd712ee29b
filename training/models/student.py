"""LightGCN student S (method.md section 4): the only model that is exported."""

from __future__ import annotations

import torch
from torch import nn

from training.graph import propagate

__all__ = ["Student"]


class Student(nn.Module):
    """LightGCN over the normalised adjacency; ``n_layers = 0`` is MF-BPR.

    Ego embeddings are Xavier-uniform initialised; :meth:`load_ego` replaces them (e.g. with
    the teacher's, the "init from teacher" switch).

    Args:
        n_users: U.
        n_items: I.
        dim: d.
        n_layers: L >= 0 propagation layers (layer mean).
    """

    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int) -> None:
        super().__init__()
        if min(n_users, n_items, dim) < 1 or n_layers < 0:
            raise ValueError(
                "Student needs n_users, n_items, dim >= 1 and n_layers >= 0, got "
                f"{n_users}, {n_items}, {dim}, {n_layers}"
            )
        self.n_users, self.n_items, self.dim, self.n_layers = n_users, n_items, dim, n_layers
        self.user_ego = nn.Parameter(torch.empty(n_users, dim))
        self.item_ego = nn.Parameter(torch.empty(n_items, dim))
        nn.init.xavier_uniform_(self.user_ego)
        nn.init.xavier_uniform_(self.item_ego)

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings.

        Args:
            adj: (U+I, U+I) normalised adjacency on the module's device.

        Returns:
            ``(user_emb (U, d), item_emb (I, d))``.
        """
        ego = torch.cat([self.user_ego, self.item_ego], dim=0)
        out = propagate(adj, ego, self.n_layers)
        return out[: self.n_users], out[self.n_users :]

    def ego_parameters(self) -> tuple[nn.Parameter, nn.Parameter]:
        """The ego tables ``(users (U, d), items (I, d))`` (for the L2 term on batch rows)."""
        return self.user_ego, self.item_ego

    def load_ego(self, user: torch.Tensor, item: torch.Tensor) -> None:
        """Copy ``user`` (U, d) and ``item`` (I, d) into the ego tables (no gradient link)."""
        if tuple(user.shape) != tuple(self.user_ego.shape) or tuple(item.shape) != tuple(
            self.item_ego.shape
        ):
            raise ValueError(
                f"load_ego expects user {tuple(self.user_ego.shape)} and item "
                f"{tuple(self.item_ego.shape)}, got {tuple(user.shape)} and {tuple(item.shape)}"
            )
        with torch.no_grad():
            self.user_ego.copy_(user)
            self.item_ego.copy_(item)
