"""``python -m training data {stats,synth}``: dataset sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.data.loader import FORMATS, detect_format, load_dataset
from training.data.stats import compute_stats, format_stats
from training.data.synthetic import DEFAULT_MODALITIES, write_synthetic


def register(sub: Any) -> None:
    """Add the ``data`` group to ``sub`` (an argparse sub-parsers action)."""
    data = sub.add_parser("data", help="inspect or create datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    stats = commands.add_parser("stats", help="print a dataset folder's statistics")
    stats.add_argument("path", type=Path, help="dataset folder")
    stats.add_argument("--format", choices=FORMATS, default=None, help="default: detected")
    stats.set_defaults(handler=run_stats)

    synth = commands.add_parser("synth", help="write a seeded synthetic dataset (MMRec layout)")
    synth.add_argument("out", type=Path, help="output folder (its name names the .inter file)")
    synth.add_argument("--users", type=int, default=300)
    synth.add_argument("--items", type=int, default=200)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--density", type=float, default=0.05)
    synth.add_argument(
        "--modality",
        action="append",
        type=_modality,
        metavar="NAME=DIM",
        help="a feature modality and its width, repeatable (default: image=32 text=16)",
    )
    synth.set_defaults(handler=run_synth)


def run_stats(args: argparse.Namespace) -> int:
    """Load ``args.path`` and print its statistics."""
    fmt = args.format or detect_format(args.path)
    dataset = load_dataset(args.path, fmt)
    print(format_stats(compute_stats(dataset), fmt))
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """Write the synthetic dataset and print where it went."""
    out = write_synthetic(
        args.out,
        n_users=args.users,
        n_items=args.items,
        seed=args.seed,
        density=args.density,
        modalities=dict(args.modality) if args.modality else DEFAULT_MODALITIES,
    )
    dataset = load_dataset(out, "mmrec")
    print(f"wrote {out}: {dataset.n_users} users, {dataset.n_items} items, {dataset.fingerprint}")
    return 0


def _modality(text: str) -> tuple[str, int]:
    name, sep, dim = text.partition("=")
    if not sep or not dim.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIM, e.g. image=128")
    return name, int(dim)
