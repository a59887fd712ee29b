"""Data-parallel training on the CPU: 2 gloo processes, by torchrun and by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bundle import read_bundle
from training.config import REPO_ROOT, load_config
from training.distributed import Distributed, current
from training.pipeline import run_pipeline
from training.runs import SUMMARY_FILE

SYNTHETIC = REPO_ROOT / "configs" / "synthetic.toml"
# Two ranks halve the steps of an epoch (batch_size is per rank) and sample other triples:
# on the synthetic set, seeds 0-2 gave student test Recall@20 0.463-0.485 in one process and
# 0.457-0.463 in two, at most 0.028 apart for the same seed (2026-12-04).
TOLERANCE = 0.05


def _overrides(data: Path, out: Path) -> list[str]:
    return [
        f"data.path={json.dumps(str(data))}",
        f"run.runs_dir={json.dumps(str(out / 'runs'))}",
        f"run.models_dir={json.dumps(str(out / 'models'))}",
        "run.device='cpu'",
        "run.progress=false",
    ]


def test_torchrun_with_two_gloo_processes_exports_a_bundle_close_to_one_process(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    overrides = _overrides(synthetic_dataset, tmp_path / "ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "training", "run", str(SYNTHETIC)]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on cpu x 2 processes" in done.stdout
    assert done.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 does not

    runs = list((tmp_path / "ddp" / "runs").iterdir())
    assert len(runs) == 1  # rank 1 wrote no run folder of its own
    summary = json.loads((runs[0] / SUMMARY_FILE).read_text())
    assert summary["processes"] == 2
    for stage in ("teacher", "student"):
        assert summary[stage]["samples_per_s"] > 0 and summary[stage]["epoch_s"] > 0
    models = tmp_path / "ddp" / "models" / synthetic_dataset.name
    assert len([p for p in models.iterdir() if p.is_dir()]) == 1
    bundle = read_bundle(models)
    assert bundle.metrics["test"] == summary["student"]["test"]

    single = run_pipeline(load_config(SYNTHETIC, _overrides(synthetic_dataset, tmp_path / "one")))
    assert single.summary["processes"] == 1
    for split in ("valid", "test"):
        for stage in ("teacher", "student"):
            one = single.summary[stage][split]["recall@20"]
            two = summary[stage][split]["recall@20"]
            assert abs(one - two) <= TOLERANCE, (stage, split, one, two)


def _rank_checks(rank: int, store_path: str, results: dict[int, list[float]]) -> None:
    store = dist.FileStore(store_path, 2)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    try:
        me = current()
        param = torch.nn.Parameter(torch.full((3, 2), float(rank)))
        me.broadcast_parameters([param])
        unused = torch.nn.Parameter(torch.zeros(2))  # no gradient on any rank: left alone
        param.grad = torch.full((3, 2), float(rank + 1))
        me.average_gradients([param, unused])
        calls: list[int] = []
        shared = me.from_main(lambda: calls.append(rank) or f"from rank {rank}")
        results[rank] = [
            float(param.detach().sum()),
            float(param.grad.mean()),
            float(unused.grad is None),
            float(shared == "from rank 0"),
            float(calls == ([0] if rank == 0 else [])),
            float(me.seed(7) == 7),
        ]
    finally:
        dist.destroy_process_group()


def test_ranks_start_equal_average_gradients_and_share_rank_0s_result(tmp_path: Path) -> None:
    results = mp.Manager().dict()
    mp.spawn(_rank_checks, args=(str(tmp_path / "store"), results), nprocs=2)
    # rank 0's zeros were broadcast; gradients 1 and 2 average to 1.5
    assert results[0] == [0.0, 1.5, 1.0, 1.0, 1.0, 1.0]
    assert results[1] == [0.0, 1.5, 1.0, 1.0, 1.0, 0.0]  # rank 1 samples its own stream


def test_a_single_process_is_one_rank_that_does_everything() -> None:
    one = current()
    assert one == Distributed() and one.is_main and not one.enabled
    param = torch.nn.Parameter(torch.ones(2))
    param.grad = torch.full((2,), 3.0)
    one.average_gradients([param])
    assert param.grad.tolist() == [3.0, 3.0]
    assert one.from_main(lambda: 5) == 5
    assert one.device(torch.device("cpu")) == torch.device("cpu")


def test_a_bad_rank_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.distributed import process_group

    monkeypatch.setenv("WORLD_SIZE", "two")
    with (
        pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"),
        process_group("cpu"),
    ):
        pass
