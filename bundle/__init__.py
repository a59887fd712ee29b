"""The exported-model bundle format shared by training (writer) and the service (reader)."""

from bundle.format import (
    FORMAT_VERSION,
    Bundle,
    BundleError,
    fold_in_user,
    frozen,
    new_version,
    propagate_to_users,
    read_bundle,
    resolve,
    validate,
    write_bundle,
)

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
