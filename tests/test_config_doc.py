"""docs/configuration.md is what `python -m scripts.config_doc` generates from the code."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import config_doc
from training.config import REPO_ROOT, Config, RunConfig


def test_committed_reference_matches_the_code() -> None:
    assert config_doc.DOC.read_text(encoding="utf-8") == config_doc.render(), (
        f"docs/configuration.md is stale: run {config_doc.COMMAND}"
    )


def test_every_key_and_setting_is_listed_with_its_default() -> None:
    text = config_doc.render()
    for field in dataclasses.fields(Config):
        assert f"`[{field.name}]`" in text
    assert '| `models_dir` | str | `"models"` |' in text
    assert "| `PROMPTMM_BUNDLE_PATH` | path | `models/tiktok` |" in text
    assert "| `REDIS_URL` | str, optional | unset |" in text


@dataclasses.dataclass(frozen=True)
class Undocumented:
    documented: int = 1
    """Has one."""
    bare: int = 2


def test_a_field_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_doc.attribute_docs(Undocumented) == {"documented": "Has one."}
    monkeypatch.setattr(config_doc, "_sections", lambda: iter([(["odd"], Undocumented)]))
    with pytest.raises(ValueError, match=r"Undocumented\.bare has no description"):
        config_doc.training_tables()
    assert set(config_doc.attribute_docs(RunConfig)) == {
        f.name for f in dataclasses.fields(RunConfig)
    }


@pytest.mark.slow
def test_check_fails_on_a_stale_file_and_the_command_rewrites_it(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    out.write_text(config_doc.render().replace("`2048`", "`1024`"), encoding="utf-8")
    command = [sys.executable, "-m", "scripts.config_doc", "--out", str(out)]
    stale = subprocess.run([*command, "--check"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert stale.returncode == 1 and "python -m scripts.config_doc" in stale.stderr
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    fresh = subprocess.run([*command, "--check"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
