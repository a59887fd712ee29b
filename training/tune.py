"""``python -m training tune CONFIG --trials N``: search a recipe on the user's own data.

Optuna's TPE sampler (seeded with ``run.seed``) proposes values for the parameters the
config's ``[tune.<section>]`` tables declare (:mod:`training.tune_space`). A trial trains
as ``training run`` does (teacher, then student; no run folder, no export) and scores the
student's best validation ``eval.select_metric``. Every validation reports to Optuna's
median pruner (the teacher's at steps 1, 2, ..., the student's from
:data:`STUDENT_STEP` on), which stops a trial that falls below the median of earlier
trials at the same step; a trial whose loss diverges is pruned too.

The study lives in SQLite (``study.db`` in the study folder), so running the same command
again resumes it: it runs only the trials still missing from ``--trials``. ``--jobs J``
runs J worker processes on the same study (a few trials more than asked may finish).
``--variant`` tunes an ablation variant (e.g. "LightGCN alone") with the same budget: its
overrides win over the proposals, and parameters it makes moot (those it sets; teacher,
prompt, stage-1 and KD settings when it trains no teacher) are not searched.

Selection is on validation only. The chosen trial's config is written as ``tuned.toml``
in the study folder (``training run`` and ``training ablate`` accept it); its test
metrics, measured when the trial ran, are printed once, at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import tomli_w
import torch

from training.ablate import VARIANTS
from training.config import TUNE_SECTION, Config, apply_overrides, load_config, repo_root_of
from training.config import to_dict as config_to_dict
from training.context import TrainingContext, build_context
from training.data import Dataset
from training.loop import NonFiniteLossError
from training.pipeline import load_data, student_stage, teacher_stage
from training.tune_space import Param, parse_spaces, with_values

logger = logging.getLogger(__name__)

STUDENT_STEP = 100_000
STUDY_FILE = "study.db"
TUNED_FILE = "tuned.toml"
TEACHER_SECTIONS = ("teacher", "prompt", "stage1", "kd")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass(frozen=True)
class TuneSpec:
    """What a tuning run needs, picklable for worker processes."""

    config_path: Path
    overrides: tuple[str, ...]
    variant: str | None
    study_dir: Path
    trials: int

    @property
    def study_name(self) -> str:
        return self.study_dir.name

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.study_dir / STUDY_FILE}"


@dataclass(frozen=True)
class TuneResult:
    """The chosen trial and where its config went."""

    tuned_config: Path
    best_value: float
    best_params: dict[str, Any]
    test: dict[str, float]
    finished: int
    pruned: int


def default_study_dir(config_path: Path, config: Config, variant: str | None) -> Path:
    """``<run.runs_dir>/tune-<config name>[-<variant>]``."""
    name = f"tune-{config_path.stem}"
    if variant:
        name += "-" + re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")
    return Path(config.run.runs_dir) / name


def load_spaces(spec: TuneSpec) -> tuple[Config, list[Param], tuple[str, ...]]:
    """The base config, the searched parameters and the variant's overrides."""
    base = load_config(spec.config_path, spec.overrides)
    raw = tomllib.loads(spec.config_path.read_text(encoding="utf-8"))
    if TUNE_SECTION not in raw:
        raise ValueError(
            f"{spec.config_path}: no [tune.<section>] tables; declare what to search, e.g. "
            "[tune.stage2] lr = {low = 1e-4, high = 1e-2, log = true}"
        )
    params = parse_spaces(raw[TUNE_SECTION], base)
    if spec.variant is None:
        return base, params, ()
    if spec.variant not in VARIANTS:
        raise ValueError(f"unknown variant {spec.variant!r}; known: {list(VARIANTS)}")
    overrides = VARIANTS[spec.variant]
    varied = apply_overrides(base, overrides)
    fixed = {text.split("=", 1)[0].strip() for text in overrides}
    kept = [
        param
        for param in params
        if param.name not in fixed
        and (varied.stage1.enabled or param.section not in TEACHER_SECTIONS)
    ]
    moot = sorted({param.name for param in params} - {param.name for param in kept})
    if moot:
        logger.info("variant %r: not searching %s (moot for it)", spec.variant, moot)
    if not kept:
        raise ValueError(f"variant {spec.variant!r} leaves nothing to search in [tune]")
    return base, kept, overrides


def _suggest(trial: optuna.Trial, param: Param) -> Any:
    if param.kind == "choice":
        index = trial.suggest_categorical(param.name, list(range(len(param.choices))))
        return param.choices[index]
    if param.kind == "int":
        step = int(param.step) if param.step is not None else 1
        return trial.suggest_int(
            param.name, int(param.low), int(param.high), step=step, log=param.log
        )
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)


def trial_config(base: Config, overrides: Sequence[str], values: dict[str, Any]) -> Config:
    """``base`` with a trial's values, then the variant's overrides."""
    return apply_overrides(with_values(base, values), overrides)


def _values(params: Sequence[Param], trial: optuna.trial.FrozenTrial | optuna.Trial) -> Any:
    return {
        param.name: (
            param.choices[trial.params[param.name]]
            if param.kind == "choice"
            else trial.params[param.name]
        )
        for param in params
    }


@dataclass(frozen=True, kw_only=True)
class _ReportingContext(TrainingContext):
    """A context whose validations are also reported (for pruning)."""

    report: Callable[[dict[str, float]], None]

    def validate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        metrics = super().validate(user_emb, item_emb)
        self.report(metrics)
        return metrics


class _Reporter:
    """Reports each validation of a trial at its step; prunes when Optuna says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric, self.step = trial, metric, 0

    def begin(self, first_step: int) -> None:
        self.step = first_step

    def __call__(self, metrics: dict[str, float]) -> None:
        self.step += 1
        self.trial.report(metrics[self.metric], self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation {self.metric} below the median at {self.step}")


def _objective(
    dataset: Dataset, base: Config, params: Sequence[Param], overrides: Sequence[str]
) -> Callable[[optuna.Trial], float]:
    metric = base.eval.select_metric

    def objective(trial: optuna.Trial) -> float:
        for param in params:
            _suggest(trial, param)
        config = trial_config(base, overrides, _values(params, trial))
        reporter = _Reporter(trial, metric)
        plain = build_context(dataset, config)
        fields = {field.name: getattr(plain, field.name) for field in dataclasses.fields(plain)}
        ctx = _ReportingContext(**fields, report=reporter)
        teacher = None
        try:
            if config.stage1.enabled:
                reporter.begin(0)
                teacher, teacher_summary = teacher_stage(ctx, config, None)
                trial.set_user_attr("teacher_valid", teacher_summary["valid"][metric])
            reporter.begin(STUDENT_STEP)
            _, summary = student_stage(ctx, config, teacher, None)
        except NonFiniteLossError as exc:
            raise optuna.TrialPruned(f"diverged: {exc}") from exc
        trial.set_user_attr("test", summary["test"])
        return float(summary["valid"][metric])

    return objective


def _study(spec: TuneSpec, seed: int) -> optuna.Study:
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        study_name=spec.study_name,
        storage=spec.storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        load_if_exists=True,
    )


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _worker(spec: TuneSpec, threads: int, seed_offset: int) -> None:
    """Run trials on the study until ``spec.trials`` have finished (one process)."""
    base, params, overrides = load_spaces(spec)
    if threads:
        base = dataclasses.replace(base, run=dataclasses.replace(base.run, threads=threads))
    study = _study(spec, base.run.seed + seed_offset)
    remaining = spec.trials - _finished(study)
    if remaining <= 0:
        return
    study.optimize(
        _objective(load_data(base), base, params, overrides),
        n_trials=remaining,
        callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=FINISHED)],
    )


def run_tuning(spec: TuneSpec, jobs: int = 1) -> TuneResult:
    """Run (or resume) the study, write the chosen config; return the choice."""
    if spec.trials < 1 or jobs < 1:
        raise ValueError(f"--trials and --jobs must be >= 1, got {spec.trials} and {jobs}")
    base, params, overrides = load_spaces(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if jobs == 1:
        _worker(spec, 0, 0)
    else:
        # the storage's schema is made once, here: workers creating it at the same time
        # race on its version row (a UNIQUE constraint error ends one of them)
        _study(spec, base.run.seed)
        threads = base.run.threads or max(1, len(os.sched_getaffinity(0)) // jobs)
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=_worker, args=(spec, threads, index)) for index in range(jobs)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [worker.exitcode for worker in workers if worker.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} tuning worker(s) failed (exit codes {failed})")
    study = _study(spec, base.run.seed)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise ValueError(f"study {spec.storage}: no trial completed (all pruned or failed)")
    best = study.best_trial
    tuned = trial_config(base, overrides, _values(params, best))
    path = spec.study_dir / TUNED_FILE
    _write_config(tuned, path, spec, best, base.eval.select_metric)
    return TuneResult(
        tuned_config=path,
        best_value=float(best.value or 0.0),
        best_params=_values(params, best),
        test=dict(best.user_attrs["test"]),
        finished=_finished(study),
        pruned=len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))),
    )


def _write_config(
    config: Config,
    path: Path,
    spec: TuneSpec,
    best: optuna.trial.FrozenTrial,
    metric: str,
) -> None:
    """The chosen config as TOML (None values left out: they are the defaults), with the
    original ``[tune]`` tables so the file can be tuned again."""
    resolved = config_to_dict(config, repo_root_of(path))
    tables: dict[str, Any] = {
        section: {key: value for key, value in values.items() if value is not None}
        for section, values in resolved.items()
    }
    raw = tomllib.loads(spec.config_path.read_text(encoding="utf-8"))
    tables[TUNE_SECTION] = raw[TUNE_SECTION]
    header = (
        f"# Tuned from {spec.config_path} by `python -m training tune` "
        f"(study {spec.study_dir / STUDY_FILE}, trial {best.number}{_variant_note(spec)}):\n"
        f"# validation {metric} {best.value:.4f}. Selection used validation only.\n"
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + tomli_w.dumps(tables), encoding="utf-8")
    os.replace(tmp, path)


def _variant_note(spec: TuneSpec) -> str:
    return f", variant {spec.variant!r}" if spec.variant else ""
