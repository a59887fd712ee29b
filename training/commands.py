"""Training sub-commands (run, teacher, student, evaluate, ablate); filled in by the pipeline."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the training sub-commands to ``sub`` (an argparse sub-parsers action)."""
    del sub
    _ = argparse
