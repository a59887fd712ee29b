"""scripts/refresh-model.sh against a real service: log -> fine-tune -> reload -> new version."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from bench.harness import (
    REPO_ROOT,
    TINY_TRAIN_TIMEOUT_S,
    ServiceProcess,
    clean_environ,
    run_checked,
)
from tests.integration.helpers import (
    item_ids_of,
    load_bundle,
    post_interactions,
    recommend,
    users_with_history,
)

pytestmark = pytest.mark.integration
SCRIPT = REPO_ROOT / "scripts" / "refresh-model.sh"


def run_refresh(service: ServiceProcess, data: Path, workdir: Path) -> str:
    env = {
        **clean_environ(),
        **{key: value for key, value in service.env.items() if key.startswith("PROMPTMM_")},
        "SERVICE_URL": service.url,
        "PYTHON": sys.executable,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        "bash",
        str(SCRIPT),
        str(REPO_ROOT / "configs" / "synthetic.toml"),
        "--set",
        f'data.path="{data}"',
        "--set",
        f'run.runs_dir="{workdir / "runs"}"',
        "--set",
        'run.device="cpu"',
        "--set",
        "run.progress=false",
    ]
    result = run_checked(command, env, TINY_TRAIN_TIMEOUT_S)
    return result.stdout


def test_refresh_fine_tunes_on_the_log_and_the_service_serves_it(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models" / tiny_models_root.name
    shutil.copytree(tiny_models_root, root)
    data = tiny_models_root.parents[1] / "data" / tiny_models_root.name
    stale = load_bundle(root)
    users = users_with_history(stale, 3)
    env = {"PROMPTMM_BUNDLE_PATH": str(root), "PROMPTMM_STORE_PATH": str(tmp_path / "s.db")}
    with ServiceProcess(env, tmp_path / "service.log") as service, service.client() as client:
        assert "nothing to fine-tune" in run_refresh(service, data, tmp_path)
        assert (root / "LATEST").read_text().strip() == stale.model_version

        posted: dict[str, list[str]] = {}
        for user in users:
            user_id = stale.user_ids[user]
            posted[user_id] = item_ids_of(recommend(client, user_id))[:2]
            post_interactions(client, user_id, posted[user_id])

        output = run_refresh(service, data, tmp_path)

        fresh = load_bundle(root)
        assert fresh.model_version != stale.model_version
        assert f'"model_version":"{fresh.model_version}"' in output.replace(" ", "")
        for user_id, items in posted.items():
            row = fresh.user_ids.index(user_id)
            assert set(items) <= {fresh.item_ids[int(i)] for i in fresh.seen_items(row)}
            answer = recommend(client, user_id)
            assert answer["model_version"] == fresh.model_version
            assert not set(item_ids_of(answer)) & set(items)
