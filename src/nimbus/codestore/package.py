"""Validation of code packages (zip files) and handler file names; no storage.

A package is refused with :class:`~nimbus.errors.InvalidPackageError` when it
is not a readable zip, is empty, is too big (zip size, entry count, declared
unpacked size), or holds an entry that could write outside the package when
unpacked (absolute paths, drive letters, ``..`` components, symlinks whose
target leaves the package or passes through another symlink), an encrypted
entry, a device/FIFO entry, or two entries that unpack to the same path.

Entry names are normalised to relative POSIX paths: backslashes count as
separators (zips made on Windows use them), empty and ``.`` components are
dropped. Headers are not trusted when data is read: :func:`iter_entry_data`
counts the bytes that decompression actually produces, against the header and
against a :class:`ByteBudget` shared by all entries.
"""

from __future__ import annotations

import enum
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nimbus.config import PackageLimits
from nimbus.errors import InvalidPackageError, InvalidSettingError, UnknownRuntimeError

_CHUNK_BYTES = 64 * 1024
_MAX_LINK_TARGET_BYTES = 4095
_DRIVE = re.compile(r"^[A-Za-z]:")
_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_NODE_EXTENSIONS = (".js", ".mjs", ".cjs")


class EntryKind(enum.Enum):
    FILE = "file"  #: a regular file
    DIR = "directory"  #: a directory entry (name ends with '/' or mode says so)
    SYMLINK = "symlink"  #: a symbolic link; its data is the target


@dataclass(frozen=True)
class PackageEntry:
    """One validated zip entry: its normalised ``name`` and what it is."""

    name: str
    kind: EntryKind
    info: zipfile.ZipInfo
    #: Link target, for symlinks only.
    target: str | None = None

    @property
    def executable(self) -> bool:
        return self.kind is EntryKind.FILE and bool((self.info.external_attr >> 16) & 0o111)


@dataclass(frozen=True)
class PackageManifest:
    """What a valid package holds (paths are normalised relative POSIX paths)."""

    files: frozenset[str]
    executables: frozenset[str]
    total_bytes: int
    file_count: int
    #: Symlinks that stay inside the package: link path -> target as stored.
    symlinks: Mapping[str, str] = field(default_factory=dict, hash=False)


class ByteBudget:
    """Counts bytes actually produced while reading a package, across entries."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0

    def spend(self, n_bytes: int) -> None:
        self.used_bytes += n_bytes
        if self.used_bytes > self.limit_bytes:
            raise InvalidPackageError(
                f"the package unpacks to more than {self.limit_bytes} bytes; "
                "make it smaller (leave out tests, caches and unused dependencies)",
                max_unpacked_bytes=self.limit_bytes,
            )


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip, turning "not a zip / corrupt" into InvalidPackageError."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InvalidPackageError(
            f"the code package is not a valid zip file ({exc}); upload a .zip archive"
        ) from exc


def validate_zip(
    path: Path, limits: PackageLimits, *, verify_data: bool = False
) -> PackageManifest:
    """Check the zip at ``path`` against ``limits`` and return its manifest.

    Only the central directory is read, unless ``verify_data`` is set: then
    every file is decompressed (bytes counted, CRCs checked) as well.
    """
    zip_bytes = path.stat().st_size
    if zip_bytes == 0:
        raise InvalidPackageError("the code package is empty; upload a .zip archive")
    if zip_bytes > limits.max_zip_bytes:
        raise InvalidPackageError(
            f"the zip file is {zip_bytes} bytes, above the limit of {limits.max_zip_bytes}; "
            "make the package smaller",
            max_zip_bytes=limits.max_zip_bytes,
        )
    with open_zip(path) as zf:
        entries = scan_zip(zf, limits)
        if verify_data:
            budget = ByteBudget(limits.max_unpacked_bytes)
            for entry in entries:
                if entry.kind is EntryKind.FILE:
                    for _ in iter_entry_data(zf, entry, budget):
                        pass
    return _manifest(entries)


def scan_zip(zf: zipfile.ZipFile, limits: PackageLimits) -> list[PackageEntry]:
    """Validate every entry's header of ``zf``; return the entries to unpack, in order."""
    infos = zf.infolist()
    if not infos:
        raise InvalidPackageError("the zip file has no entries; put your code in it")
    if len(infos) > limits.max_files:
        raise InvalidPackageError(
            f"the package has {len(infos)} entries, above the limit of {limits.max_files}; "
            "leave out files the function does not need",
            max_files=limits.max_files,
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_unpacked_bytes:
        raise InvalidPackageError(
            f"the package declares {declared} bytes unpacked, above the limit of "
            f"{limits.max_unpacked_bytes}; make it smaller",
            max_unpacked_bytes=limits.max_unpacked_bytes,
        )
    entries: list[PackageEntry] = []
    seen: dict[str, PackageEntry] = {}
    for info in infos:
        entry = _entry(zf, info)
        if entry is None:
            continue
        previous = seen.get(entry.name)
        if previous is not None:
            if previous.kind is EntryKind.DIR and entry.kind is EntryKind.DIR:
                continue
            raise InvalidPackageError(
                f"entries {previous.info.filename!r} and {info.filename!r} both unpack to "
                f"{entry.name!r}; keep only one of them"
            )
        seen[entry.name] = entry
        entries.append(entry)
    _check_tree(entries, {name: entry.kind for name, entry in seen.items()})
    if not any(entry.kind is EntryKind.FILE for entry in entries):
        raise InvalidPackageError("the package holds no files; put your code in the zip")
    return entries


def iter_entry_data(
    zf: zipfile.ZipFile, entry: PackageEntry, budget: ByteBudget
) -> Iterator[bytes]:
    """Yield the data of ``entry``, counting real bytes against its header and ``budget``."""
    declared = entry.info.file_size
    produced = 0
    try:
        with zf.open(entry.info) as src:
            while chunk := src.read(_CHUNK_BYTES):
                produced += len(chunk)
                if produced > declared:
                    raise InvalidPackageError(
                        f"entry {entry.info.filename!r} holds more data than its header "
                        "declares; the zip is corrupt, rebuild it"
                    )
                budget.spend(len(chunk))
                yield chunk
    except InvalidPackageError:
        raise
    except Exception as exc:  # zlib/bz2/lzma/zipfile each have their own errors
        raise InvalidPackageError(
            f"entry {entry.info.filename!r} is corrupt ({exc}); rebuild the zip and upload again"
        ) from exc


def handler_file_candidates(runtime_kind: str, handler: str) -> list[str]:
    """Package paths, any one of which must exist for ``handler`` to load, in lookup order."""
    if runtime_kind == "custom":
        return ["bootstrap"]
    if runtime_kind not in ("python", "node"):
        raise UnknownRuntimeError(
            f"unknown runtime kind {runtime_kind!r}; choose one of: custom, node, python"
        )
    if ".." in handler or "\\" in handler or handler.startswith("/") or _DRIVE.match(handler):
        raise InvalidSettingError(
            f"handler {handler!r} must be a relative path inside the package "
            "(no '..', no leading '/', no backslashes)"
        )
    directory, _, dotted = handler.rpartition("/")
    dirs = [part for part in directory.split("/") if part not in ("", ".")]
    if runtime_kind == "node":
        module, dot, function = dotted.partition(".")
        if not (dot and module and function):
            raise InvalidSettingError(
                f"handler {handler!r} must look like file.function, e.g. index.handler"
            )
        base = "/".join([*dirs, module])
        return [base + ext for ext in _NODE_EXTENSIONS]
    if ":" in handler:  # an HTTP service: module:app (the app may be an attribute path)
        module, _, attr = dotted.partition(":")
        if ":" in directory or not (module and attr):
            raise InvalidSettingError(
                f"handler {handler!r} must look like module:app, e.g. app:app"
            )
        names = module.split(".")
        idents = [*names, *attr.split(".")]
    else:
        module, dot, function = dotted.rpartition(".")
        if not (dot and module and function):
            raise InvalidSettingError(
                f"handler {handler!r} must look like module.function, e.g. app.handler "
                "(or module:app for an HTTP service)"
            )
        names = module.split(".")
        idents = [*names, function]
    for name in idents:
        if not name.isidentifier():
            raise InvalidSettingError(
                f"handler {handler!r} is not valid: {name!r} is not a Python identifier"
            )
    base = "/".join([*dirs, *names])
    return [base + ".py", base + "/__init__.py"]


def _entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> PackageEntry | None:
    raw = info.filename
    if info.flag_bits & 0x1:
        raise InvalidPackageError(f"entry {raw!r} is encrypted; upload a zip without a password")
    if info.compress_type not in _METHODS:
        raise InvalidPackageError(
            f"entry {raw!r} uses an unsupported compression method ({info.compress_type}); "
            "use deflate or no compression"
        )
    name = _normalise(raw)
    mode = info.external_attr >> 16
    ftype = stat.S_IFMT(mode)
    if ftype == stat.S_IFLNK:
        kind = EntryKind.SYMLINK
    elif ftype == stat.S_IFDIR or raw.replace("\\", "/").endswith("/"):
        kind = EntryKind.DIR
    elif ftype in (0, stat.S_IFREG):
        kind = EntryKind.FILE
    else:
        raise InvalidPackageError(
            f"entry {raw!r} is a device, FIFO or socket; "
            "packages may hold only files, directories and symlinks"
        )
    if not name:
        if kind is EntryKind.DIR:
            return None
        raise InvalidPackageError(f"entry {raw!r} has no file name; remove it from the zip")
    target = _read_link_target(zf, info) if kind is EntryKind.SYMLINK else None
    return PackageEntry(name=name, kind=kind, info=info, target=target)


def _normalise(raw: str) -> str:
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise InvalidPackageError(f"entry {raw!r} has a NUL byte in its name; rename it")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidPackageError(
            f"entry {raw!r} has an absolute path; paths must be relative to the package root"
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidPackageError(
            f"entry {raw!r} escapes the package; paths must be relative and stay inside it"
        )
    return "/".join(parts)


def _read_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if info.file_size > _MAX_LINK_TARGET_BYTES:
        raise InvalidPackageError(f"symlink {info.filename!r} has an overlong target")
    entry = PackageEntry(name=info.filename, kind=EntryKind.SYMLINK, info=info)
    data = b"".join(iter_entry_data(zf, entry, ByteBudget(_MAX_LINK_TARGET_BYTES)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPackageError(
            f"symlink {info.filename!r} has a target that is not UTF-8"
        ) from exc


def _check_tree(entries: list[PackageEntry], kinds: dict[str, EntryKind]) -> None:
    """Refuse entries below a file or symlink, and symlinks that leave the package."""
    for entry in entries:
        parts = entry.name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            kind = kinds.get(prefix)
            if kind is not None and kind is not EntryKind.DIR:
                raise InvalidPackageError(
                    f"entry {entry.info.filename!r} lies below {prefix!r}, which is a "
                    f"{kind.value}, not a directory; rename one of them"
                )
        if entry.kind is EntryKind.SYMLINK:
            _check_link(entry, kinds)


def _check_link(entry: PackageEntry, kinds: dict[str, EntryKind]) -> None:
    """Resolve the link lexically; every hop but the last must be a real directory."""
    target = entry.target or ""
    escapes = InvalidPackageError(
        f"symlink {entry.info.filename!r} points to {target!r}, outside the package; "
        "symlinks must be relative and stay inside it"
    )
    if not target or "\x00" in target or "\\" in target:
        raise escapes
    if target.startswith("/") or _DRIVE.match(target):
        raise escapes
    position = entry.name.split("/")[:-1]
    hops = [part for part in target.split("/") if part not in ("", ".")]
    for index, hop in enumerate(hops):
        if hop == "..":
            if not position:
                raise escapes
            position.pop()
            continue
        position.append(hop)
        if index < len(hops) - 1 and kinds.get("/".join(position)) is EntryKind.SYMLINK:
            raise InvalidPackageError(
                f"symlink {entry.info.filename!r} points through another symlink "
                f"{'/'.join(position)!r}; point it at the real path instead"
            )


def _manifest(entries: list[PackageEntry]) -> PackageManifest:
    files = [entry for entry in entries if entry.kind is EntryKind.FILE]
    links = {entry.name: entry.target or "" for entry in entries if entry.kind is EntryKind.SYMLINK}
    return PackageManifest(
        files=frozenset(entry.name for entry in files),
        executables=frozenset(entry.name for entry in files if entry.executable),
        total_bytes=sum(entry.info.file_size for entry in files),
        file_count=len(files),
        symlinks=MappingProxyType(links),
    )
