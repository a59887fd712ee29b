"""Command-line entry: ``python -m training <group> ...``.

Each group registers its own sub-commands; this module only assembles them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from training.commands import register as register_training
from training.content_features import register as register_features
from training.data.cli import register as register_data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    register_data(sub)
    register_training(sub)
    register_features(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
