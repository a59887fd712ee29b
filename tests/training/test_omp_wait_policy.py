"""`python -m training` sets OMP_WAIT_POLICY before torch loads its OpenMP runtime (which
reads it once, at load), and leaves a value the caller set alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import REPO_ROOT

# Loaded by the child interpreter at start-up (sitecustomize on PYTHONPATH): when something
# first imports torch, it writes the OMP_WAIT_POLICY that torch's OpenMP runtime will see.
WATCH_TORCH = """\
import os
import sys


class _WatchTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            with open(os.environ["OMP_SEEN_BY_TORCH"], "w", encoding="utf-8") as out:
                out.write(os.environ.get("OMP_WAIT_POLICY", "<unset>"))
        return None


sys.meta_path.insert(0, _WatchTorch())
"""


def _policy_seen_by_torch(tmp_path: Path, caller_policy: str | None) -> str:
    (tmp_path / "sitecustomize.py").write_text(WATCH_TORCH, encoding="utf-8")
    seen = tmp_path / "seen.txt"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])
    env["OMP_SEEN_BY_TORCH"] = str(seen)
    if caller_policy is not None:
        env["OMP_WAIT_POLICY"] = caller_policy
    # `run` imports the pipeline (and torch) before it reads the config; the missing dataset
    # then ends the command with an error, after torch has loaded.
    missing = tmp_path / "no-such-dataset"
    result = subprocess.run(
        [sys.executable, "-m", "training", "run", str(REPO_ROOT / "configs" / "synthetic.toml"),
         "--set", f'data.path="{missing}"', "--set", f'run.runs_dir="{tmp_path / "runs"}"'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0, "the command should stop on the missing dataset"
    assert str(missing) in result.stderr, result.stderr
    assert seen.is_file(), f"torch was never imported: {result.stderr}"
    return seen.read_text(encoding="utf-8")


@pytest.mark.slow
def test_policy_is_passive_before_torch_loads(tmp_path: Path) -> None:
    assert _policy_seen_by_torch(tmp_path, None) == "PASSIVE"


@pytest.mark.slow
def test_a_policy_set_by_the_caller_wins(tmp_path: Path) -> None:
    assert _policy_seen_by_torch(tmp_path, "ACTIVE") == "ACTIVE"
