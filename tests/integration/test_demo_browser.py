"""The demo page in headless Chromium (Debian's ``chromium``, driven by Playwright) against a
real uvicorn process: pick a user, like an item, and the list changes; type an unknown user.

Skips only where Chromium is not installed (``scripts/test.sh`` installs it as root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imsave

from bench.harness import ServiceProcess
from bundle import read_bundle

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (it is in the dev extra)"
)

K = 8
COLOUR_MAPS = ("viridis", "plasma", "cividis", "magma", "cool")


def chromium() -> str:
    """Debian's Chromium (``PROMPTMM_CHROMIUM`` overrides the path); Playwright's own browser
    downloads are never used."""
    found = os.environ.get("PROMPTMM_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install -y chromium; scripts/test.sh "
            "installs it when run as root)"
        )
    return found


def write_demo_assets(item_ids: list[str], folder: Path) -> tuple[Path, Path, dict[str, str]]:
    """Titles for every item and a generated picture for every other one (the others show a
    placeholder); returns the pictures folder, the titles file and the titles."""
    pictures = folder / "pictures"
    pictures.mkdir()
    y, x = np.mgrid[0:24, 0:24] / 23
    for position, item in enumerate(item_ids[::2]):
        angle = position * 0.7
        waves = np.sin((3 + position % 5) * (x * np.cos(angle) + y * np.sin(angle)))
        imsave(pictures / f"{item}.png", waves, cmap=COLOUR_MAPS[position % len(COLOUR_MAPS)])
    titles = {
        item: f"Clip {item}: {['sea', 'city', 'snow', 'desert'][int(item) % 4]}"
        for item in item_ids
    }
    titles_path = folder / "titles.jsonl"
    titles_path.write_text(
        "".join(
            json.dumps({"item_id": item, "title": title}) + "\n" for item, title in titles.items()
        )
    )
    return pictures, titles_path, titles


def item_ids_on_screen(page: sync_api.Page) -> list[str]:
    ids: list[str] = page.locator("#recs li").evaluate_all("els => els.map(e => e.dataset.itemId)")
    return ids


def test_pick_a_user_like_an_item_and_watch_the_list_change(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    executable = chromium()
    bundle = read_bundle(tiny_models_root)
    pictures, titles_path, titles = write_demo_assets(bundle.item_ids, tmp_path)
    service = ServiceProcess(
        {
            "PROMPTMM_BUNDLE_PATH": str(tiny_models_root),
            "PROMPTMM_STORE_PATH": str(tmp_path / "store.sqlite3"),
            "PROMPTMM_LOG_LEVEL": "WARNING",
            "PROMPTMM_DEMO": "true",
            "PROMPTMM_DEMO_IMAGES": str(pictures),
            "PROMPTMM_DEMO_TITLES": str(titles_path),
        },
        tmp_path / "service.log",
    )
    elsewhere: list[str] = []
    errors: list[str] = []
    with service, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.on("request", lambda r: r.url.startswith(service.url) or elsewhere.append(r.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{service.url}/demo")
        page.fill("#k", str(K))

        user = bundle.user_ids[3]
        page.select_option("#user-pick", user)
        rows = page.locator("#recs li")
        sync_api.expect(rows).to_have_count(K)
        before = item_ids_on_screen(page)
        sync_api.expect(page.locator("#fact-user")).to_have_text(user)
        sync_api.expect(page.locator("#fact-version")).to_have_text(bundle.model_version)
        sync_api.expect(page.locator("#fact-fallback")).to_have_text("personal")
        sync_api.expect(page.locator("#fact-latency")).to_have_text(re.compile(r"\d+\.\d ms"))
        assert re.fullmatch(r"[0-9a-f]{32}", page.locator("#fact-request").inner_text())
        assert rows.locator(".title").all_inner_texts() == [titles[item] for item in before]
        with_picture = [item for item in before if (pictures / f"{item}.png").exists()]
        assert with_picture, "the list should show some of the generated pictures"
        for item in with_picture:
            picture = page.locator(f'#recs li[data-item-id="{item}"] img')
            sync_api.expect(picture).to_be_visible()
            picture.evaluate("img => img.decode()")
            assert picture.evaluate("img => img.naturalWidth") == 24

        liked = before[1]
        like = page.locator(f'#recs li[data-item-id="{liked}"] .like')
        like.click()
        sync_api.expect(page.locator("#status")).to_contain_text("missing X-API-Key")
        assert item_ids_on_screen(page) == before, "a refused like must not change the list"

        page.fill("#api-key", service.api_key)
        like.click()
        sync_api.expect(page.locator(f'#recs li[data-item-id="{liked}"]')).to_have_count(0)
        sync_api.expect(page.locator("#status")).to_contain_text(f"liked {liked}")
        after = item_ids_on_screen(page)
        entered = [item for item in after if item not in before]
        assert len(after) == K and liked not in after and entered
        new_rows = page.locator("#recs li.new").evaluate_all(
            "els => els.map(e => e.dataset.itemId)"
        )
        assert new_rows == entered
        page.screenshot(path=tmp_path / "demo.png")

        page.fill("#user-id", "someone-new")
        page.click("#show")
        sync_api.expect(page.locator("#fact-user")).to_have_text("someone-new")
        sync_api.expect(page.locator("#fact-fallback")).to_have_text(
            "fallback: popular (unknown user)"
        )
        sync_api.expect(rows).to_have_count(K)
        browser.close()

    assert elsewhere == [], "the page must load nothing from another origin"
    refused = "the server responded with a status of 401"  # the like without a key
    assert [error for error in errors if refused not in error] == [], "e.g. a CSP violation"
