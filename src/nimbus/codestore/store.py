"""Content-addressed storage of code packages on local disk.

Layout under ``root``::

    blobs/<sha[:2]>/<sha>.zip   validated packages, named by their sha256
    unpacked/<sha>/             one extracted copy per package, for instances to run from
    tmp/                        uploads in progress

A blob or unpacked directory appears at its final path only once complete: it
is written under a temporary name and renamed into place (uploads are fsynced
first). Unpacked directories are a cache rebuilt from blobs, not fsynced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from nimbus.codestore.package import (
    ByteBudget,
    EntryKind,
    PackageEntry,
    PackageManifest,
    iter_entry_data,
    open_zip,
    scan_zip,
    validate_zip,
)
from nimbus.config import PackageLimits
from nimbus.errors import CodeNotFoundError, PayloadTooLargeError, ValidationError

logger = logging.getLogger("nimbus.codestore")

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Leftovers of interrupted uploads/unpacks older than this are removed by gc.
_STALE_AFTER_S = 3600.0
#: Byte-compiling a package that takes longer than this is abandoned (not an error).
_COMPILE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StoredPackage:
    """A package accepted into the store."""

    sha256: str
    size: int
    manifest: PackageManifest


class CodeStore:
    """Code packages by sha256: put, look up, unpack, collect garbage."""

    def __init__(self, root: Path, limits: PackageLimits) -> None:
        self.root = root
        self.limits = limits
        self._blobs = root / "blobs"
        self._unpacked = root / "unpacked"
        self._tmp = root / "tmp"
        for directory in (self._blobs, self._unpacked, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[str, PackageManifest] = {}

    async def put_stream(self, chunks: AsyncIterator[bytes]) -> StoredPackage:
        """Store the zip read from ``chunks``; refuse it as soon as it is too large."""
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="upload-", suffix=".zip")
        temp = Path(name)
        try:
            digest = hashlib.sha256()
            size = 0
            with open(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.limits.max_zip_bytes:
                        raise self._too_large()
                    digest.update(chunk)
                    out.write(chunk)
            return await asyncio.to_thread(self._commit, temp, digest.hexdigest(), size)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes) -> StoredPackage:
        """Store the zip ``data`` (blocking)."""
        if len(data) > self.limits.max_zip_bytes:
            raise self._too_large()
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="upload-", suffix=".zip")
        temp = Path(name)
        try:
            with open(fd, "wb") as out:
                out.write(data)
            return self._commit(temp, hashlib.sha256(data).hexdigest(), len(data))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def exists(self, sha256: str) -> bool:
        return self._blob_file(sha256).is_file()

    def blob_path(self, sha256: str) -> Path:
        path = self._blob_file(sha256)
        if not path.is_file():
            raise CodeNotFoundError(
                f"no code package with sha256 {sha256}; upload it first", sha256=sha256
            )
        return path

    def manifest(self, sha256: str) -> PackageManifest:
        """The manifest of a stored package (validated again on first use)."""
        _check_sha256(sha256)
        cached = self._manifests.get(sha256)
        if cached is None:
            cached = validate_zip(self.blob_path(sha256), self.limits)
            self._manifests[sha256] = cached
        return cached

    def unpack(self, sha256: str) -> Path:
        """Extract a package once, byte-compile its Python files; return its directory.

        Blocking: call it from a thread. Safe to call concurrently for one hash.
        """
        final = self._unpacked / _check_sha256(sha256)
        if final.is_dir():
            return final
        blob = self.blob_path(sha256)
        work = self._unpacked / f"{sha256}.tmp-{secrets.token_hex(8)}"
        work.mkdir()
        try:
            os.chmod(work, 0o755)
            with open_zip(blob) as zf:
                entries = scan_zip(zf, self.limits)
                extract_entries(zf, entries, work, ByteBudget(self.limits.max_unpacked_bytes))
            if any(e.kind is EntryKind.FILE and e.name.endswith(".py") for e in entries):
                _compile_python(work)
            try:
                os.rename(work, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(work, ignore_errors=True)  # a concurrent unpack won
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return final

    def delete_unpacked(self, sha256: str) -> None:
        """Remove the unpacked copy of a package, if any."""
        final = self._unpacked / _check_sha256(sha256)
        trash = self._unpacked / f"{sha256}.del-{secrets.token_hex(8)}"
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def gc(self, keep: set[str]) -> set[str]:
        """Remove blobs and unpacked copies not in ``keep``; return the hashes removed.

        Also removes leftovers of interrupted uploads and unpacks older than an hour.
        """
        removed: set[str] = set()
        for blob in self._blobs.glob("*/*.zip"):
            sha256 = blob.stem
            if _SHA256.fullmatch(sha256) and sha256 not in keep:
                blob.unlink(missing_ok=True)
                self._manifests.pop(sha256, None)
                removed.add(sha256)
        stale_before = time.time() - _STALE_AFTER_S
        for path in self._unpacked.iterdir():
            name = path.name
            if _SHA256.fullmatch(name):
                if name not in keep:
                    self.delete_unpacked(name)
                    removed.add(name)
            elif ".del-" in name or (".tmp-" in name and _mtime(path) < stale_before):
                shutil.rmtree(path, ignore_errors=True)
        for path in self._tmp.iterdir():
            if path.is_file() and _mtime(path) < stale_before:
                path.unlink(missing_ok=True)
        return removed

    def _blob_file(self, sha256: str) -> Path:
        _check_sha256(sha256)
        return self._blobs / sha256[:2] / f"{sha256}.zip"

    def _commit(self, temp: Path, sha256: str, size: int) -> StoredPackage:
        """Validate the complete upload at ``temp`` and move it into place (blocking)."""
        manifest = validate_zip(temp, self.limits, verify_data=True)
        final = self._blob_file(sha256)
        if final.is_file():
            temp.unlink()
        else:
            _fsync_file(temp)
            new_shard = not final.parent.is_dir()
            final.parent.mkdir(exist_ok=True)
            os.replace(temp, final)
            _fsync_dir(final.parent)
            if new_shard:
                _fsync_dir(self._blobs)
        self._manifests[sha256] = manifest
        return StoredPackage(sha256=sha256, size=size, manifest=manifest)

    def _too_large(self) -> PayloadTooLargeError:
        limit = self.limits.max_zip_bytes
        return PayloadTooLargeError(
            f"the code package is larger than {limit} bytes; make it smaller "
            "(leave out tests, caches and unused dependencies)",
            max_zip_bytes=limit,
        )


def extract_entries(
    zf: zipfile.ZipFile, entries: list[PackageEntry], dest: Path, budget: ByteBudget
) -> None:
    """Write validated ``entries`` of ``zf`` below ``dest``, counting real bytes in ``budget``.

    Files get mode 0o755 when executable in the zip, else 0o644; directories
    0o755. Symlinks are created last, so no file is ever written through one.
    """
    made: set[Path] = {dest}
    links: list[PackageEntry] = []
    for entry in entries:
        path = dest / entry.name
        if entry.kind is EntryKind.DIR:
            _ensure_dir(path, made)
        elif entry.kind is EntryKind.SYMLINK:
            links.append(entry)
        else:
            _ensure_dir(path.parent, made)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with open(os.open(path, flags, 0o600), "wb") as out:
                for chunk in iter_entry_data(zf, entry, budget):
                    out.write(chunk)
                os.fchmod(out.fileno(), 0o755 if entry.executable else 0o644)
    for entry in links:
        path = dest / entry.name
        _ensure_dir(path.parent, made)
        os.symlink(entry.target or "", path)


def _check_sha256(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValidationError(
            f"{sha256!r} is not a sha256 digest; expected 64 lowercase hex characters"
        )
    return sha256


def _ensure_dir(path: Path, made: set[Path]) -> None:
    if path in made:
        return
    _ensure_dir(path.parent, made)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
    os.chmod(path, 0o755)
    made.add(path)


def _compile_python(directory: Path) -> None:
    """Byte-compile ``.py`` files below ``directory``; failures are left for import time.

    Runs ``compileall`` in a child interpreter: warnings filters are process-wide
    and not thread-safe, and a hostile source file must not crash the platform.
    """
    command = [sys.executable, "-I", "-W", "ignore", "-m", "compileall", "-qq", str(directory)]
    try:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_COMPILE_TIMEOUT_S,
            check=False,
            umask=0o022,
        )
    except subprocess.TimeoutExpired:
        logger.warning("byte-compiling %s took over %ss; skipped", directory, _COMPILE_TIMEOUT_S)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return time.time()
