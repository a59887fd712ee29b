"""What the benchmarks share: the tiktok bundle, machine facts, latency stats, Markdown output.

The service is started with the harness (:mod:`bench.harness`), so a
benchmark runs exactly the container's start command, bound to a loopback port.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bench.harness import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
TIKTOK_MODELS = REPO_ROOT / "models" / "tiktok"
TIKTOK_CONFIG = REPO_ROOT / "configs" / "tiktok.toml"

logger = logging.getLogger(__name__)


def setup_logging() -> None:
    """INFO logs of the benchmark, without one line per HTTP request."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def shared_datasets() -> Path:
    """``<repo>/../shared/datasets``, or ``$PROMPTMM_SHARED_DATASETS``."""
    env = os.environ.get("PROMPTMM_SHARED_DATASETS")
    return Path(env) if env else REPO_ROOT / ".." / "shared" / "datasets"


def torch_env() -> dict[str, str]:
    """The environment for a torch subprocess on this shared 2-core machine."""
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def train(
    config: Path,
    overrides: Sequence[str] = (),
    *,
    stage: str = "run",
    options: Sequence[str] = (),
) -> None:
    """Run ``python -m training STAGE CONFIG OPTIONS --set ...``; raise if it fails."""
    command = [sys.executable, "-m", "training", stage, str(config), *options]
    for override in overrides:
        command += ["--set", override]
    logger.info("training: %s", shlex.join(command))
    subprocess.run(command, cwd=REPO_ROOT, env=torch_env(), check=True)


def bench_service(
    bundle: Path,
    store: Path,
    log: Path,
    workers: int = 1,
    settings: Mapping[str, str] | None = None,
    app: str | None = None,
) -> ServiceProcess:
    """The service (the container's command) on ``bundle`` with a fresh SQLite ``store``.

    Warnings-only logs to ``log``, no access log, ``workers`` uvicorn workers, ``settings``
    as extra environment (``PROMPTMM_*``), ``app`` in place of the service's app factory;
    not started.
    """
    from bench.harness import ServiceProcess

    env = {
        "PROMPTMM_BUNDLE_PATH": str(bundle.resolve()),
        "PROMPTMM_STORE_PATH": str(store),
        "PROMPTMM_LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    extra = ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return ServiceProcess(env, log, extra_args=extra, app=app)


def ensure_tiktok_bundle(bundle: Path | None) -> Path:
    """``bundle`` if given, else ``models/tiktok`` (trained with configs/tiktok.toml if absent)."""
    if bundle is not None:
        return bundle
    if not (TIKTOK_MODELS / "LATEST").is_file():
        logger.info("no bundle in %s: training %s", TIKTOK_MODELS, TIKTOK_CONFIG)
        train(TIKTOK_CONFIG, [f"run.models_dir={REPO_ROOT / 'models'}"])
    return TIKTOK_MODELS


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPU cores (nproc), {cpu_model()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average (1, 5, 15 min) at the end: "
        f"{load}"
    )


def invoked_command() -> str:
    """The command line that started this benchmark, repository-relative."""
    return shlex.join(["python", "-m", sys.modules["__main__"].__spec__.name, *sys.argv[1:]])


@dataclass(frozen=True)
class LatencyStats:
    """Client-side latencies of one measured phase."""

    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cells(self) -> list[object]:
        """Requests, errors, req/s, p50 ms, p99 ms: the table cells every report shows."""
        return [
            self.requests,
            self.errors,
            f"{self.throughput:,.0f}",
            f"{self.p50_ms:.2f}",
            f"{self.p99_ms:.2f}",
        ]

    @classmethod
    def of(
        cls, name: str, latencies_s: Sequence[float], errors: int, seconds: float
    ) -> LatencyStats:
        ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
        if ms.size == 0:
            return cls(name, 0, errors, seconds, float("nan"), float("nan"), float("nan"))
        return cls(
            name=name,
            requests=int(ms.size),
            errors=errors,
            seconds=seconds,
            p50_ms=float(np.percentile(ms, 50)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
        )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, title: str, sections: Sequence[str]) -> str:
    """Write a Markdown report headed by date, machine and command; return its text."""
    header = [
        f"# {title}",
        "",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {machine_line()}",
        f"- command: `{invoked_command()}`",
        "",
    ]
    text = "\n".join(header) + "\n" + "\n\n".join(sections).rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def response_cache_counts(url: str) -> tuple[int, int]:
    """(hits, misses) of the service's response cache, read from its ``/metrics``."""
    import httpx

    counts = {"hit": 0, "miss": 0}
    for line in httpx.get(f"{url}/metrics", timeout=10.0).text.splitlines():
        for result in counts:
            if line.startswith(f'promptmm_response_cache_total{{result="{result}"}}'):
                counts[result] = int(float(line.split()[-1]))
    return counts["hit"], counts["miss"]
