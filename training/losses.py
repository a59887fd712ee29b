"""Stage-1/stage-2 losses of PromptMM (method.md section 5, paper Eq. 5-13).

Pure functions; every one returns a scalar tensor averaged over the batch and works in log
space (``logsigmoid`` / ``log_softmax`` / ``logsumexp``) so large logits give no NaN or inf.

Gradient flow: the teacher-side inputs are **not** detached here. In stage 2 the teacher's
parameters are frozen but the prompt module still trains through the teacher's outputs
(method.md section 3); a caller that wants a fixed target passes ``teacher.detach()``.
The only exception is the re-weighting factor ``(1 - b+^T)`` of the disentangled list KD,
which is a weight, not a target, and is always detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bpr_loss", "info_nce_loss", "l2_reg", "list_kd_loss", "pair_kd_loss", "sce_loss"]


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")


def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor, ndim: int) -> None:
    if a.shape != b.shape or a.ndim != ndim:
        raise ValueError(
            f"{name}: expected two tensors of the same {ndim}-D shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking, ``-mean log sigmoid(pos - neg)`` (Eq. 13 without the L2 term).

    Args:
        pos: (B,) scores of the positives.
        neg: (B,) scores of the negatives.
    """
    _same_shape("bpr_loss", pos, neg, 1)
    return -F.logsigmoid(pos - neg).mean()


def pair_kd_loss(
    delta_teacher: torch.Tensor, delta_student: torch.Tensor, tau: float
) -> torch.Tensor:
    """Pair-wise ranking KD (Eq. 5): KL between Bernoulli "i+ ranks above i-" distributions.

    With ``p = sigmoid(Δ^T/τ)`` and ``q = sigmoid(Δ^S/τ)``:
    ``mean_B [ p log(p/q) + (1-p) log((1-p)/(1-q)) ]``.
    Its gradient w.r.t. ``Δ^S`` is ``(q - p)/τ``: a descent step moves the student's margin
    towards the teacher's (up where the teacher's is larger, down where it is smaller).

    Args:
        delta_teacher: (B,) teacher margins ``<e_u, e_i+> - <e_u, e_i->`` (not detached here).
        delta_student: (B,) student margins.
        tau: temperature > 0.
    """
    _same_shape("pair_kd_loss", delta_teacher, delta_student, 1)
    _check_tau(tau)
    t = delta_teacher / tau
    s = delta_student / tau
    log_p, log_not_p = F.logsigmoid(t), F.logsigmoid(-t)
    log_q, log_not_q = F.logsigmoid(s), F.logsigmoid(-s)
    kl = log_p.exp() * (log_p - log_q) + log_not_p.exp() * (log_not_p - log_not_q)
    return kl.mean()


def _binary_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log b+, log b-)`` of Eq. 6 for (B, K) logits whose column 0 is the positive."""
    log_total = torch.logsumexp(logits, dim=1)
    log_pos = logits[:, 0] - log_total
    log_neg = torch.logsumexp(logits[:, 1:], dim=1) - log_total
    return log_pos, log_neg


def list_kd_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    tau: float,
    disentangle: bool = True,
) -> torch.Tensor:
    """List-wise ranking KD for one modality (Eq. 6-10).

    Column 0 of each row is the positive, columns ``1..K-1`` the sampled negatives. Both
    sides are divided by ``τ``. Disentangled (the paper's form):
    ``KL(b^T‖b^S) + (1 - b+^T) · KL(q^T‖q^S)`` with ``b = [softmax_1, Σ_{k≥2} softmax_k]``
    (Eq. 6) and ``q = softmax`` over the negatives only (Eq. 7); the weight ``(1 - b+^T)`` is
    detached. Plain (``disentangle=False``, the "w/o-disentangle" ablation):
    ``KL(softmax(y^T) ‖ softmax(y^S))`` over the whole K-list. Mean over rows.

    Args:
        teacher_logits: (B, K) teacher scores, e.g. ``<F_u^m, F_k^m>``.
        student_logits: (B, K) student scores ``<e_u^S, e_k^S>``.
        tau: temperature > 0.
        disentangle: the paper's disentangled, re-weighted form (default) or plain KL.
    """
    _same_shape("list_kd_loss", teacher_logits, student_logits, 2)
    _check_tau(tau)
    if teacher_logits.shape[1] < 2:
        raise ValueError(
            "list_kd_loss needs K >= 2 columns (1 positive + negatives), "
            f"got {teacher_logits.shape[1]}"
        )
    t = teacher_logits / tau
    s = student_logits / tau
    if not disentangle:
        log_t = F.log_softmax(t, dim=1)
        log_s = F.log_softmax(s, dim=1)
        return (log_t.exp() * (log_t - log_s)).sum(dim=1).mean()
    t_pos, t_neg = _binary_log_probs(t)
    s_pos, s_neg = _binary_log_probs(s)
    kl_b = t_pos.exp() * (t_pos - s_pos) + t_neg.exp() * (t_neg - s_neg)
    log_qt = F.log_softmax(t[:, 1:], dim=1)
    log_qs = F.log_softmax(s[:, 1:], dim=1)
    kl_q = (log_qt.exp() * (log_qt - log_qs)).sum(dim=1)
    weight = t_neg.exp().detach()  # 1 - b+^T, computed as b-^T (no cancellation)
    return (kl_b + weight * kl_q).mean()


def sce_loss(student: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Scaled cosine error (Eq. 11): ``mean_N (1 - cos(student_n, target_n))^gamma``.

    A zero row has cosine 0 with anything (error 1). Sum over modalities, and over users
    and items, is the caller's (call it once per (side, modality) or on stacked rows).

    Args:
        student: (N, d) student embeddings.
        target: (N, d) teacher features ``F^m`` (not detached here).
        gamma: exponent >= 1.
    """
    _same_shape("sce_loss", student, target, 2)
    if not gamma >= 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    cos = F.cosine_similarity(student, target, dim=1, eps=1e-8)
    return (1.0 - cos).clamp(min=0.0).pow(gamma).mean()


def info_nce_loss(view_a: torch.Tensor, view_b: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE between two views of the same rows (SimGCL / SGL's contrastive loss).

    Rows are L2-normalised; row ``n`` of ``view_a`` must pick row ``n`` of ``view_b`` among
    all rows of ``view_b``: ``mean_n -log softmax_m(<a_n, b_m> / τ)[n]``.

    Args:
        view_a: (N, d) first view.
        view_b: (N, d) second view, the same rows in the same order.
        tau: temperature > 0.
    """
    _same_shape("info_nce_loss", view_a, view_b, 2)
    _check_tau(tau)
    a = F.normalize(view_a, dim=1)
    b = F.normalize(view_b, dim=1)
    logits = a @ b.T / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """L2 penalty of a batch's ego embeddings, normalised like LightGCN's reference.

    ``0.5 * Σ_t ‖t‖_F² / B`` where ``B`` is the first dimension shared by all tensors
    (e.g. the ego rows of the batch's users, positives and negatives, each (B, d)).
    Multiply by the weight-decay coefficient in the caller.
    """
    if not tensors:
        raise ValueError("l2_reg needs at least one tensor")
    batch = tensors[0].shape[0]
    if batch == 0 or any(t.shape[0] != batch for t in tensors):
        raise ValueError(
            "l2_reg: all tensors must share a non-zero first (batch) dimension, got "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return 0.5 * torch.stack([t.pow(2).sum() for t in tensors]).sum() / batch
