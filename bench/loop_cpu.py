"""Training-loop speed on the CPU, this tree against a base revision, interleaved in one run.

    PYTHONPATH=. python -m bench.loop_cpu --base 6a1cd97 --repeats 2 \\
        --out bench/results/loop-cpu-tiktok-knn.md

The base revision's ``training``/``bundle``/``configs`` are extracted with ``git archive``
into a temporary folder; each repeat runs ``python -m training run CONFIG`` (cut to
``--epochs`` per stage, validation every 3rd epoch as the config says) once in the base tree
and once in this one, alternating, so both see the same machine load. Per stage it reports
the median seconds of the epochs *without* validation (the training loop alone: sampling,
propagation, losses, optimiser) as epochs per second, the median seconds of a validated
epoch minus that (the validation), and each run's wall time and CPU time (user + system;
both trees run the same epochs, so it compares the work done). The tables compare ratios
within one run: on a shared machine the absolute numbers move with the load.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, machine_line, shared_datasets, torch_env

STAGES = ("teacher", "student")


def extract(revision: str, into: Path) -> Path:
    """The base revision's code, unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "archive", revision, "training", "bundle", "configs", "pyproject.toml"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_once(tree: Path, config: str, epochs: int, threads: int, out: Path) -> dict[str, Any]:
    """One cut-down pipeline run in ``tree``: its per-epoch records, wall and CPU time."""
    overrides = [
        f"run.threads={threads}",
        f"stage1.max_epochs={epochs}",
        f"stage2.max_epochs={epochs}",
        "stage1.patience=1000",
        "stage2.patience=1000",
        f"run.runs_dir={json.dumps(str(out / 'runs'))}",
        f"run.models_dir={json.dumps(str(out / 'models'))}",
        "run.progress=false",
        "run.device='cpu'",
    ]
    command = [sys.executable, "-m", "training", "run", config]
    for override in overrides:
        command += ["--set", override]
    env = {**torch_env(), "PYTHONPATH": str(tree)}
    env.setdefault("PROMPTMM_SHARED_DATASETS", str(shared_datasets().resolve()))
    started, cpu_before = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} in {tree} failed:\n{done.stderr[-2000:]}")
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    (run_dir,) = (out / "runs").iterdir()
    history = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {"wall": wall, "cpu": cpu, "history": history}


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_times(history: dict[str, list[dict[str, Any]]], stage: str) -> tuple[float, float]:
    """(median seconds of a training-only epoch, median extra seconds of a validation)."""
    records = history[stage]
    plain = [r["seconds"] for r in records if "valid_recall@20" not in r]
    validated = [r["seconds"] for r in records if "valid_recall@20" in r]
    train = statistics.median(plain)
    return train, statistics.median(validated) - train


def report(results: dict[str, list[dict[str, Any]]], base: str, command: str) -> str:
    lines = [
        "# Training loop on the CPU: this tree against the base revision",
        "",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {machine_line()}; shared with other engineers' jobs, so compare the",
        "  ratios (the runs alternate within one invocation), not the absolute seconds",
        f"- command: `{command}`",
        f"- base: `{base}`; repeats: {len(results['base'])} per tree",
        "- epochs/s: 1 / median seconds of the epochs without validation; validation s: median",
        "  seconds of a validated epoch minus that",
        "",
        "| stage | base epochs/s | this epochs/s | ratio | base validation s | this validation s |",
        "|---|---|---|---|---|---|",
    ]
    for stage in STAGES:
        cells = {}
        for tree in ("base", "this"):
            times = [stage_times(r["history"], stage) for r in results[tree]]
            cells[tree] = (
                statistics.median(t for t, _ in times),
                statistics.median(v for _, v in times),
            )
        ratio = cells["base"][0] / cells["this"][0]
        lines.append(
            f"| {stage} | {1 / cells['base'][0]:.3f} | {1 / cells['this'][0]:.3f} "
            f"| {ratio:.2f} | {cells['base'][1]:.2f} | {cells['this'][1]:.2f} |"
        )
    walls = {tree: [round(r["wall"], 1) for r in results[tree]] for tree in results}
    cpus = {tree: [round(r["cpu"], 1) for r in results[tree]] for tree in results}
    ratio = statistics.median(cpus["base"]) / statistics.median(cpus["this"])
    lines += [
        "",
        f"Wall seconds per run (whole process): base {walls['base']}, this {walls['this']}.",
        f"CPU seconds per run (user + system, same epochs in both): base {cpus['base']}, "
        f"this {cpus['this']}; base / this of the medians: {ratio:.2f}. On a loaded machine",
        "the CPU seconds move less than the wall seconds (waiting for a core costs none).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--config", default="configs/tiktok-knn.toml")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per stage (default 6)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=0, help="run.threads (default 0: every core)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory(prefix="loop-cpu-") as tmp:
        Path(tmp, "base").mkdir()
        base_tree = extract(args.base, Path(tmp, "base"))
        for repeat in range(args.repeats):
            for tree, root in (("base", base_tree), ("this", REPO_ROOT)):
                out = Path(tmp, f"{tree}-{repeat}")
                results[tree].append(run_once(root, args.config, args.epochs, args.threads, out))
                print(f"{tree} repeat {repeat}: {results[tree][-1]['wall']:.1f}s", flush=True)
    command = shlex.join(["python", "-m", "bench.loop_cpu", *(argv or sys.argv[1:])])
    text = report(results, args.base, command)
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
