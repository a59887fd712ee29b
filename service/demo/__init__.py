"""What the demo page shows beside the ids: item titles and pictures, read once at start-up.

``demo_titles`` is a JSON Lines file, one object per line with the item's id (the field named
by ``demo_titles_id_field``; a JSON integer is read as its decimal form) and a ``title``.
``demo_images`` is a folder of pictures named ``<item id>.<jpg|jpeg|png|webp|gif>``; it is
listed once, keeping regular files only (no symbolic links, no subfolders), so a request can
only ever reach a file of that listing, looked up by a catalog item id; nothing is built from
the request's path. The static page itself lives in ``static/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


class DemoFileError(ValueError):
    """A demo titles file that cannot be read as configured (names the file and line)."""


@dataclass(frozen=True)
class Picture:
    path: Path
    media_type: str


@dataclass(frozen=True)
class DemoCatalog:
    """Titles and pictures by item id (any id: the routes check the served catalog)."""

    titles: dict[str, str]
    pictures: dict[str, Picture]

    @classmethod
    def load(cls, titles: Path | None, id_field: str, images: Path | None) -> DemoCatalog:
        return cls(
            read_titles(titles, id_field) if titles else {},
            list_pictures(images) if images else {},
        )


def read_titles(path: Path, id_field: str) -> dict[str, str]:
    """``{item id: title}`` from a JSON Lines file; a bad line is a :class:`DemoFileError`."""
    titles: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DemoFileError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DemoFileError(f"{where}: expected a JSON object")
            item, title = row.get(id_field), row.get("title")
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise DemoFileError(
                    f"{where}: no string or integer {id_field!r} (set demo_titles_id_field to "
                    "the field that holds the item id)"
                )
            if not isinstance(title, str):
                raise DemoFileError(f"{where}: no string 'title'")
            titles[str(item)] = title
    return titles


def list_pictures(folder: Path) -> dict[str, Picture]:
    """``{item id: picture}`` for the regular files of ``folder`` with a picture suffix; of two
    files for one id (``7.jpg``, ``7.png``) the first by name wins."""
    root = folder.resolve()
    pictures: dict[str, Picture] = {}
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        suffix = Path(entry.name).suffix.lower()
        if suffix not in IMAGE_TYPES or not entry.is_file(follow_symlinks=False):
            continue
        item = entry.name[: -len(suffix)]
        pictures.setdefault(item, Picture(root / entry.name, IMAGE_TYPES[suffix]))
    return pictures
