"""Code store: package validation, content-addressed storage, safe unpacking."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import os
import stat
import struct
import threading
import zipfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nimbus.codestore import CodeStore, handler_file_candidates, validate_zip
from nimbus.codestore.package import ByteBudget, scan_zip
from nimbus.codestore.store import extract_entries
from nimbus.config import PackageLimits
from nimbus.errors import (
    CodeNotFoundError,
    InvalidPackageError,
    InvalidSettingError,
    PayloadTooLargeError,
    UnknownRuntimeError,
    ValidationError,
)

Entry = tuple[str, bytes | str, int]  # name, data, unix mode (0: none)
FILE, EXEC, LINK = 0o100644, 0o100755, stat.S_IFLNK | 0o777


def make_zip(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def patch_first_entry(data: bytes, *, flags: int = 0, declared_size: int | None = None) -> bytes:
    """Tamper with the local and central headers of the only entry of a zip."""
    out = bytearray(data)
    central = struct.unpack_from("<I", out, len(out) - 22 + 16)[0]
    for offset, flag_at, size_at in ((0, 6, 22), (central, 8, 24)):
        (old_flags,) = struct.unpack_from("<H", out, offset + flag_at)
        struct.pack_into("<H", out, offset + flag_at, old_flags | flags)
        if declared_size is not None:
            struct.pack_into("<I", out, offset + size_at, declared_size)
    return bytes(out)


APP = make_zip(
    ("app.py", "def handler(event, context):\n    return event\n", FILE),
    ("lib/", b"", stat.S_IFDIR | 0o755),
    ("lib/util.py", "X = 1\n", FILE),
    ("broken.py", "def (:\n", FILE),
    ("bootstrap", "#!/bin/sh\nexec python3 app.py\n", EXEC),
    ("lib/link.py", "util.py", LINK),
)


@pytest.fixture
def store(tmp_path: Path) -> CodeStore:
    return CodeStore(tmp_path / "code", PackageLimits())


def leftovers(store: CodeStore) -> list[str]:
    found = list((store.root / "tmp").iterdir()) + list((store.root / "blobs").rglob("*.zip"))
    return [p.name for p in found]


async def chunked(data: bytes, size: int, pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if pulled is not None:
            pulled.append(start)
        yield data[start : start + size]


def test_put_is_content_addressed_and_idempotent(store: CodeStore) -> None:
    first = store.put_bytes(APP)
    assert first.sha256 == hashlib.sha256(APP).hexdigest()
    assert first.size == len(APP)
    assert store.blob_path(first.sha256).read_bytes() == APP
    assert first.manifest.files == {"app.py", "lib/util.py", "broken.py", "bootstrap"}
    assert first.manifest.executables == {"bootstrap"}
    assert first.manifest.symlinks == {"lib/link.py": "util.py"}
    assert first.manifest.file_count == 4
    again = asyncio.run(store.put_stream(chunked(APP, 100)))
    assert again == first
    assert list((store.root / "blobs").rglob("*.zip")) == [store.blob_path(first.sha256)]
    assert list((store.root / "tmp").iterdir()) == []
    reopened = CodeStore(store.root, PackageLimits())
    assert reopened.exists(first.sha256)
    assert reopened.manifest(first.sha256) == first.manifest


def test_unpack_preserves_modes_links_and_compiles(store: CodeStore) -> None:
    sha = store.put_bytes(APP).sha256
    root = store.unpack(sha)
    assert root == store.root / "unpacked" / sha
    assert (root / "app.py").read_text().startswith("def handler")
    assert stat.S_IMODE((root / "bootstrap").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "lib").stat().st_mode) == 0o755
    assert os.readlink(root / "lib/link.py") == "util.py"
    assert (root / "lib/link.py").read_text() == "X = 1\n"
    assert Path(importlib.util.cache_from_source(str(root / "app.py"))).is_file()
    assert Path(importlib.util.cache_from_source(str(root / "lib/util.py"))).is_file()
    assert not Path(importlib.util.cache_from_source(str(root / "broken.py"))).exists()
    assert store.unpack(sha) == root
    store.delete_unpacked(sha)
    assert not root.exists()
    assert store.unpack(sha) == root


def test_concurrent_unpack_of_one_hash(store: CodeStore) -> None:
    sha = store.put_bytes(APP).sha256
    barrier = threading.Barrier(4)

    def unpack() -> Path:
        barrier.wait()
        return store.unpack(sha)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: unpack(), range(4)))
    assert set(results) == {store.root / "unpacked" / sha}
    assert [p.name for p in (store.root / "unpacked").iterdir()] == [sha]
    assert (results[0] / "lib/util.py").read_text() == "X = 1\n"


BAD_PACKAGES: dict[str, tuple[bytes, str]] = {  # name: (upload, expected message)
    "zip slip": (make_zip(("../evil", "x", FILE)), "escapes the package"),
    "nested zip slip": (make_zip(("a/../../evil", "x", FILE)), "escapes the package"),
    "backslash slip": (make_zip(("..\\evil", "x", FILE)), "escapes the package"),
    "absolute": (make_zip(("/etc/evil", "x", FILE)), "absolute path"),
    "drive letter": (make_zip(("C:/evil", "x", FILE)), "absolute path"),
    "absolute symlink": (
        make_zip(("a.py", "", FILE), ("l", "/etc/passwd", LINK)),
        "outside the package",
    ),
    "escaping symlink": (
        make_zip(("a.py", "", FILE), ("d/l", "../../x", LINK)),
        "outside the package",
    ),
    "symlink through symlink": (
        make_zip(("a.py", "", FILE), ("s/up", "..", LINK), ("l", "s/up/s/up/..", LINK)),
        "through another symlink",
    ),
    "file below a symlink": (
        make_zip(("a.py", "", FILE), ("d", "a.py", LINK), ("d/x", "", FILE)),
        "which is a symlink",
    ),
    "file below a file": (make_zip(("a", "", FILE), ("a/b.py", "", FILE)), "which is a file"),
    "duplicate": (make_zip(("a.py", "1", FILE), ("./a.py", "2", FILE)), "both unpack to"),
    "fifo": (make_zip(("a.py", "", FILE), ("p", "", stat.S_IFIFO | 0o644)), "FIFO"),
    "not a zip": (b"definitely not a zip file", "not a valid zip"),
    "empty upload": (b"", "empty"),
    "no entries": (make_zip(), "no entries"),
    "only directories": (make_zip(("d/", b"", stat.S_IFDIR | 0o755)), "holds no files"),
    "too many files": (make_zip(*[(f"f{i}.py", "", FILE) for i in range(11)]), "11 entries"),
    "declared-size bomb": (make_zip(("zeros", bytes(2_000_000), FILE)), "declares 2000000"),
    "encrypted": (
        patch_first_entry(make_zip(("a.py", "x = 1\n", FILE)), flags=0x1),
        "encrypted",
    ),
    "lying header": (
        patch_first_entry(make_zip(("big", bytes(500_000), FILE)), declared_size=10),
        "corrupt",
    ),
}


@pytest.mark.parametrize("name", list(BAD_PACKAGES))
def test_refused_packages_leave_nothing_behind(tmp_path: Path, name: str) -> None:
    limits = PackageLimits(max_files=10, max_unpacked_bytes=1_000_000)
    store = CodeStore(tmp_path / "code", limits)
    data, message = BAD_PACKAGES[name]
    with pytest.raises(InvalidPackageError, match=message):
        store.put_bytes(data)
    with pytest.raises(InvalidPackageError, match=message):
        asyncio.run(store.put_stream(chunked(data, 1000)))
    assert leftovers(store) == []


def test_duplicate_written_by_zipfile_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("a.py", "1")
        zf.writestr("a.py", "2")
    path = tmp_path / "dup.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InvalidPackageError, match=r"both unpack to 'a\.py'"):
        validate_zip(path, PackageLimits())


def test_refusal_messages_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(BAD_PACKAGES["zip slip"][0])
    with pytest.raises(InvalidPackageError, match="escapes the package; paths must be relative"):
        validate_zip(path, PackageLimits())
    path.write_bytes(APP)
    with pytest.raises(InvalidPackageError, match="above the limit"):
        validate_zip(path, PackageLimits(max_zip_bytes=len(APP) - 1))


def test_oversize_stream_is_cut_off_early(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "code", PackageLimits(max_zip_bytes=1000))
    pulled: list[int] = []
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(store.put_stream(chunked(bytes(10_000), 400, pulled)))
    assert len(pulled) == 3
    with pytest.raises(PayloadTooLargeError):
        store.put_bytes(bytes(1001))
    assert leftovers(store) == []


def test_interrupted_stream_leaves_no_blob(store: CodeStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield APP[:100]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(store.put_stream(broken()))
    assert leftovers(store) == []


def test_unpack_does_not_trust_headers(store: CodeStore) -> None:
    bomb = BAD_PACKAGES["lying header"][0]
    sha = hashlib.sha256(bomb).hexdigest()
    blob = store.root / "blobs" / sha[:2] / f"{sha}.zip"  # as if written by an older release
    blob.parent.mkdir(parents=True)
    blob.write_bytes(bomb)
    with pytest.raises(InvalidPackageError, match="corrupt"):
        store.unpack(sha)
    assert list((store.root / "unpacked").iterdir()) == []


def test_extraction_counts_bytes_actually_written(tmp_path: Path) -> None:
    data = make_zip(("a.bin", os.urandom(10_000), FILE))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = scan_zip(zf, PackageLimits())
        with pytest.raises(InvalidPackageError, match="more than 1000 bytes"):
            extract_entries(zf, entries, tmp_path, ByteBudget(1000))


def test_lookups_of_unknown_and_malformed_hashes(store: CodeStore) -> None:
    unknown = "0" * 64
    assert not store.exists(unknown)
    for lookup in (store.blob_path, store.manifest, store.unpack):
        with pytest.raises(CodeNotFoundError):
            lookup(unknown)
    for bad in ("A" * 64, "abc", "../" + "0" * 61):
        with pytest.raises(ValidationError):
            store.exists(bad)


def test_gc_keeps_only_what_is_asked(store: CodeStore) -> None:
    kept = store.put_bytes(APP).sha256
    dropped = store.put_bytes(make_zip(("other.py", "", FILE))).sha256
    store.unpack(kept)
    store.unpack(dropped)
    assert store.gc({kept}) == {dropped}
    assert store.exists(kept) and not store.exists(dropped)
    assert [p.name for p in (store.root / "unpacked").iterdir()] == [kept]


@pytest.mark.parametrize(
    ("kind", "handler", "expected"),
    [
        ("python", "app.handler", ["app.py", "app/__init__.py"]),
        ("python", "pkg.sub.fn", ["pkg/sub.py", "pkg/sub/__init__.py"]),
        ("python", "dir/app.handler", ["dir/app.py", "dir/app/__init__.py"]),
        ("node", "src/index.handler", ["src/index.js", "src/index.mjs", "src/index.cjs"]),
        ("custom", "anything", ["bootstrap"]),
    ],
)
def test_handler_file_candidates(kind: str, handler: str, expected: list[str]) -> None:
    assert handler_file_candidates(kind, handler) == expected


@pytest.mark.parametrize(
    "handler", ["app", "", "app.", ".handler", "../app.handler", "/abs/app.handler", "a-b.fn"]
)
def test_bad_python_handlers(handler: str) -> None:
    with pytest.raises(InvalidSettingError):
        handler_file_candidates("python", handler)


def test_unknown_runtime_kind() -> None:
    with pytest.raises(UnknownRuntimeError):
        handler_file_candidates("cobol", "app.handler")
