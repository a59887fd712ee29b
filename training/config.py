"""Typed, checked configuration of a training run (one TOML file per experiment).

Every component owns a frozen dataclass with its defaults; :class:`Config` composes them.
A TOML file sets any subset of the fields (unknown tables or keys are errors), and
``--set section.key=value`` overrides are parsed as TOML values and checked against the
field's declared type.

Paths: a relative path written in a config file is resolved against the repository that
holds the file (the nearest ancestor with a ``pyproject.toml``), never the current
directory; a relative path given as a ``--set`` override is resolved against the current
directory (it was typed there). ``data.path`` values under ``../shared/datasets/`` follow
``$PROMPTMM_SHARED_DATASETS`` when it is set. :func:`to_dict` writes paths back relative
to the repository root where possible, so saved configs carry no machine paths.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TUNE_SECTION = "tune"
"""The ``[tune.<section>]`` tables of a config: search spaces for ``training tune``
(checked by :mod:`training.tune`); a run ignores them."""
SHARED_DATASETS_ENV = "PROMPTMM_SHARED_DATASETS"
SHARED_PREFIX = ("..", "shared", "datasets")


@dataclass(frozen=True)
class DataConfig:
    """Where the dataset is and how its item features are prepared for the teacher.

    ``interactions``: a JSON-lines file of ``{"user_id", "item_id"}`` pairs (the service's
    ``python -m service.export_log``) added to the training split (see
    :mod:`training.data.extra`); None: the dataset as it is.
    """

    path: str = "../shared/datasets/tiktok"
    """Dataset folder; ../shared/datasets/... follows $PROMPTMM_SHARED_DATASETS when set."""
    format: str | None = None
    """hkuds, json or mmrec; none: detected from the folder's files."""
    standardize_features: bool = True
    """Standardise each feature column (mean 0, std 1) before the teacher."""
    interactions: str | None = None
    """JSON-lines file of service interactions added to the training split."""


@dataclass(frozen=True)
class TeacherConfig:
    """Multi-modal teacher (method.md section 2).

    ``item_knn_k`` > 0 switches on a departure from the paper (FREEDOM / LATTICE): a frozen
    item-item kNN graph of the (prepared) content features, ``k`` neighbours per item and
    modality, symmetric-normalised and averaged over modalities; the teacher adds
    ``item_knn_weight`` x its ego item embeddings propagated ``item_knn_hops`` hops over it
    to its item output. 0 (the default): no item graph, the paper's teacher.

    ``cl_weight`` > 0 switches on a second departure (SimGCL): stage 1 adds ``cl_weight`` x
    the InfoNCE (temperature ``cl_tau``) between two noisy views of the teacher's ID part
    (noise radius ``cl_eps`` per layer), over the batch's users and over its positive items.
    0 (the default): off.
    """

    dim: int = 64
    """Embedding size of the teacher."""
    n_layers: int = 2
    """LightGCN propagation layers of the teacher's ID embeddings."""
    dropout: float = 0.2
    """Dropout of the per-modality reduction layers, in [0, 1)."""
    alpha: float = 1.0
    """Weight of the normalised modality features added to the ID embeddings."""
    feat_hops: int = 1
    """Item-user-item round trips that propagate the modality features (>= 1)."""
    modal_bpr_weight: float = 0.0
    """Weight of a BPR loss on each modality's user/item features (0: off)."""
    l2_weight: float = 1e-4
    """Weight of the L2 term on the batch's ego embeddings."""
    item_knn_k: int = 0
    """Neighbours per item in the content kNN item graph (0: no item graph)."""
    item_knn_hops: int = 1
    """Hops over the item kNN graph."""
    item_knn_weight: float = 1.0
    """Weight of the kNN-propagated item embeddings in the item output."""
    cl_weight: float = 0.0
    """Weight of the SimGCL contrastive term in stage 1 (0: off)."""
    cl_eps: float = 0.1
    """SimGCL noise radius per layer."""
    cl_tau: float = 0.2
    """SimGCL InfoNCE temperature."""


@dataclass(frozen=True)
class PromptConfig:
    """Soft prompt module (method.md section 3); ``rate`` is lambda1, 0 disables it."""

    rate: float = 0.1
    """lambda1: strength of the soft prompt (0 disables the prompt module)."""


@dataclass(frozen=True)
class StudentConfig:
    """LightGCN student (method.md section 4); ``n_layers = 0`` is MF.

    ``init_from_teacher`` copies the teacher's ID ego tables into the student before stage 2
    (needs a teacher of the same ``dim``).
    """

    dim: int = 64
    """Embedding size of the student (and of the exported bundle)."""
    n_layers: int = 2
    """LightGCN layers of the student (0: matrix factorisation)."""
    l2_weight: float = 1e-4
    """Weight of the L2 term on the batch's ego embeddings."""
    init_from_teacher: bool = False
    """Start from the teacher's ID ego tables (needs the same dim)."""


@dataclass(frozen=True)
class KDConfig:
    """Stage-2 distillation weights (Eq. 12) and their hyper-parameters.

    ``tune_prompt`` trains the prompt module with the student through the frozen teacher;
    ``prompt_every`` recomputes the prompt-dependent KD targets (with gradient into the
    prompt) every that many steps and reuses them, detached, in between (1: every step).
    """

    pair_weight: float = 1.0
    """Weight of the pair-wise KD on score margins (Eq. 5; 0: off)."""
    list_weight: float = 1.0
    """Weight of the list-wise KD (0: off)."""
    emb_weight: float = 1.0
    """Weight of the embedding KD (scaled cosine error; 0: off)."""
    tau: float = 1.0
    """Temperature of the pair-wise KD."""
    list_tau: float = 1.0
    """Temperature of the list-wise KD."""
    list_size: int = 10
    """Items per user in the list-wise KD."""
    disentangle: bool = True
    """The paper's disentangled, re-weighted list KD (false: plain KL)."""
    sce_gamma: float = 1.0
    """Exponent of the embedding KD's scaled cosine error (>= 1)."""
    teacher_eval_mode: bool = True
    """Run the frozen teacher in eval mode (no dropout) during stage 2."""
    tune_prompt: bool = True
    """Train the prompt module with the student, through the frozen teacher."""
    prompt_every: int = 1
    """Recompute the prompt-dependent targets every that many steps (1: each)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one stage; ``enabled = false`` skips the stage."""

    enabled: bool = True
    """Run this stage (false: skip it)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 2048
    """(user, positive, negative) triples per step."""
    max_epochs: int = 100
    """Most epochs."""
    patience: int = 10
    """Stop after this many epochs without a better validation select_metric."""
    eval_every: int = 1
    """Evaluate on validation every that many epochs."""


@dataclass(frozen=True)
class EvalConfig:
    """All-ranking evaluation; model selection uses ``select_metric`` on validation."""

    ks: tuple[int, ...] = (10, 20, 50)
    """Cut-offs K of recall@K and ndcg@K."""
    ndcg: Literal["standard", "lineage"] = "standard"
    """standard, or lineage (the reference code's NDCG; see training/metrics.py)."""
    chunk_size: int = 2048
    """Users scored at once (memory: chunk_size x items floats)."""
    select_metric: str = "recall@20"
    """Validation metric that picks the best epoch."""


@dataclass(frozen=True)
class RunConfig:
    """Reproducibility, device and output locations."""

    seed: int = 0
    """Random seed of Python, numpy and torch."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int = 0
    """CPU threads of torch (0: every core the process may use)."""
    runs_dir: str = "runs"
    """Where each run writes its folder (config, metrics, logs)."""
    models_dir: str = "models"
    """Models root: the bundle is exported to <models_dir>/<dataset>/."""
    progress: bool = True
    """Show progress bars."""
    content_map: Literal["auto", "select", "none"] = "auto"
    """Cold items' content map at export: select (chosen on validation), none (cold items keep
    their trained rows; no map in the bundle), or auto (select when validation users x items
    is at most 1e8, a few minutes on 2 cores; none beyond, logged)."""


@dataclass(frozen=True)
class Config:
    """A whole experiment: one section per component."""

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    stage1: TrainConfig = field(default_factory=TrainConfig)
    stage2: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


PATH_FIELDS = (
    ("data", "path"),
    ("data", "interactions"),
    ("run", "runs_dir"),
    ("run", "models_dir"),
)


def repo_root_of(path: Path) -> Path:
    """The nearest ancestor of ``path`` holding a ``pyproject.toml`` (else its directory)."""
    start = path.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return start if start.is_dir() else start.parent


REPO_ROOT = repo_root_of(Path(__file__))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and, for int->float and list->tuple, converted) against ``tp``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError:
                continue
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list of {_type_name(item_type)}, got {value!r}")
        return tuple(_coerce(item, item_type, key) for item in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{key}: expected bool (true/false), got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key}: expected int, got {value!r}")
    if not isinstance(value, tp):
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
    hints = _section_types(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(
            f"unknown key(s) {[f'{section}.{k}' for k in unknown]}; "
            f"known keys of [{section}]: {sorted(hints)}"
        )
    checked = {key: _coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()}
    return cls(**checked)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from nested mappings, rejecting unknown sections and keys
    (the :data:`TUNE_SECTION` table is skipped)."""
    sections = _section_types(Config)
    unknown = sorted(set(raw) - set(sections) - {TUNE_SECTION})
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; known: {sorted(sections)}")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        values = raw.get(name, {})
        if not isinstance(values, Mapping):
            raise ValueError(f"[{name}] must be a table of keys, got {values!r}")
        built[name] = _build_section(cls, values, name)
    return Config(**built)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise ValueError(f"override {text!r}: expected section.key=value")
    dotted, raw_value = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"override {text!r}: the key must be section.key, got {dotted!r}")
    try:
        value = tomllib.loads(f"v = {raw_value}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    if raw_value.strip().lower() in ("none", "null"):
        value = None
    return parts[0], parts[1], value


def resolve_path(value: str, base: Path, *, shared_env: bool) -> str:
    """``value`` made absolute against ``base`` (``$PROMPTMM_SHARED_DATASETS`` if asked)."""
    path = Path(value)
    if path.is_absolute():
        return str(path)
    env = os.environ.get(SHARED_DATASETS_ENV)
    if shared_env and env and path.parts[: len(SHARED_PREFIX)] == SHARED_PREFIX:
        return os.path.abspath(Path(env, *path.parts[len(SHARED_PREFIX) :]))
    return os.path.abspath(base / path)  # normalised, symlinks kept: ../shared may be a link


def resolve_paths(config: Config, base: Path, only: set[tuple[str, str]] | None = None) -> Config:
    """``config`` with its path fields (``only`` those, if given) made absolute against ``base``."""
    for section, key in PATH_FIELDS:
        if only is not None and (section, key) not in only:
            continue
        part = getattr(config, section)
        if getattr(part, key) is None:
            continue
        value = resolve_path(getattr(part, key), base, shared_env=section == "data")
        config = dataclasses.replace(config, **{section: dataclasses.replace(part, **{key: value})})
    return config


def apply_overrides(config: Config, overrides: Sequence[str], cwd: Path | None = None) -> Config:
    """Apply ``section.key=value`` overrides, type-checked; paths resolve against ``cwd``."""
    touched: set[tuple[str, str]] = set()
    raw = to_nested(config)
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in raw:
            raise ValueError(
                f"override {text!r}: unknown section {section!r}; known: {sorted(raw)}"
            )
        raw[section][key] = value
        touched.add((section, key))
    updated = from_dict(raw)
    touched_paths = touched & set(PATH_FIELDS)
    return resolve_paths(updated, cwd or Path.cwd(), touched_paths) if touched_paths else updated


def load_config(path: Path, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML config, resolve its relative paths, then apply ``overrides``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    config = resolve_paths(from_dict(raw), repo_root_of(path))
    return apply_overrides(config, overrides)


def to_nested(config: Config) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (tuples kept), paths as stored."""
    return {
        section.name: dict(dataclasses.asdict(getattr(config, section.name)))
        for section in dataclasses.fields(config)
    }


def to_dict(config: Config, root: Path = REPO_ROOT) -> dict[str, dict[str, Any]]:
    """JSON-ready resolved config; paths beside ``root`` are written relative to it."""
    nested = to_nested(config)
    for section, key in PATH_FIELDS:
        if nested[section][key] is None:
            continue
        value = Path(nested[section][key])
        if value.is_relative_to(root.parent):
            nested[section][key] = os.path.relpath(value, root)
    for values in nested.values():
        for key, value in values.items():
            if isinstance(value, tuple):
                values[key] = list(value)
    return nested
