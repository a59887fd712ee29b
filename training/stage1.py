"""Stage 1: the multi-modal teacher and the soft prompt, trained jointly (method.md 2-3).

Loss per batch of (u, i+, i-) triples: BPR on the teacher's scores E^T, plus
``teacher.l2_weight`` x L2 of the batch rows of the ID ego tables, plus (optional)
``teacher.modal_bpr_weight`` x the BPR of each modality's (F_u^m, F_i^m), plus (optional,
``teacher.cl_weight``) SimGCL's InfoNCE between two noisy views of the ID part over the
batch's unique users and unique positive items. AdamW over teacher
and prompt; early stopping on validation ``eval.select_metric``; the best teacher + prompt
state is kept in memory and returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from training.config import Config
from training.context import TrainingContext
from training.graph import item_knn_graph
from training.loop import FitResult, State, copy_state, fit, optimise_epoch, total_loss
from training.losses import bpr_loss, info_nce_loss, l2_reg
from training.models import PromptModule, Teacher, TeacherOutput, pca_tokens
from training.runs import RunDir

logger = logging.getLogger(__name__)

STAGE = "teacher"


@dataclass
class TeacherBundle:
    """The teacher and its prompt module (None when ``prompt.rate`` is 0)."""

    teacher: Teacher
    prompt: PromptModule | None

    def forward(
        self, ctx: TrainingContext, ids: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> TeacherOutput:
        """The teacher's output with the current prompts (``ids``: precomputed ID part)."""
        prompts = self.prompt() if self.prompt is not None else None
        return self.teacher(ctx.adj, ctx.features, prompts, ids=ids)

    def state(self) -> State:
        state = {"teacher": copy_state(self.teacher)}
        if self.prompt is not None:
            state["prompt"] = copy_state(self.prompt)
        return state

    def load(self, state: State) -> None:
        self.teacher.load_state_dict(state["teacher"])
        if self.prompt is not None:
            self.prompt.load_state_dict(state["prompt"])

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.teacher.parameters())
        if self.prompt is not None:
            params += list(self.prompt.parameters())
        return params

    def train(self, mode: bool = True) -> None:
        self.teacher.train(mode)
        if self.prompt is not None:
            self.prompt.train(mode)


def build_teacher(ctx: TrainingContext, config: Config) -> TeacherBundle:
    """A fresh teacher (and prompt module, unless ``prompt.rate`` is 0) on ``ctx.device``."""
    if not ctx.features:
        raise ValueError(
            f"dataset {ctx.dataset.name!r} has no item features: the teacher needs at least "
            "one modality; set stage1.enabled = false (student only, LightGCN alone)"
        )
    dims = {name: int(tensor.shape[1]) for name, tensor in ctx.features.items()}
    cfg = config.teacher
    if cfg.cl_weight < 0 or cfg.cl_eps < 0 or not cfg.cl_tau > 0:
        raise ValueError(
            "teacher.cl_weight and teacher.cl_eps must be >= 0 and teacher.cl_tau > 0, got "
            f"{cfg.cl_weight}, {cfg.cl_eps}, {cfg.cl_tau}"
        )
    if cfg.item_knn_k < 0:
        raise ValueError(f"teacher.item_knn_k must be >= 0 (0: off), got {cfg.item_knn_k}")
    item_graph = item_knn_graph(ctx.features, cfg.item_knn_k) if cfg.item_knn_k > 0 else None
    teacher = Teacher(
        ctx.dataset.n_users,
        ctx.dataset.n_items,
        cfg.dim,
        cfg.n_layers,
        dims,
        cfg.dropout,
        cfg.alpha,
        cfg.feat_hops,
        item_graph=item_graph,
        item_graph_hops=cfg.item_knn_hops,
        item_graph_weight=cfg.item_knn_weight,
    ).to(ctx.device)
    prompt = None
    if config.prompt.rate > 0:
        tokens = pca_tokens(ctx.prepared_features, cfg.dim).to(ctx.device)
        prompt = PromptModule(tokens, cfg.dim, dims, config.prompt.rate).to(ctx.device)
    return TeacherBundle(teacher, prompt)


def _contrastive_loss(
    teacher: Teacher, adj: torch.Tensor, users: torch.Tensor, pos: torch.Tensor, config: Config
) -> torch.Tensor:
    """SimGCL's term: InfoNCE of two noisy ID views, batch users + batch positive items."""
    cfg = config.teacher
    (user_a, item_a), (user_b, item_b) = (teacher.perturbed_ids(adj, cfg.cl_eps) for _ in range(2))
    u, i = torch.unique(users), torch.unique(pos)
    return info_nce_loss(user_a[u], user_b[u], cfg.cl_tau) + info_nce_loss(
        item_a[i], item_b[i], cfg.cl_tau
    )


def _teacher_loss(
    teacher: Teacher,
    adj: torch.Tensor,
    out: TeacherOutput,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    config: Config,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    user, item = out.user_emb, out.item_emb
    u, p, n = user[users], item[pos], item[neg]
    ego_users, ego_items = teacher.ego_parameters()
    parts = {
        "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
        "l2": config.teacher.l2_weight * l2_reg(ego_users[users], ego_items[pos], ego_items[neg]),
    }
    if config.teacher.modal_bpr_weight > 0:
        modal = total_loss(
            bpr_loss(
                (out.modal_users[m][users] * out.modal_items[m][pos]).sum(-1),
                (out.modal_users[m][users] * out.modal_items[m][neg]).sum(-1),
            )
            for m in out.modal_items
        )
        parts["modal_bpr"] = config.teacher.modal_bpr_weight * modal
    if config.teacher.cl_weight > 0:
        parts["cl"] = config.teacher.cl_weight * _contrastive_loss(teacher, adj, users, pos, config)
    return total_loss(parts.values()), parts


def validate_teacher(
    bundle: TeacherBundle, ctx: TrainingContext, test: bool = False
) -> dict[str, float]:
    """Validation (or test) metrics of the teacher's own scores, in eval mode."""
    bundle.train(False)
    with torch.no_grad():
        out = bundle.forward(ctx)
    return (ctx.test if test else ctx.validate)(out.user_emb, out.item_emb)


def train_teacher(
    ctx: TrainingContext, config: Config, run: RunDir | None = None
) -> tuple[TeacherBundle, FitResult]:
    """Train teacher + prompt; return them loaded with the best validation checkpoint."""
    bundle = build_teacher(ctx, config)
    train = config.stage1
    params = bundle.parameters()
    sync = ctx.share_parameters(params)
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    steps = ctx.steps_per_epoch(train.batch_size)

    def train_epoch(epoch: int) -> dict[str, float]:
        bundle.train(True)
        sample = ctx.sampler.epoch(steps, train.batch_size, ctx.generator)

        def step(j: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            users, pos, neg = sample.batch(j)
            out = bundle.forward(ctx)
            return _teacher_loss(bundle.teacher, ctx.adj, out, users, pos, neg, config)

        return optimise_epoch(steps, step, optimizer, f"{STAGE} epoch {epoch}", sync)

    result = fit(
        STAGE,
        train_epoch,
        lambda: ctx.dist.from_main(lambda: validate_teacher(bundle, ctx)),
        bundle.state,
        train,
        config.eval.select_metric,
        run,
        config.run.progress and ctx.dist.is_main,
        steps * train.batch_size * ctx.dist.world_size,
    )
    bundle.load(result.best_state)
    bundle.train(False)
    return bundle, result
