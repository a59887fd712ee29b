"""Soft prompt module P (paper Eq. 3-4, method.md section 3).

Hard tokens ``T_i`` come from the item features: each modality is reduced to ``d`` dims by
PCA (:func:`pca_tokens`), scaled to unit RMS so no modality dominates the average, and the
modalities are averaged. ``P`` is a small feed-forward network on the tokens,
``p = W2 tanh(W1 T + b1) + b2`` (the prefix-tuning re-parameterisation), and a learned linear
map per modality turns ``p`` (I, d) into ``p^m`` (I, d_m), scaled by the prompt rate ``λ1``.
The prompt enters the teacher's reduction layer only, which is item-side (Eq. 4), so no user
prompt is built.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["PromptModule", "pca_tokens"]


def _pca(x: np.ndarray, dim: int) -> np.ndarray:
    """(I, dim) projection of centred ``x`` (I, d_m) on its top principal axes.

    Axis signs are fixed (largest-magnitude loading positive) so the result is
    deterministic; missing axes (``min(I, d_m) < dim``) are zero columns.
    """
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[: min(dim, vt.shape[0])]
    signs = np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])
    axes = axes * signs[:, None]
    out = np.zeros((x.shape[0], dim), dtype=np.float64)
    out[:, : axes.shape[0]] = centred @ axes.T
    return out


def pca_tokens(features: Mapping[str, np.ndarray], dim: int) -> torch.Tensor:
    """Hard item tokens ``T = mean_m rms_normalise(PCA_d(X^m))`` (Eq. 3's argument).

    Args:
        features: modality -> (I, d_m) item features (all with the same I).
        dim: d, the embedding size.

    Returns:
        float32 tensor (I, d) on the CPU.
    """
    if not features:
        raise ValueError("pca_tokens needs at least one modality; use rate 0 for ID-only data")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    n_items = {name: np.shape(x)[0] for name, x in features.items()}
    if len(set(n_items.values())) != 1 or any(np.ndim(x) != 2 for x in features.values()):
        raise ValueError(f"features must be 2-D arrays with the same number of rows, got {n_items}")
    total = np.zeros((next(iter(n_items.values())), dim), dtype=np.float64)
    for name in sorted(features):
        x = np.asarray(features[name])
        if not np.isfinite(x).all():
            raise ValueError(f"features[{name!r}] contains NaN or inf")
        projected = _pca(x, dim)
        rms = float(np.sqrt(np.mean(projected**2)))
        total += projected / rms if rms > 0 else projected
    return torch.from_numpy((total / len(features)).astype(np.float32))


class PromptModule(nn.Module):
    """Produces the modality-specific prompts ``λ1 · p^m`` added to ``x^m`` in the teacher.

    Args:
        tokens: (I, d) hard tokens (see :func:`pca_tokens`); kept as a buffer (saved with
            the module's state).
        dim: d.
        modality_dims: modality -> d_m.
        rate: ``λ1`` >= 0; ``0`` disables the prompt (the "w/o-Prompt" ablation):
            :meth:`forward` returns an empty dict and the module has no effect.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        dim: int,
        modality_dims: Mapping[str, int],
        rate: float,
    ) -> None:
        super().__init__()
        if tokens.ndim != 2 or tokens.shape[1] != dim:
            raise ValueError(f"tokens must be (n_items, {dim}), got {tuple(tokens.shape)}")
        if rate < 0:
            raise ValueError(f"prompt rate (lambda1) must be >= 0, got {rate}")
        if any(d_m < 1 for d_m in modality_dims.values()):
            raise ValueError(f"modality dims must be >= 1, got {dict(modality_dims)}")
        self.rate = float(rate)
        self.register_buffer("tokens", tokens.detach().to(torch.float32).clone())
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, dim))
        self.to_modality = nn.ModuleDict(
            {name: nn.Linear(dim, d_m, bias=False) for name, d_m in modality_dims.items()}
        )

    @property
    def enabled(self) -> bool:
        """False for the w/o-Prompt ablation (rate 0)."""
        return self.rate > 0 and len(self.to_modality) > 0

    def forward(self) -> dict[str, torch.Tensor]:
        """``{m: λ1 · p^m}``, each (I, d_m); ``{}`` when disabled."""
        if not self.enabled:
            return {}
        p = self.net(self.tokens)
        return {name: self.rate * lin(p) for name, lin in self.to_modality.items()}
