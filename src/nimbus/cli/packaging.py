"""Turning a directory into a code package: a zip that is the same bytes every time.

Entries are sorted by path, stamped 1980-01-01 00:00:00, deflated at a fixed
level, and carry unix permissions normalised to 0755 (any exec bit set) or
0644, so a ``bootstrap`` stays executable and an unchanged directory uploads to
the same SHA-256. ``__pycache__``, ``.git`` and ``*.pyc`` are left out.
Symlinks are followed (a link to an enclosing directory is skipped).
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

__all__ = ["PackageError", "load_package", "package_files", "zip_directory"]

SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
SKIPPED_SUFFIXES = (".pyc",)
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
COMPRESS_LEVEL = 6
_UNIX = 3  # ZipInfo.create_system for unix, so external_attr holds a st_mode


class PackageError(Exception):
    """The path cannot be turned into a code package; the message says why."""


def load_package(path: Path) -> bytes:
    """The zip bytes for ``path``: a directory is zipped, a ``.zip`` file is used as is."""
    if path.is_dir():
        return zip_directory(path)
    if not path.exists():
        raise PackageError(f"{path} does not exist")
    if path.is_file() and path.suffix.lower() == ".zip":
        data = path.read_bytes()
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise PackageError(f"{path} is not a valid zip file")
        return data
    raise PackageError(f"{path} must be a directory or a .zip file")


def zip_directory(root: Path) -> bytes:
    """Zip the files under ``root`` (paths relative to it) deterministically."""
    files = package_files(root)
    if not files:
        raise PackageError(f"{root} contains no files to package")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for arcname, path in files:
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
            info.create_system = _UNIX
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | _normalised_mode(path)) << 16
            zf.writestr(info, path.read_bytes(), compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


def package_files(root: Path) -> list[tuple[str, Path]]:
    """``(archive name, path)`` of every file that goes into the package, sorted by name."""
    if not root.is_dir():
        raise PackageError(f"{root} is not a directory")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIPPED_DIRS and not _encloses(os.path.join(dirpath, d), here)
        )
        for filename in filenames:
            if filename.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(dirpath, filename)
            if not path.exists():
                raise PackageError(f"{path} is a broken symlink")
            if not path.is_file():
                continue  # sockets, fifos, devices
            found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def _encloses(candidate: str, here: str) -> bool:
    """True when directory ``candidate`` resolves to ``here`` or one of its ancestors."""
    target = os.path.realpath(candidate)
    return here == target or here.startswith(target.rstrip(os.sep) + os.sep)


def _normalised_mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & 0o111 else 0o644
