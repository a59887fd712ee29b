"""``python -m service.build_index PATH``: build a bundle's approximate index and save it beside
the bundle, so that the service loads it at start instead of building it.

``PATH`` is a bundle directory or a models root (its ``LATEST`` version). The index settings
are the service's (``PROMPTMM_INDEX_KIND``, ``PROMPTMM_HNSW_*``, ``PROMPTMM_IVF_*``,
``PROMPTMM_EXACT_MAX_ITEMS``); an exact index is never saved, so nothing is written for it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bundle import read_bundle
from service.config import load_settings
from service.index_files import SAVED_KINDS, index_kind, load_index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.build_index", description=__doc__)
    parser.add_argument("path", type=Path, help="a bundle directory or a models root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    settings = load_settings(allow_open_writes=True, save_index=True)
    bundle = read_bundle(args.path)
    kind = index_kind(settings, bundle.n_items)
    if kind not in SAVED_KINDS:
        print(f"{bundle.n_items} items are served by an {kind} index: nothing to save")
        return
    load_index(bundle, args.path, settings)


if __name__ == "__main__":
    main()
