"""Code packages built from a directory: reproducible bytes, exec bits, skipped clutter."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from nimbus.cli.packaging import PackageError, load_package, zip_directory


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "app.py").write_text("def handler(event, context):\n    return event\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (root / "pkg" / "stale.pyc").write_bytes(b"\0")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    bootstrap = root / "bootstrap"
    bootstrap.write_text("#!/bin/sh\nexec python3 -m runtime\n")
    bootstrap.chmod(0o700)
    return root


def _entries(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: info for info in zf.infolist()}


def test_same_directory_gives_the_same_bytes(project: Path) -> None:
    first = zip_directory(project)
    os.utime(project / "app.py", (0, 0))  # mtimes do not matter
    assert zip_directory(project) == first
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in _entries(first).values())


def test_entries_are_sorted_and_clutter_is_skipped(project: Path) -> None:
    names = list(_entries(zip_directory(project)))
    assert names == ["app.py", "bootstrap", "pkg/__init__.py", "pkg/util.py"]


def test_exec_bits_are_kept(project: Path) -> None:
    entries = _entries(zip_directory(project))
    bootstrap_mode = entries["bootstrap"].external_attr >> 16
    assert stat.S_ISREG(bootstrap_mode)
    assert stat.S_IMODE(bootstrap_mode) == 0o755
    assert stat.S_IMODE(entries["app.py"].external_attr >> 16) == 0o644
    assert entries["bootstrap"].create_system == 3


def test_symlink_to_an_enclosing_directory_does_not_loop(project: Path) -> None:
    (project / "pkg" / "loop").symlink_to(project, target_is_directory=True)
    assert "pkg/loop/app.py" not in _entries(zip_directory(project))


def test_a_zip_file_is_used_as_is(tmp_path: Path, project: Path) -> None:
    package = tmp_path / "code.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty, valid zip
    assert load_package(package) == package.read_bytes()
    assert load_package(project) == zip_directory(project)


@pytest.mark.parametrize("name", ["missing", "notes.txt", "fake.zip", "empty"])
def test_unusable_paths_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "fake.zip").write_text("not a zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackageError):
        load_package(tmp_path / name)
