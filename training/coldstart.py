"""Content -> student-space maps for items without training interactions (issue 13).

An exported student places every item it trained on; an item nobody has interacted with
gets its embedding from its modality features through a map learned on the warm items:

- ``random``: a draw from the warm embeddings' per-dimension normal (the floor);
- ``knn``: the similarity-weighted mean of the student embeddings of the ``k`` warm items
  whose standardised content is most cosine-similar (mean over modalities, as the
  teacher's FREEDOM item graph, :func:`training.graph.item_knn_graph`, measures it);
- ``ridge``: a ridge regression from the standardised features to the embeddings;
- ``aligned``: a linear map distilled from the student on ranking agreement (after ALDI,
  Huang et al., SIGIR 2023): starting from the ridge solution, it is trained on the warm
  items so that its scores ``u · f(x_i)`` match the student's scores in value (ALDI's
  rating-distribution alignment) and in the order of item pairs for each user (ranking
  alignment), plus a BPR term on the items' training users (the content embedding must
  identify who interacted with the item; our stand-in for ALDI's identification
  distillation, which needs a per-item teacher signal this student does not have).

Every method's cold embeddings are then calibrated (:class:`MapFit`): a content embedding
is a shrunk estimate (averaging and regression pull it towards the mean), so as it is cold
items rarely reach a top-20, while scaled up uniformly they crowd out warm hits (issue 13's
first baseline). The calibration keeps the shared direction (how popular the item looks to
everyone, ``level``) apart from the item's own deviation (``scale``). Methods, settings and
calibration are chosen on validation (:func:`select_map`) on items held out as if cold (for
the natural protocol a seeded sample of warm items lose their embedding and the maps are
fitted without them): the highest cold Recall@20 among the points whose warm Recall@20 stays
within :data:`WARM_TOLERANCE` of the student without cold items (ties: overall Recall@20;
without such a point, the highest overall Recall@20).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from bundle.content import ContentMap, content_embeddings
from training.evaluate import ranked_topk
from training.metrics import ranking_metrics

__all__ = [
    "Candidate",
    "MapFit",
    "SplitScorer",
    "fit_map",
    "select_map",
    "standardisation",
]

logger = logging.getLogger(__name__)

K = 20
LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0)
SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
KNN_KS = (10, 20, 50)
RIDGE_LAMBDAS = (1.0, 10.0, 100.0, 1000.0)
PARTS = ("overall", "warm", "cold")
AUTO_SELECT_SCORES = 100_000_000
"""Largest validation users x items for which ``run.content_map = "auto"`` selects a map."""
WARM_TOLERANCE = 0.01
"""Relative loss of validation warm Recall@20 a calibration may cost (the seed spread's order)."""
METHOD_ORDER = ("random", "knn", "ridge", "aligned")


@dataclass(frozen=True)
class Candidate:
    """One method with its setting (``k`` for knn, ``lam`` for ridge/aligned)."""

    method: str
    setting: float = 0.0

    @property
    def label(self) -> str:
        if self.method == "knn":
            return f"knn k={int(self.setting)}"
        if self.method in ("ridge", "aligned"):
            return f"{self.method} lambda={self.setting:g}"
        return self.method


@dataclass
class MapFit:
    """A candidate fitted on some warm items: its map (``None`` for random) and calibration.

    A content embedding ``e`` is calibrated around ``center``, the mean student embedding of
    the fitted items: ``level · center + scale · (e - center)``. ``level`` sets how popular
    a cold item looks to every user (the shared direction), ``scale`` how strongly its own
    content speaks; both are chosen on validation (:func:`select_map`).
    """

    candidate: Candidate
    content_map: ContentMap | None
    center: np.ndarray
    spread: np.ndarray
    level: float = 1.0
    scale: float = 1.0
    valid: dict[str, dict[str, float]] = field(default_factory=dict)

    def calibrated(self, level: float, scale: float) -> MapFit:
        """This fit with another calibration."""
        return MapFit(self.candidate, self.content_map, self.center, self.spread, level, scale)

    def raw(
        self, features: Mapping[str, np.ndarray], items: np.ndarray, seed: int = 0
    ) -> np.ndarray:
        """The uncalibrated (n, dim) content embeddings of ``items`` (float64)."""
        if self.content_map is None:
            draw = np.random.default_rng(seed).normal(size=(items.size, self.center.size))
            return np.asarray(self.center + draw * self.spread)
        rows = {name: matrix[items] for name, matrix in features.items()}
        return content_embeddings(self.content_map, rows).astype(np.float64)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`raw` output calibrated, float32."""
        calibrated = self.level * self.center + self.scale * (raw - self.center)
        return np.asarray(calibrated, dtype=np.float32)

    def embed(
        self, features: Mapping[str, np.ndarray], items: np.ndarray, seed: int = 0
    ) -> np.ndarray:
        """The calibrated (n, dim) content embeddings of ``items`` (float32)."""
        return self.apply(self.raw(features, items, seed))

    def exported(self) -> ContentMap:
        """The map with its calibration folded in, for the bundle (same embeddings)."""
        if self.content_map is None:
            raise ValueError("the random baseline has no content map to export")
        base = self.content_map
        shift = ((self.level - self.scale) * self.center).astype(np.float64)
        info = {
            "candidate": self.candidate.label,
            "level": self.level,
            "scale": self.scale,
            "valid": self.valid,
        }
        if base.method == "linear":
            assert base.bias is not None
            return ContentMap(
                "linear",
                base.mean,
                base.std,
                weights={
                    m: (self.scale * base.scale * w).astype(np.float32)
                    for m, w in base.weights.items()
                },
                bias=(self.scale * base.scale * base.bias + shift).astype(np.float32),
                info=info,
            )
        assert base.reference_embeddings is not None
        return ContentMap(
            "knn",
            base.mean,
            base.std,
            references=base.references,
            reference_embeddings=(
                self.scale * base.scale * base.reference_embeddings + shift
            ).astype(np.float32),
            k=base.k,
            info=info,
        )


def standardisation(
    features: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-modality column ``(mean, std)`` over all items, float32 (std 1 where constant).

    Content exists for every item, cold ones included, and carries no label, so the
    statistics use every row (as the teacher's standardisation does).
    """
    mean, std = {}, {}
    for name, matrix in sorted(features.items()):
        values = np.asarray(matrix, dtype=np.float64)
        column_std = values.std(axis=0)
        mean[name] = values.mean(axis=0).astype(np.float32)
        std[name] = np.where(column_std > 1e-8, column_std, 1.0).astype(np.float32)
    return mean, std


def _standardised(
    features: Mapping[str, np.ndarray],
    mean: Mapping[str, np.ndarray],
    std: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    return {
        name: (np.asarray(features[name], np.float64) - mean[name]) / std[name]
        for name in sorted(mean)
    }


def _ridge(
    z: dict[str, np.ndarray], targets: np.ndarray, lam: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Ridge weights per modality and bias: ``min ||X W + b - E||² + lam ||W||²``."""
    names = sorted(z)
    x = np.concatenate([z[name] for name in names], axis=1)
    x_mean, e_mean = x.mean(axis=0), targets.mean(axis=0)
    xc, ec = x - x_mean, targets - e_mean
    n, d = xc.shape
    if d <= n:
        weight = np.linalg.solve(xc.T @ xc + lam * np.eye(d), xc.T @ ec)
    else:  # dual form: fewer items than feature columns
        weight = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(n), ec)
    bias = e_mean - x_mean @ weight
    split = np.cumsum([z[name].shape[1] for name in names])[:-1]
    parts = np.split(weight, split, axis=0)
    return {
        name: part.astype(np.float32) for name, part in zip(names, parts, strict=True)
    }, bias.astype(np.float32)


@dataclass(frozen=True)
class AlignConfig:
    """The ``aligned`` map's training: steps, batch sizes, learning rate, loss weights."""

    steps: int = 200
    items_per_step: int = 256
    users_per_step: int = 256
    lr: float = 1e-3
    tau: float = 1.0
    bpr_weight: float = 1.0
    rank_weight: float = 1.0
    score_weight: float = 1.0


def _aligned(
    z: dict[str, np.ndarray],
    item_emb: np.ndarray,
    user_emb: np.ndarray,
    train: sp.csr_matrix,
    lam: float,
    seed: int,
    config: AlignConfig,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ridge map fine-tuned on score and ranking agreement with the student (module doc).

    ``z``, ``item_emb`` and ``train``'s columns are the fitted (warm) items only.
    """
    weights, bias = _ridge(z, item_emb, lam)
    names = sorted(z)
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.concatenate([z[name] for name in names], axis=1).astype(np.float32))
    w = torch.nn.Parameter(torch.from_numpy(np.concatenate([weights[n] for n in names])))
    b = torch.nn.Parameter(torch.from_numpy(bias.copy()))
    items_t = torch.from_numpy(item_emb.astype(np.float32))
    users_t = torch.from_numpy(user_emb.astype(np.float32))
    coo = train.tocoo()
    pos_users, pos_items = (
        torch.from_numpy(coo.row.astype(np.int64)),
        torch.from_numpy(coo.col.astype(np.int64)),
    )
    optimiser = torch.optim.Adam([w, b], lr=config.lr)
    n_items, n_users = x.shape[0], users_t.shape[0]
    scale = float(items_t.norm(dim=1).mean())
    for _ in range(config.steps):
        items = torch.randint(n_items, (config.items_per_step,), generator=generator)
        users = torch.randint(n_users, (config.users_per_step,), generator=generator)
        content = x[items] @ w + b
        student = users_t[users] @ items_t[items].T
        predicted = users_t[users] @ content.T
        loss = config.score_weight * ((predicted - student) ** 2).mean() / scale**2
        other = torch.randperm(config.items_per_step, generator=generator)
        margin_student = (student - student[:, other]) / config.tau
        margin_content = (predicted - predicted[:, other]) / config.tau
        loss = loss + config.rank_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            margin_content, torch.sigmoid(margin_student)
        )
        edges = torch.randint(pos_items.numel(), (config.items_per_step,), generator=generator)
        negatives = torch.randint(n_items, (config.items_per_step,), generator=generator)
        u = users_t[pos_users[edges]]
        pos = (u * (x[pos_items[edges]] @ w + b)).sum(dim=1)
        neg = (u * (x[negatives] @ w + b)).sum(dim=1)
        loss = loss + config.bpr_weight * torch.nn.functional.softplus(neg - pos).mean()
        loss = loss + lam / n_items * (w**2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    split = np.cumsum([z[name].shape[1] for name in names])[:-1]
    parts = np.split(w.detach().numpy(), split, axis=0)
    return (
        {name: part.astype(np.float32) for name, part in zip(names, parts, strict=True)},
        b.detach().numpy().astype(np.float32),
    )


def fit_map(
    candidate: Candidate,
    features: Mapping[str, np.ndarray],
    item_emb: np.ndarray,
    user_emb: np.ndarray,
    train: sp.csr_matrix,
    fit_items: np.ndarray,
    seed: int = 0,
    align: AlignConfig | None = None,
) -> MapFit:
    """Fit ``candidate`` on the items ``fit_items`` (their features and student embeddings).

    Args:
        candidate: the method and its setting.
        features: modality -> (n_items, d_m) raw features of every item.
        item_emb: (n_items, dim) student item embeddings (only ``fit_items`` rows are used).
        user_emb: (n_users, dim) student user embeddings (``aligned`` only).
        train: (n_users, n_items) training interactions (``aligned`` only).
        fit_items: int indices of the warm items the map learns from.
        seed: for ``random`` and ``aligned``.
        align: the ``aligned`` training settings (defaults if ``None``).
    """
    if fit_items.size < 2:
        raise ValueError(f"need at least 2 warm items to fit a content map, got {fit_items.size}")
    targets = np.asarray(item_emb[fit_items], dtype=np.float64)
    center, spread = targets.mean(axis=0), targets.std(axis=0)
    if candidate.method == "random":
        return MapFit(candidate, None, center, spread)
    if not features:
        raise ValueError("a content map needs item features; this dataset has none")
    mean, std = standardisation(features)
    z = _standardised({n: m[fit_items] for n, m in features.items()}, mean, std)
    if candidate.method == "knn":
        references = {}
        for name, rows in z.items():
            norms = np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            references[name] = (rows / norms).astype(np.float32)
        k = min(int(candidate.setting), fit_items.size)
        content_map = ContentMap(
            "knn",
            mean,
            std,
            references=references,
            reference_embeddings=targets.astype(np.float32),
            k=k,
        )
    elif candidate.method == "ridge":
        weights, bias = _ridge(z, targets, candidate.setting)
        content_map = ContentMap("linear", mean, std, weights=weights, bias=bias)
    elif candidate.method == "aligned":
        train_fit = sp.csr_matrix(train)[:, fit_items]
        weights, bias = _aligned(
            z, targets, user_emb, train_fit, candidate.setting, seed, align or AlignConfig()
        )
        content_map = ContentMap("linear", mean, std, weights=weights, bias=bias)
    else:
        raise ValueError(
            f"unknown content-map method {candidate.method!r}; expected one of {METHOD_ORDER}"
        )
    return MapFit(candidate, content_map, center, spread)


class SplitScorer:
    """Recall@K / NDCG@K of user lists when only some items' embeddings change.

    The fixed items' top-K per user is computed once; :meth:`metrics` merges it with the
    scores of the ``varying`` items, so a selection grid costs ``U x |varying|`` per point.
    Ranking: score descending, ties to the smaller item index (as :mod:`training.evaluate`).
    Metrics are reported for all targets and for those on warm (fixed) and cold (varying)
    items separately, each averaged over the users with at least one such target.
    """

    def __init__(
        self,
        user_emb: np.ndarray,
        item_emb: np.ndarray,
        varying: np.ndarray,
        target: sp.csr_matrix,
        exclude: Iterable[sp.spmatrix],
        k: int = K,
    ) -> None:
        n_items = item_emb.shape[0]
        self.k = k
        self.varying = np.asarray(varying, dtype=np.int64)
        mask = sp.csr_matrix((user_emb.shape[0], n_items), dtype=np.float32)
        for matrix in exclude:
            mask = mask + sp.csr_matrix(matrix, dtype=np.float32)
        target = sp.csr_matrix(target, dtype=np.float32)
        self.users = np.flatnonzero(target.getnnz(axis=1) > 0)
        self.target = target[self.users]
        self.target.data[:] = 1.0
        self.mask = mask[self.users]
        self.user_emb = torch.from_numpy(np.asarray(user_emb, np.float64)[self.users])
        is_varying = np.zeros(n_items, dtype=bool)
        is_varying[self.varying] = True
        self.is_varying = is_varying
        fixed = np.flatnonzero(~is_varying)
        scores = self.user_emb @ torch.from_numpy(np.asarray(item_emb, np.float64)[fixed]).T
        scores = scores.to(torch.float32)
        self._mask_scores(scores, fixed)
        values, order = ranked_topk(scores, min(k, fixed.size))
        self.fixed_values = values
        self.fixed_items = torch.from_numpy(fixed)[order]
        cold_cols = sp.diags(is_varying.astype(np.float32))
        self.n_target = {
            "overall": np.asarray(self.target.getnnz(axis=1)),
            "cold": np.asarray((self.target @ cold_cols).getnnz(axis=1)),
        }
        self.n_target["warm"] = self.n_target["overall"] - self.n_target["cold"]

    def _mask_scores(self, scores: torch.Tensor, columns: np.ndarray) -> None:
        sub = self.mask[:, columns].tocoo()
        if sub.nnz:
            scores[
                torch.from_numpy(sub.row.astype(np.int64)),
                torch.from_numpy(sub.col.astype(np.int64)),
            ] = -np.inf

    def metrics(self, varying_emb: np.ndarray | None) -> dict[str, dict[str, float]]:
        """``{part: {"recall@K", "ndcg@K", "users"}}`` with the varying items at ``varying_emb``
        (``None``: the varying items are left out of every list)."""
        if varying_emb is None:
            scores = torch.full((self.users.size, self.varying.size), -torch.inf)
        else:
            scores = self.user_emb @ torch.from_numpy(np.asarray(varying_emb, np.float64)).T
            scores = scores.to(torch.float32)
            self._mask_scores(scores, self.varying)
        top_values, top_items = self._top(scores)
        hit = self._hits(top_items.numpy()) & torch.isfinite(top_values).numpy()
        cold_hit = hit & self.is_varying[top_items.numpy()]
        result = {}
        for part, part_hits in (("overall", hit), ("cold", cold_hit), ("warm", hit & ~cold_hit)):
            n_target = self.n_target[part]
            rows = n_target > 0
            if not rows.any():
                continue
            scores_part = ranking_metrics(
                torch.from_numpy(part_hits[rows]),
                torch.from_numpy(n_target[rows]),
                [self.k],
                "standard",
            )
            result[part] = {
                f"recall@{self.k}": float(scores_part[f"recall@{self.k}"].double().mean()),
                f"ndcg@{self.k}": float(scores_part[f"ndcg@{self.k}"].double().mean()),
                "users": float(rows.sum()),
            }
        return result

    def _top(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top ``k`` (values, items) of each row of the fixed top-K and the varying items'
        ``scores``, ranked by (score desc, index asc): each part's own top ``k`` (exact, by
        :func:`ranked_topk`), then the union of the two short lists ordered."""
        values, positions = ranked_topk(scores, min(self.k, scores.shape[1]))
        values = torch.cat([self.fixed_values, values], dim=1)
        items = torch.cat([self.fixed_items, torch.from_numpy(self.varying)[positions]], dim=1)
        by_index = torch.argsort(items, dim=1)
        values, items = values.gather(1, by_index), items.gather(1, by_index)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        return values.gather(1, order), items.gather(1, order)

    def _hits(self, top_items: np.ndarray) -> np.ndarray:
        n_items = self.target.shape[1]
        coo = self.target.tocoo()
        keys = np.sort(coo.row.astype(np.int64) * n_items + coo.col)
        query = np.arange(top_items.shape[0])[:, None] * n_items + np.maximum(top_items, 0)
        pos = np.clip(np.searchsorted(keys, query), 0, max(keys.size - 1, 0))
        return (keys[pos] == query) if keys.size else np.zeros(query.shape, dtype=bool)


def candidates(has_features: bool) -> list[Candidate]:
    """The selection grid: random, then (with features) knn, ridge and aligned settings."""
    grid = [Candidate("random")]
    if has_features:
        grid += [Candidate("knn", k) for k in KNN_KS]
        grid += [Candidate("ridge", lam) for lam in RIDGE_LAMBDAS]
    return grid


@dataclass
class Selection:
    """The best fit per method (by validation) and the chosen one among the content methods."""

    per_method: dict[str, MapFit]
    chosen: str
    pseudo_cold: np.ndarray
    table: list[dict[str, Any]]


def select_map(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    features: Mapping[str, np.ndarray],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    cold_items: np.ndarray,
    *,
    pseudo_cold: int = 0,
    seed: int = 0,
    levels: Sequence[float] = LEVELS,
    scales: Sequence[float] = SCALES,
    align: AlignConfig | None = None,
) -> Selection:
    """Choose each method's setting and calibration, and the method, on validation (module doc).

    ``pseudo_cold`` warm items (seeded) are held out as if cold: the maps are fitted on the
    other warm items and the pseudo-cold items, with the truly cold ones, take their content
    embeddings while ``valid`` is scored (training items masked). ``aligned`` starts from the
    ridge setting chosen first. Returns every method's best fit (refit on *all* warm items,
    with the chosen setting and calibration) and the content method with the best validation.
    """
    rng = np.random.default_rng(seed)
    warm = np.flatnonzero(~cold_items)
    held = (
        np.sort(rng.choice(warm, size=pseudo_cold, replace=False))
        if pseudo_cold
        else np.empty(0, np.int64)
    )
    fit_items = np.setdiff1d(warm, held)
    varying = np.sort(np.concatenate([np.flatnonzero(cold_items), held]))
    scorer = SplitScorer(user_emb, item_emb, varying, valid, [train])
    metric = f"recall@{K}"
    floor = (1.0 - WARM_TOLERANCE) * scorer.metrics(None)["warm"][metric]
    best: dict[str, tuple[tuple[bool, float, float], MapFit]] = {}
    table = []
    grid = candidates(bool(features))

    def consider(candidate: Candidate) -> None:
        fit = fit_map(candidate, features, item_emb, user_emb, train, fit_items, seed, align)
        raw = fit.raw(features, varying, seed)
        for level in levels:
            for scale in scales:
                calibrated = fit.calibrated(level, scale)
                values = scorer.metrics(calibrated.apply(raw))
                table.append(
                    {"candidate": candidate.label, "level": level, "scale": scale}
                    | {part: values.get(part, {}) for part in PARTS}
                )
                feasible = values["warm"][metric] >= floor
                cold = values.get("cold", {}).get(metric, 0.0)
                overall = values["overall"][metric]
                score = (feasible, cold if feasible else overall, overall)
                if candidate.method not in best or score > best[candidate.method][0]:
                    calibrated.valid = values
                    best[candidate.method] = (score, calibrated)

    for candidate in grid:
        consider(candidate)
    if features:
        consider(Candidate("aligned", best["ridge"][1].candidate.setting))
    per_method = {}
    for method, (_, fit) in best.items():
        refit = fit_map(fit.candidate, features, item_emb, user_emb, train, warm, seed, align)
        per_method[method] = refit.calibrated(fit.level, fit.scale)
        per_method[method].valid = fit.valid
    content = [m for m in per_method if m != "random"] or ["random"]
    chosen = max(content, key=lambda m: best[m][0])
    logger.info(
        "content map chosen by validation %s: %s", metric, per_method[chosen].candidate.label
    )
    return Selection(per_method, chosen, held, table)


def with_content(
    item_emb: np.ndarray,
    fit: MapFit,
    features: Mapping[str, np.ndarray],
    items: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """``item_emb`` (copied) with the rows ``items`` replaced by ``fit``'s content embeddings."""
    result = np.array(item_emb, dtype=np.float32, copy=True)
    if items.size:
        result[items] = fit.embed(features, items, seed)
    return result


def pseudo_cold_count(n_cold: int, n_warm: int) -> int:
    """Warm items held out as if cold for a natural split: as many as are cold, at least 5 %
    and at most 10 % of the warm items."""
    return int(min(max(n_cold, n_warm // 20), n_warm // 10))


@dataclass(frozen=True)
class ExportedContent:
    """What export adds: the item tables with cold rows from content, the map, a summary."""

    item_embeddings: np.ndarray
    item_layers: np.ndarray
    content_map: ContentMap
    summary: dict[str, Any]


def content_for_export(
    features: Mapping[str, np.ndarray],
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    item_layers: np.ndarray,
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    seed: int = 0,
    *,
    mode: str = "auto",
) -> ExportedContent | None:
    """Choose a content map for the student (:func:`select_map` on ``valid``) and give the
    items without a training interaction their content embedding; ``None`` without features,
    with ``mode="none"``, or with ``mode="auto"`` when scoring the validation users over
    every item would exceed :data:`AUTO_SELECT_SCORES` (the selection scores its grid on
    every validation user; beyond that size it takes longer than training).

    A cold item's final embedding ``e`` becomes its LightGCN ego row ``(L + 1) · e`` in
    ``item_layers[0]`` (its propagated layers are 0: it has no edge), so a user who
    interacts with it later folds it in consistently (:func:`bundle.fold_in_user`).
    """
    if mode not in ("auto", "select", "none"):
        raise ValueError(f"content map mode {mode!r} is not one of auto, select, none")
    if not features or mode == "none":
        return None
    scores = int(np.count_nonzero(valid.getnnz(axis=1))) * train.shape[1]
    if mode == "auto" and scores > AUTO_SELECT_SCORES:
        logger.warning(
            "no content map exported: validation users x items = %.2g > %.0g; cold items keep "
            'their trained rows (set run.content_map = "select" to choose one anyway)',
            scores,
            AUTO_SELECT_SCORES,
        )
        return None
    cold_mask = np.asarray(train.getnnz(axis=0) == 0)
    n_cold, n_warm = int(cold_mask.sum()), int((~cold_mask).sum())
    selection = select_map(
        user_emb,
        item_emb,
        features,
        train,
        valid,
        cold_mask,
        pseudo_cold=pseudo_cold_count(n_cold, n_warm),
        seed=seed,
    )
    fit = selection.per_method[selection.chosen]
    content_map = fit.exported()
    cold = np.flatnonzero(cold_mask)
    items = np.array(item_emb, dtype=np.float32, copy=True)
    layers = np.array(item_layers, dtype=np.float32, copy=True)
    if cold.size:
        rows = content_embeddings(content_map, {m: f[cold] for m, f in features.items()})
        items[cold] = rows
        if layers.shape[0]:
            layers[0, cold] = (layers.shape[0] + 1) * rows
    summary = {
        "chosen": fit.candidate.label,
        "level": fit.level,
        "scale": fit.scale,
        "cold_items": n_cold,
        "pseudo_cold_items": int(selection.pseudo_cold.size),
        "valid": fit.valid,
    }
    return ExportedContent(items, layers, content_map, summary)
