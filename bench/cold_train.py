"""Train the students the cold-item benchmark maps content onto (one per protocol and seed).

    PYTHONPATH=. python -m bench.cold_train configs/tiktok-knn.toml --seeds 0 1 2 \\
        --protocols natural holdout --out models/cold

Each run trains the config's pipeline (teacher, then student, then export) with ``run.seed``
= the seed, on the protocol's training data (:mod:`training.coldsplit`; the held-out items
are drawn with the same seed), and exports the bundle to
``<out>/<protocol>-seed<seed>/<dataset>/``. A run whose bundle exists is skipped, so the
command resumes. ``bench.cold_start`` reads these bundles.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.common import setup_logging
from training.coldsplit import PROTOCOLS, ColdSplit, holdout_split, natural_split
from training.config import Config, apply_overrides, load_config
from training.data import Dataset
from training.pipeline import load_data, run_pipeline

logger = logging.getLogger(__name__)


def cold_split(protocol: str, dataset: Dataset, seed: int) -> ColdSplit:
    """The protocol's split of ``dataset`` (the held-out items drawn with ``seed``)."""
    if protocol == "natural":
        return natural_split(dataset)
    if protocol == "holdout":
        return holdout_split(dataset, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def models_root(out: Path, protocol: str, seed: int) -> Path:
    return out / f"{protocol}-seed{seed}"


def train(config: Config, protocol: str, seed: int, out: Path) -> Path:
    """The bundle directory of ``protocol``/``seed`` under ``out``, trained when absent."""
    dataset = load_data(config)
    root = models_root(out, protocol, seed)
    if (root / dataset.name / "LATEST").is_file():
        logger.info("%s exists; skipped", root)
        return root / dataset.name
    split = cold_split(protocol, dataset, seed)
    seeded = apply_overrides(config, [f"run.seed={seed}", f'run.models_dir="{root}"'])
    result = run_pipeline(seeded, dataset=split.dataset)
    logger.info("%s seed %d: %s", protocol, seed, result.summary.get("student", {}).get("test"))
    return root / dataset.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--out", type=Path, default=Path("models/cold"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    setup_logging()
    config = load_config(args.config, args.overrides)
    for seed in args.seeds:
        for protocol in args.protocols:
            train(config, protocol, seed, args.out.resolve())


if __name__ == "__main__":
    main()
