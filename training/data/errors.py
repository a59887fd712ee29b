"""The one exception every dataset loader raises for bad input."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A dataset file is missing, unreadable, malformed or inconsistent.

    The message names the file, says what is wrong and what was expected.
    """
