"""Cold items ranked from content: random, content-kNN mean, ridge and the ALDI-style map.

    PYTHONPATH=. python -m bench.cold_start configs/tiktok-knn.toml --models models/cold \\
        --seeds 0 1 2 --out bench/results/cold-tiktok.md

For each protocol (:mod:`training.coldsplit`) and seed it reads the student that
``bench.cold_train`` exported for it, chooses every method's setting and calibration scale
and the method itself by validation Recall@20 over all items (:func:`training.coldstart.select_map`;
natural protocol: as many warm items as there are cold ones are held out as if cold), refits
the maps on all warm items, gives the cold items their content embeddings and scores the
test split with the offline evaluator (:func:`training.evaluate.evaluate`; training and
validation items masked): overall, on warm-item targets and on cold-item targets.
``as trained`` is the student unchanged (cold items keep the embedding they were initialised
with). Test numbers choose nothing.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.cold_train import cold_split, models_root
from bench.common import setup_logging
from bundle import read_bundle
from training.coldsplit import PROTOCOLS, ColdSplit, split_targets
from training.coldstart import METHOD_ORDER, PARTS, pseudo_cold_count, select_map, with_content
from training.config import load_config
from training.evaluate import evaluate
from training.pipeline import load_data

logger = logging.getLogger(__name__)

AS_TRAINED = "as trained"
CHOSEN = "**chosen** (the validation-chosen method of each seed)"
COLUMNS = tuple(f"{part} {metric}" for part in PARTS for metric in ("R@20", "N@20"))


def test_metrics(split: ColdSplit, users: np.ndarray, items: np.ndarray) -> dict[str, float]:
    """Overall / warm / cold test R@20 and N@20 with the offline evaluator."""
    exclude = [split.dataset.train, split.valid]
    result = {}
    for part, target in split_targets(split.test, split.cold_items).items():
        values = evaluate(
            torch.from_numpy(users), torch.from_numpy(items), target, exclude, ks=(20,)
        )
        result[f"{part} R@20"] = values["recall@20"]
        result[f"{part} N@20"] = values["ndcg@20"]
    return result


def pseudo_cold(split: ColdSplit) -> int:
    """Natural protocol: warm items held out as if cold (as at export); hold-out: none."""
    if split.protocol != "natural":
        return 0
    return pseudo_cold_count(int(split.cold_items.sum()), int(split.warm_items.sum()))


def run_one(config_path: Path, models: Path, protocol: str, seed: int) -> list[dict[str, Any]]:
    config = load_config(config_path)
    dataset = load_data(config)
    split = cold_split(protocol, dataset, seed)
    bundle = read_bundle(models_root(models, protocol, seed) / dataset.name)
    if bundle.data_fingerprint != split.dataset.fingerprint:
        raise ValueError(f"{bundle.model_version} was not trained on the {protocol} split")
    users, items = bundle.user_embeddings, bundle.item_embeddings
    selection = select_map(
        users,
        items,
        dataset.features,
        split.dataset.train,
        split.valid,
        split.cold_items,
        pseudo_cold=pseudo_cold(split),
        seed=seed,
    )
    cold = np.flatnonzero(split.cold_items)
    rows = [
        {
            "protocol": protocol,
            "seed": seed,
            "method": AS_TRAINED,
            "setting": "",
            **test_metrics(split, users, items),
        }
    ]
    for method in METHOD_ORDER:
        fit = selection.per_method.get(method)
        if fit is None:
            continue
        embedded = with_content(items, fit, dataset.features, cold, seed)
        rows.append(
            {
                "protocol": protocol,
                "seed": seed,
                "method": method + (" (chosen)" if method == selection.chosen else ""),
                "setting": f"{fit.candidate.label}, level {fit.level:g}, scale {fit.scale:g}",
                "valid R@20": fit.valid["overall"]["recall@20"],
                "valid cold R@20": fit.valid.get("cold", {}).get("recall@20", float("nan")),
                **test_metrics(split, users, embedded),
            }
        )
        logger.info("%s seed %d %s: %s", protocol, seed, method, rows[-1])
    return rows


def _mean_std(values: Sequence[float]) -> str:
    array = np.asarray(values, dtype=np.float64)
    return f"{array.mean():.4f} ± {array.std(ddof=1) if array.size > 1 else 0.0:.4f}"


def report(rows: list[dict[str, Any]], command: str, dataset: str) -> str:
    seeds = sorted({row["seed"] for row in rows})
    lines = [
        f"# Cold items from content: {dataset}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({platform.machine()}, "
        "2 CPU cores shared with ~7 engineers' jobs: timings are not measured here), seeds "
        f"{seeds}.",
        "",
        f"    {command}",
        "",
        "Students: LightGCN alone (stage 1 off, no KD) of the config, trained per protocol and "
        "seed by `bench.cold_train`. Selection (`training.coldstart.select_map`), on validation "
        "only: the highest cold Recall@20 among the calibrations that keep warm Recall@20 within "
        "1 % of the student without cold items; test chooses nothing. `cold` = test targets "
        "on items without a training interaction, "
        "ranked among all items; `warm` = the other targets; each averaged over the users "
        "that have such targets.",
        "",
    ]
    for protocol in PROTOCOLS:
        subset = [row for row in rows if row["protocol"] == protocol]
        if not subset:
            continue
        lines += [
            f"## Protocol {protocol}: mean ± std over seeds {sorted({r['seed'] for r in subset})}",
            "",
        ]
        lines.append("| method | " + " | ".join(COLUMNS) + " |")
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        methods = list(dict.fromkeys(row["method"].replace(" (chosen)", "") for row in subset))
        groups = {
            method: [r for r in subset if r["method"].replace(" (chosen)", "") == method]
            for method in methods
        }
        groups[CHOSEN] = [r for r in subset if r["method"].endswith(" (chosen)")]
        for method, picked in groups.items():
            cells = [_mean_std([r[c] for r in picked]) for c in COLUMNS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Per seed (setting and scale chosen on validation):", ""]
        lines.append(
            "| seed | method | setting | valid R@20 | valid cold R@20 | "
            + " | ".join(COLUMNS)
            + " |"
        )
        lines.append("|---" * (len(COLUMNS) + 5) + "|")
        for row in subset:
            valid = [
                f"{row[key]:.4f}" if key in row else "" for key in ("valid R@20", "valid cold R@20")
            ]
            cells = [f"{row[c]:.4f}" for c in COLUMNS]
            lines.append(
                f"| {row['seed']} | {row['method']} | {row['setting']} | "
                + " | ".join(valid + cells)
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--models", type=Path, default=Path("models/cold"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    rows = []
    for protocol in args.protocols:
        for seed in args.seeds:
            rows += run_one(args.config, args.models.resolve(), protocol, seed)
    dataset = load_data(load_config(args.config)).name
    command = "PYTHONPATH=. python -m bench.cold_start " + shlex.join(sys.argv[1:])
    text = report(rows, command, dataset)
    args.out.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
