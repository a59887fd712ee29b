"""The run folder: ``<runs_dir>/<dataset>-<timestamp>/`` with the resolved config, per-epoch
metrics (JSON, both stages), the learning curves (PNG, like the paper's Fig. 5) and a summary.

Every file is written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.png"
SUMMARY_FILE = "summary.json"
TEACHER_CKPT = "teacher.pt"
STUDENT_CKPT = "student.pt"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunDir:
    """One run's folder and its per-epoch history, keyed by stage name."""

    path: Path
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def create(cls, runs_dir: Path, dataset: str, now: datetime | None = None) -> RunDir:
        """Make a fresh ``<dataset>-<YYYYmmddTHHMMSS>`` folder (suffixed if it exists)."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
        runs_dir.mkdir(parents=True, exist_ok=True)
        base = runs_dir / f"{dataset}-{stamp}"
        path, suffix = base, 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                suffix += 1
                path = base.with_name(f"{base.name}-{suffix}")
        logger.info("run folder: %s", path)
        return cls(path=path)

    def save_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.path / CONFIG_FILE, config)

    def log_epoch(self, stage: str, record: dict[str, Any]) -> None:
        """Append one epoch's record (loss parts, validation metrics) and rewrite metrics.json."""
        self.history.setdefault(stage, []).append(record)
        write_json_atomic(self.path / METRICS_FILE, self.history)

    def save_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / SUMMARY_FILE, summary)

    def plot(self, metric: str = "recall@20") -> Path:
        """Draw loss and validation ``metric`` per epoch for every stage into curve.png."""
        figure, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for stage, records in self.history.items():
            epochs = [r["epoch"] for r in records]
            loss_ax.plot(epochs, [r["loss"] for r in records], label=stage)
            evaluated = [r for r in records if f"valid_{metric}" in r]
            metric_ax.plot(
                [r["epoch"] for r in evaluated],
                [r[f"valid_{metric}"] for r in evaluated],
                marker="o",
                markersize=3,
                label=stage,
            )
        loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
        metric_ax.set(xlabel="epoch", ylabel=f"validation {metric}", title=f"validation {metric}")
        for axis in (loss_ax, metric_ax):
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend()
        figure.tight_layout()
        target = self.path / CURVE_FILE
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.png")
        figure.savefig(tmp, dpi=100)
        plt.close(figure)
        os.replace(tmp, target)
        return target
