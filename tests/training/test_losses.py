"""PromptMM losses: hand-computed values, numerical stability, and the direction of KD steps."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    bpr_loss,
    info_nce_loss,
    l2_reg,
    list_kd_loss,
    pair_kd_loss,
    sce_loss,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_bpr_by_hand() -> None:
    # rows: sigmoid(2 - 0) and sigmoid(0 - 0)
    # -log sigmoid(2) = log(1 + e^-2) = 0.126928; -log sigmoid(0) = log 2 = 0.693147
    loss = bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2)) + LN2) / 2, rel=1e-6)
    assert loss.item() == pytest.approx(0.4100375, rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_pair_kd_by_hand(tau: float) -> None:
    # teacher margin tau*ln 3 -> p = sigmoid(ln 3) = 3/4; student margin 0 -> q = 1/2.
    # KL = 3/4 ln(3/4 / 1/2) + 1/4 ln(1/4 / 1/2) = 0.75 ln 1.5 - 0.25 ln 2 = 0.130812
    # second row: equal margins -> 0. Mean over the batch: 0.065406.
    expected = (0.75 * math.log(1.5) - 0.25 * LN2) / 2
    loss = pair_kd_loss(torch.tensor([tau * LN3, 1.0]), torch.tensor([0.0, 1.0]), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.065406, rel=1e-4)


def test_list_kd_by_hand_disentangled_and_plain() -> None:
    # teacher softmax([ln2, 0, 0]) = [1/2, 1/4, 1/4]: b^T = [1/2, 1/2], q^T = [1/2, 1/2]
    # student softmax([0, 0, ln2]) = [1/4, 1/4, 1/2]: b^S = [1/4, 3/4], q^S = [1/3, 2/3]
    # KL(b) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 (ln 2 + ln 2/3) = 0.143841
    # KL(q) = 1/2 ln(1/2 / 1/3) + 1/2 ln(1/2 / 2/3) = 1/2 (ln 3/2 + ln 3/4) = 0.058892
    # disentangled = KL(b) + (1 - 1/2) KL(q) = 0.173287
    # plain KL([1/2,1/4,1/4] || [1/4,1/4,1/2]) = 1/2 ln 2 + 0 + 1/4 ln 1/2 = 1/4 ln 2 = 0.173287
    teacher = torch.tensor([[LN2, 0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0, LN2]])
    kl_b = 0.5 * (LN2 + math.log(2 / 3))
    kl_q = 0.5 * (math.log(1.5) + math.log(0.75))
    assert list_kd_loss(teacher, student, 1.0).item() == pytest.approx(kl_b + 0.5 * kl_q, rel=1e-6)
    plain = list_kd_loss(teacher, student, 1.0, disentangle=False).item()
    assert plain == pytest.approx(0.25 * LN2, rel=1e-6)
    # temperature divides both sides: logits x2 with tau 2 give the same value
    assert list_kd_loss(2 * teacher, 2 * student, 2.0).item() == pytest.approx(
        kl_b + 0.5 * kl_q, rel=1e-6
    )


def test_disentangled_value_equals_plain_kl_but_teacher_gradient_differs() -> None:
    # Eq. 9: KL(list) = KL(b) + (1 - b+^T) KL(q) exactly, so with the paper's weight the
    # value (and the student's gradient) equal the plain KL; only the teacher-side gradient
    # differs because the weight (1 - b+^T) is detached.
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 5, generator=gen, requires_grad=True)
    student = torch.randn(6, 5, generator=gen, requires_grad=True)
    dis = list_kd_loss(teacher, student, 0.7)
    plain = list_kd_loss(teacher, student, 0.7, disentangle=False)
    torch.testing.assert_close(dis, plain)
    g_dis = torch.autograd.grad(dis, [teacher, student])
    g_plain = torch.autograd.grad(plain, [teacher, student])
    torch.testing.assert_close(g_dis[1], g_plain[1])
    assert not torch.allclose(g_dis[0], g_plain[0])


def test_sce_by_hand() -> None:
    # cosines: row0 0 (orthogonal), row1 1 (parallel), row2 1/2 ([1,0] vs [1,sqrt3]/2)
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, math.sqrt(3.0)]])
    # gamma 2: (1^2 + 0^2 + 0.5^2) / 3 = 0.416667; gamma 1: (1 + 0 + 0.5) / 3 = 0.5
    assert sce_loss(student, target, 2.0).item() == pytest.approx(1.25 / 3, rel=1e-6)
    assert sce_loss(student, target, 1.0).item() == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        sce_loss(student, target, 0.5)


def test_info_nce_by_hand() -> None:
    # rows normalised: a = [[1,0],[0,1]], b = [[1,0],[1,1]/sqrt2]; tau 0.5 -> logits 2 * cos
    # row 0: logits [2, sqrt2], target 0; row 1: logits [0, sqrt2], target 1
    a = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [5.0, 5.0]])
    r2 = math.sqrt(2.0)
    row0 = -2.0 + math.log(math.exp(2.0) + math.exp(r2))
    row1 = -r2 + math.log(1.0 + math.exp(r2))
    assert info_nce_loss(a, b, 0.5).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="tau"):
        info_nce_loss(a, b, 0.0)
    with pytest.raises(ValueError, match="same 2-D shape"):
        info_nce_loss(a, b[:1], 0.5)


def test_info_nce_step_pulls_matching_rows_together() -> None:
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(16, 8, generator=gen, requires_grad=True)
    b = torch.randn(16, 8, generator=gen)
    before = info_nce_loss(a, b, 0.2)
    cos_before = torch.nn.functional.cosine_similarity(a, b).mean().item()
    _sgd_step([a], before, lr=0.5)
    assert info_nce_loss(a, b, 0.2) < before
    assert torch.nn.functional.cosine_similarity(a, b).mean().item() > cos_before


def test_l2_reg_by_hand() -> None:
    # 0.5 * (|[1,2]|^2 + |[3,0]|^2 + |[0,1]|^2) / B=2 = 0.5 * (5 + 9 + 1) / 2 = 3.75
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert l2_reg(a, b).item() == pytest.approx(3.75)
    with pytest.raises(ValueError, match="batch"):
        l2_reg(a, torch.zeros(3, 2))


def test_large_logits_give_finite_values_and_gradients() -> None:
    big = torch.tensor([1e4, -1e4, 3e4], requires_grad=True)
    other = torch.tensor([-1e4, 1e4, 3e4], requires_grad=True)
    pair = pair_kd_loss(big, other, 0.5)
    logits_t = torch.tensor([[1e4, -1e4, 0.0], [-5e4, 5e4, 5e4]], requires_grad=True)
    logits_s = torch.tensor([[-1e4, 1e4, 0.0], [5e4, -5e4, 0.0]], requires_grad=True)
    losses = [
        bpr_loss(big, other),
        pair,
        list_kd_loss(logits_t, logits_s, 0.1),
        list_kd_loss(logits_t, logits_s, 0.1, disentangle=False),
        sce_loss(torch.full((2, 3), 1e-30), torch.full((2, 3), 1e30), 2.0),
    ]
    for loss in losses:
        assert torch.isfinite(loss)
    torch.stack(losses[:4]).sum().backward()
    for t in (big, other, logits_t, logits_s):
        assert bool(torch.isfinite(t.grad).all())
    # teacher p = 1, student q ~ e^-40000 on row 0: KL ~ 2e4 / 0.5 = 4e4, still finite
    assert pair.item() > 1e4


def _sgd_step(params: list[torch.Tensor], loss: torch.Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * g


def test_pair_kd_step_pulls_student_margin_towards_teacher() -> None:
    gen = torch.Generator().manual_seed(0)
    u, pos, neg = (torch.randn(64, 8, generator=gen, requires_grad=True) for _ in range(3))

    def margin() -> torch.Tensor:
        return (u * pos).sum(1) - (u * neg).sum(1)

    teacher = torch.randn(64, generator=gen) * 4  # fixed teacher margins
    before = margin().detach()
    loss_before = pair_kd_loss(teacher, margin(), 2.0)
    _sgd_step([u, pos, neg], loss_before, lr=0.5)
    after = margin().detach()
    assert pair_kd_loss(teacher, after, 2.0) < loss_before
    larger = teacher > before
    assert bool((after[larger] > before[larger]).all())  # raised where the teacher is larger
    assert bool((after[~larger] < before[~larger]).all())  # lowered where it is smaller


@pytest.mark.parametrize("disentangle", [True, False])
def test_list_kd_step_lowers_divergence(disentangle: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    users = torch.randn(32, 8, generator=gen, requires_grad=True)
    items = torch.randn(32, 6, 8, generator=gen, requires_grad=True)
    teacher = torch.randn(32, 6, generator=gen) * 3

    def loss() -> torch.Tensor:
        student = torch.einsum("bd,bkd->bk", users, items)
        return list_kd_loss(teacher, student, 0.5, disentangle)

    before = loss()
    _sgd_step([users, items], before, lr=0.05)
    assert loss() < before


def test_sce_step_lowers_divergence() -> None:
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(50, 8, generator=gen, requires_grad=True)
    target = torch.randn(50, 8, generator=gen)
    before = sce_loss(student, target, 2.0)
    _sgd_step([student], before, lr=1.0)
    assert sce_loss(student, target, 2.0) < before


def test_teacher_side_is_not_detached() -> None:
    # stage 2 tunes the prompt through the teacher's outputs: gradients must reach them
    teacher = torch.randn(4, requires_grad=True)
    pair_kd_loss(teacher, torch.randn(4), 1.0).backward()
    assert teacher.grad is not None and bool((teacher.grad != 0).any())


def test_shape_and_temperature_errors() -> None:
    with pytest.raises(ValueError, match="same 1-D shape"):
        bpr_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="tau"):
        pair_kd_loss(torch.zeros(3), torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="K >= 2"):
        list_kd_loss(torch.zeros(3, 1), torch.zeros(3, 1), 1.0)
