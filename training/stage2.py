"""Stage 2: the LightGCN student distilled from the frozen teacher (method.md 4-5).

Per batch of (u, i+, i-) triples, with one graph propagation of the student:
L = BPR + l2 + kd.pair_weight PairKD + kd.list_weight ListKD + kd.emb_weight EmbKD (Eq. 12).
The teacher's parameters are frozen and it runs in eval mode (``kd.teacher_eval_mode``).
When the prompt module is tuned (``kd.tune_prompt`` and ``prompt.rate`` > 0) the KD targets
are recomputed through the teacher each step so their gradients reach the prompt, and one
AdamW updates student + prompt (``kd.prompt_every`` > 1: recomputed every that many steps and
reused, detached, in between); the teacher's ID part (which no prompt changes) is still
propagated only once. Otherwise the targets do not change during stage 2 and are computed
once. With every KD weight 0 (or no teacher) this is LightGCN trained alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from training.config import Config
from training.context import TrainingContext
from training.graph import layer_mean, propagate_layers
from training.loop import FitResult, State, copy_state, fit, optimise_epoch, total_loss
from training.losses import bpr_loss, l2_reg, list_kd_loss, pair_kd_loss, sce_loss
from training.models import Student, TeacherOutput
from training.runs import RunDir
from training.sampling import EpochSample
from training.stage1 import TeacherBundle

logger = logging.getLogger(__name__)

STAGE = "student"


class KDTargets:
    """The frozen teacher's outputs for distillation, cached when nothing can change them."""

    def __init__(self, bundle: TeacherBundle, ctx: TrainingContext, config: Config) -> None:
        self.bundle, self.ctx = bundle, ctx
        for param in bundle.teacher.parameters():
            param.requires_grad_(False)
        bundle.teacher.train(not config.kd.teacher_eval_mode)
        if config.kd.prompt_every < 1:
            raise ValueError(f"kd.prompt_every must be >= 1, got {config.kd.prompt_every}")
        self.tune_prompt = bundle.prompt is not None and config.kd.tune_prompt
        self.every, self._calls = config.kd.prompt_every, 0
        self._fixed: TeacherOutput | None = None
        self._last: TeacherOutput | None = None
        with torch.no_grad():
            self._ids = bundle.teacher.propagate_ids(ctx.adj)
            if not self.tune_prompt:
                self._fixed = bundle.forward(ctx, self._ids)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters stage 2 trains besides the student's (the prompt, when tuned)."""
        if self.tune_prompt and self.bundle.prompt is not None:
            return list(self.bundle.prompt.parameters())
        return []

    def __call__(self) -> TeacherOutput:
        """The targets for this step (fresh, with gradient into the prompt, when due)."""
        if self._fixed is not None:
            return self._fixed
        due = self._calls % self.every == 0 or self._last is None
        self._calls += 1
        if not due:
            return self._last  # type: ignore[return-value]
        out = self.bundle.forward(self.ctx, self._ids)
        if self.every > 1:
            self._last = TeacherOutput(
                out.user_emb.detach(),
                out.item_emb.detach(),
                {m: t.detach() for m, t in out.modal_users.items()},
                {m: t.detach() for m, t in out.modal_items.items()},
            )
        return out


@dataclass(frozen=True)
class StudentResult:
    """The student at its best validation epoch, with validation and test metrics.

    ``user_emb``/``item_emb`` are the final embeddings, the layer mean of the LightGCN
    layers that ``user_ego`` (U, d) and ``item_layers`` (L, I, d; item layers ``0..L-1``)
    are taken from (what the bundle needs to fold a user's new interactions in).
    """

    student: Student
    fit: FitResult
    user_emb: torch.Tensor
    item_emb: torch.Tensor
    user_ego: torch.Tensor
    item_layers: torch.Tensor
    valid: dict[str, float]
    test: dict[str, float]


def _kd_active(config: Config) -> bool:
    kd = config.kd
    return kd.pair_weight > 0 or kd.list_weight > 0 or kd.emb_weight > 0


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _student_loss(
    ctx: TrainingContext,
    student: Student,
    targets: KDTargets | None,
    sample: EpochSample,
    step: int,
    config: Config,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    users, pos, neg = sample.batch(step)
    kd = config.kd
    user_emb, item_emb = student(ctx.adj)
    u, p, n = user_emb[users], item_emb[pos], item_emb[neg]
    delta_s = _dot(u, p) - _dot(u, n)
    ego_users, ego_items = student.ego_parameters()
    parts = {
        "bpr": bpr_loss(_dot(u, p), _dot(u, n)),
        "l2": config.student.l2_weight * l2_reg(ego_users[users], ego_items[pos], ego_items[neg]),
    }
    if targets is None:
        return total_loss(parts.values()), parts
    teacher = targets()
    if kd.pair_weight > 0:
        tu = teacher.user_emb[users]
        delta_t = _dot(tu, teacher.item_emb[pos]) - _dot(tu, teacher.item_emb[neg])
        parts["pair_kd"] = kd.pair_weight * pair_kd_loss(delta_t, delta_s, kd.tau)
    if kd.list_weight > 0:
        items = torch.cat([pos[:, None], sample.batch_list_negatives(step)], dim=1)
        student_logits = _dot(u[:, None, :], item_emb[items])
        parts["list_kd"] = kd.list_weight * total_loss(
            list_kd_loss(
                _dot(teacher.modal_users[m][users][:, None, :], teacher.modal_items[m][items]),
                student_logits,
                kd.list_tau,
                kd.disentangle,
            )
            for m in teacher.modal_items
        )
    if kd.emb_weight > 0:
        student_all = torch.cat([user_emb, item_emb])
        parts["emb_kd"] = kd.emb_weight * total_loss(
            sce_loss(
                student_all,
                torch.cat([teacher.modal_users[m], teacher.modal_items[m]]),
                kd.sce_gamma,
            )
            for m in teacher.modal_items
        )
    return total_loss(parts.values()), parts


def final_layers(
    student: Student, adj: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(user_emb, item_emb, user_ego, item_layers)`` of ``student`` (see StudentResult).

    One propagation in eval mode without gradient; the final embeddings are the mean of the
    very layers returned, so an export of both is consistent.
    """
    student.eval()
    n_users = student.n_users
    with torch.no_grad():
        layers = propagate_layers(adj, torch.cat(student.ego_parameters()), student.n_layers)
        final = layer_mean(layers)
        item_layers = torch.stack(layers)[:-1, n_users:]
    return final[:n_users], final[n_users:], layers[0][:n_users], item_layers


def train_student(
    ctx: TrainingContext,
    config: Config,
    teacher: TeacherBundle | None,
    run: RunDir | None = None,
    warm_start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> StudentResult:
    """Train the student (distilled from ``teacher`` when given and KD is on).

    ``warm_start`` = (user ego (U, d), item ego (I, d)) starts the student from those tables
    (an exported student's, to fine-tune it on more interactions) instead of Xavier.
    """
    cfg, train = config.student, config.stage2
    student = Student(ctx.dataset.n_users, ctx.dataset.n_items, cfg.dim, cfg.n_layers)
    student = student.to(ctx.device)
    if warm_start is not None and cfg.init_from_teacher:
        raise ValueError("a warm start and student.init_from_teacher = true exclude each other")
    if warm_start is not None:
        student.load_ego(*warm_start)
    if cfg.init_from_teacher:
        if teacher is None:
            raise ValueError(
                "student.init_from_teacher = true needs a teacher (stage 1 or --teacher)"
            )
        student.load_ego(*teacher.teacher.ego_parameters())
    targets = (
        KDTargets(teacher, ctx, config) if teacher is not None and _kd_active(config) else None
    )
    params = list(student.parameters()) + (targets.parameters() if targets else [])
    sync = ctx.share_parameters(params)
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    steps = ctx.steps_per_epoch(train.batch_size)
    list_negatives = config.kd.list_size - 1 if targets and config.kd.list_weight > 0 else 0
    if targets and config.kd.list_weight > 0 and list_negatives < 1:
        raise ValueError(
            "kd.list_size must be >= 2 (the positive and at least one negative) when "
            f"kd.list_weight > 0, got {config.kd.list_size}"
        )

    def train_epoch(epoch: int) -> dict[str, float]:
        student.train()
        sample = ctx.sampler.epoch(steps, train.batch_size, ctx.generator, list_negatives)

        def step(j: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return _student_loss(ctx, student, targets, sample, j, config)

        return optimise_epoch(steps, step, optimizer, f"{STAGE} epoch {epoch}", sync)

    def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
        student.eval()
        with torch.no_grad():
            return student(ctx.adj)

    def snapshot() -> State:
        state = {"student": copy_state(student)}
        if targets is not None and targets.tune_prompt and teacher and teacher.prompt:
            state["prompt"] = copy_state(teacher.prompt)
        return state

    result = fit(
        STAGE,
        train_epoch,
        lambda: ctx.dist.from_main(lambda: ctx.validate(*embeddings())),
        snapshot,
        train,
        config.eval.select_metric,
        run,
        config.run.progress and ctx.dist.is_main,
        steps * train.batch_size * ctx.dist.world_size,
    )
    student.load_state_dict(result.best_state["student"])
    if "prompt" in result.best_state and teacher is not None and teacher.prompt is not None:
        teacher.prompt.load_state_dict(result.best_state["prompt"])
    user_emb, item_emb, user_ego, item_layers = final_layers(student, ctx.adj)
    return StudentResult(
        student,
        result,
        user_emb,
        item_emb,
        user_ego,
        item_layers,
        result.best_valid,
        ctx.test(user_emb, item_emb) if ctx.dist.is_main else {},
    )
