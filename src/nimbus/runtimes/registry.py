"""Runtimes: which exist on this machine, and how an instance of each is launched.

``python3.X`` runtimes run the built-in runtime (``runtimes/python/bootstrap.py``)
under the real CPython binary of that version (never a pyenv shell shim, which
costs ~140 ms per start), with ``-I -S``: isolated from the platform's
environment and site-packages, so a function sees the standard library and its
own package only. ``custom`` runs the package's ``bootstrap`` executable.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from nimbus.errors import UnknownRuntimeError

BOOTSTRAP = Path(__file__).parent / "python" / "bootstrap.py"
#: Oldest CPython the built-in runtime supports.
MIN_PYTHON = (3, 8)
_PY_NAME = re.compile(r"^python(3)\.(\d+)$")
_PYENV_VERSION = re.compile(r"^(3)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Runtime:
    name: str  # python3.11, custom
    kind: str  # python | custom
    version: str | None
    executable: Path | None

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "kind": self.kind, "version": self.version}


def _is_exe(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _is_script(path: Path) -> bool:
    """True for shell shims (pyenv's), which must never be used to start instances."""
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return True


def discover(extra_dirs: tuple[Path, ...] = ()) -> dict[str, Runtime]:
    """Find CPython 3.8+ binaries: the platform's own first, then system and pyenv ones."""
    found: dict[str, Runtime] = {}

    def add(minor: int, exe: Path, version: str) -> None:
        name = f"python3.{minor}"
        if (3, minor) < MIN_PYTHON or name in found:
            return
        if _is_exe(exe) and not _is_script(exe):
            found[name] = Runtime(name, "python", version, exe.resolve())

    base = Path(getattr(sys, "_base_executable", sys.executable))
    add(sys.version_info.minor, base, ".".join(map(str, sys.version_info[:3])))
    for directory in (*extra_dirs, Path("/usr/local/bin"), Path("/usr/bin")):
        if not directory.is_dir():
            continue
        for exe in sorted(directory.glob("python3.*")):
            m = _PY_NAME.match(exe.name)
            if m:
                add(int(m.group(2)), exe, f"3.{m.group(2)}")
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_root.is_dir():
        for vdir in sorted(pyenv_root.iterdir(), reverse=True):
            m = _PYENV_VERSION.match(vdir.name)
            if m:
                add(int(m.group(2)), vdir / "bin" / f"python3.{m.group(2)}", vdir.name)
    found["custom"] = Runtime("custom", "custom", None, None)
    return dict(sorted(found.items()))


class RuntimeRegistry:
    def __init__(self, runtimes: dict[str, Runtime]) -> None:
        self._runtimes = runtimes

    def get(self, name: str) -> Runtime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise UnknownRuntimeError(
                f"runtime {name!r} is not available here; choose one of: "
                + ", ".join(self._runtimes)
            )
        return runtime

    def default_python(self) -> Runtime:
        """The runtime of the platform's own Python version (always discovered)."""
        return self.get(f"python3.{sys.version_info.minor}")

    def all(self) -> list[Runtime]:
        return list(self._runtimes.values())

    def argv(self, runtime: Runtime, task_root: str) -> tuple[str, ...]:
        """How to start the runtime; ``task_root`` is the code directory as the instance sees it."""
        if runtime.kind == "python":
            assert runtime.executable is not None
            return (str(runtime.executable), "-I", "-S", str(BOOTSTRAP))
        return (f"{task_root}/bootstrap",)
