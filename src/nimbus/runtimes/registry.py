"""Runtimes: which exist on this machine, and how an instance of each is launched.

``python3.X`` runtimes run the built-in runtime (``runtimes/python/bootstrap.py``)
under the real CPython binary of that version (never a pyenv shell shim, which
costs ~140 ms per start), with ``-I -S``: isolated from the platform's
environment and site-packages, so a function sees the standard library and its
own package only. ``nodejsN`` runs the built-in Node.js runtime
(``runtimes/node/bootstrap.cjs``, no npm dependencies) under the ``node`` binary of
major version N (18+), with V8's heap capped below the function's memory limit.
``custom`` runs the package's ``bootstrap`` executable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nimbus.errors import UnknownRuntimeError

BOOTSTRAP = Path(__file__).parent / "python" / "bootstrap.py"
#: Oldest CPython the built-in runtime supports.
MIN_PYTHON = (3, 8)
_PY_NAME = re.compile(r"^python(3)\.(\d+)$")
_PYENV_VERSION = re.compile(r"^(3)\.(\d+)\.(\d+)$")
#: The platform's runtime files (the Node bootstrap...), on the host.
RUNTIMES_DIR = Path(__file__).parent
#: Where a sandbox shows :data:`RUNTIMES_DIR`: a fixed path, never under a directory an
#: instance mounts its own (``/tmp``...), wherever Nimbus itself is installed.
RUNTIMES_IN_SANDBOX = "/opt/nimbus/runtimes"
NODE_BOOTSTRAP = RUNTIMES_DIR / "node" / "bootstrap.cjs"
#: Oldest Node.js major version the built-in Node runtime supports.
MIN_NODE = 18
_NODE_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)")
#: Share of a function's memory V8's old generation may use (the rest: Node itself, code,
#: buffers, the young generation). V8 collects harder as the heap nears it; the memory
#: cgroup stays the backstop (``Runtime.OutOfMemory``).
NODE_HEAP_SHARE = 0.75


@dataclass(frozen=True)
class Runtime:
    name: str  # python3.11, nodejs20, custom
    kind: str  # python | node | custom
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
    found.update(discover_node(extra_dirs))
    found["custom"] = Runtime("custom", "custom", None, None)
    return dict(sorted(found.items()))


def node_runtime(exe: Path, version_output: str) -> Runtime | None:
    """The runtime for a ``node`` binary that printed ``version_output`` to ``--version``."""
    m = _NODE_VERSION.match(version_output.strip())
    if m is None or int(m.group(1)) < MIN_NODE:
        return None
    return Runtime(f"nodejs{m.group(1)}", "node", m.group(0)[1:], exe)


def node_heap_flags(memory_mb: int) -> tuple[str, ...]:
    """V8 heap limits for an instance of ``memory_mb``: GC works harder before the cgroup
    limit is reached, and the young generation (16 MB semi-spaces by default, sized for
    big machines) is scaled down for small functions."""
    old_mb = max(16, int(memory_mb * NODE_HEAP_SHARE))
    semi_mb = min(16, max(1, memory_mb // 20))
    return (f"--max-old-space-size={old_mb}", f"--max-semi-space-size={semi_mb}")


def discover_node(extra_dirs: tuple[Path, ...] = ()) -> dict[str, Runtime]:
    """Find Node.js 18+ binaries (``node``, or Debian's old ``nodejs`` name), one per major."""
    found: dict[str, Runtime] = {}
    seen: set[Path] = set()
    for directory in (*extra_dirs, Path("/usr/local/bin"), Path("/usr/bin")):
        for name in ("node", "nodejs"):
            exe = directory / name
            if not _is_exe(exe) or _is_script(exe):  # version managers' shell shims: no
                continue
            real = exe.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                done = subprocess.run(
                    [str(real), "--version"], capture_output=True, text=True, timeout=10
                )
            except (OSError, subprocess.SubprocessError):
                continue
            runtime = node_runtime(real, done.stdout) if done.returncode == 0 else None
            if runtime is not None and runtime.name not in found:
                found[runtime.name] = runtime
    return found


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

    def argv(
        self,
        runtime: Runtime,
        task_root: str,
        memory_mb: int = 128,
        runtimes_root: str | None = None,
    ) -> tuple[str, ...]:
        """How to start the runtime; ``task_root`` is the code directory and
        ``runtimes_root`` :data:`RUNTIMES_DIR` as the instance sees them (None: as on
        the host)."""
        if runtime.kind == "python":
            assert runtime.executable is not None
            return (str(runtime.executable), "-I", "-S", str(BOOTSTRAP))
        if runtime.kind == "node":
            assert runtime.executable is not None
            bootstrap = NODE_BOOTSTRAP
            if runtimes_root is not None:
                bootstrap = Path(runtimes_root) / NODE_BOOTSTRAP.relative_to(RUNTIMES_DIR)
            return (str(runtime.executable), *node_heap_flags(memory_mb), str(bootstrap))
        return (f"{task_root}/bootstrap",)

    def ro_paths(self, runtime: Runtime) -> tuple[str, ...]:
        """Host paths the runtime needs inside a sandbox, read-only at the same path
        (those under :data:`RUNTIMES_DIR` at :data:`RUNTIMES_IN_SANDBOX` instead).

        The Node runtime needs its bootstrap and the ``node`` install (its prefix, e.g.
        ``/usr`` or ``/opt/node-v20``); Python instances are forks of a zygote that
        already holds their runtime, and custom runtimes bring their own.
        """
        if runtime.kind == "node" and runtime.executable is not None:
            return (str(NODE_BOOTSTRAP.parent), str(runtime.executable.parent.parent))
        return ()
