"""The operator's view of a real uvicorn process: every line it writes is one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bench.harness import ServiceProcess

pytestmark = pytest.mark.integration


def test_every_line_of_a_real_process_is_json_with_the_access_lines(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "service.log"
    service = ServiceProcess(
        {
            "PROMPTMM_BUNDLE_PATH": str(tiny_models_root),
            "PROMPTMM_STORE_PATH": str(tmp_path / "store.sqlite3"),
            "PROMPTMM_LOG_LEVEL": "INFO",
        },
        log,
    )
    with service, httpx.Client(base_url=service.url, timeout=30.0) as client:
        version = client.get("/readyz").json()["model_version"]
        answer = client.post(
            "/recommend", json={"user_id": "0", "k": 5}, headers={"X-Request-ID": "it-1"}
        )
        refused = client.post(
            "/interactions",
            json={"user_id": "0", "item_ids": ["1"]},
            headers={"X-Request-ID": "it-2"},
        )

    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "it-1"
    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "it-2"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "service.recommender", "service.access"} <= loggers
    by_id = {line.get("request_id"): line for line in lines if line["logger"] == "service.access"}
    assert by_id["it-1"]["path"] == "/recommend" and by_id["it-1"]["status"] == 200
    assert by_id["it-1"]["model_version"] == version
    requests_2 = [line for line in lines if line.get("request_id") == "it-2"]
    assert len(requests_2) == 1 and requests_2[0]["status"] == 401
    assert "exc_info" not in requests_2[0]
