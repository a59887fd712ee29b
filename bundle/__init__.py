"""The exported-model bundle format shared by training (writer) and the service (reader)."""

from bundle.format import (
    FORMAT_VERSION,
    Bundle,
    BundleError,
    frozen,
    new_version,
    read_bundle,
    resolve,
    validate,
    write_bundle,
)
from bundle.lightgcn import fold_in_user, propagate_to_users

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "BundleError",
    "fold_in_user",
    "frozen",
    "new_version",
    "propagate_to_users",
    "read_bundle",
    "resolve",
    "validate",
    "write_bundle",
]
