"""Code packages: zip validation and content-addressed storage on local disk.

``CodeStore`` keeps validated zips by sha256 and unpacks each once for the
instances that run it; ``validate_zip`` and ``handler_file_candidates`` are
pure checks the control plane uses before it accepts a deploy.
"""

from nimbus.codestore.package import (
    PackageManifest,
    handler_file_candidates,
    validate_zip,
)
from nimbus.codestore.store import CodeStore, StoredPackage

__all__ = [
    "CodeStore",
    "PackageManifest",
    "StoredPackage",
    "handler_file_candidates",
    "validate_zip",
]
