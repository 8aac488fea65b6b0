"""Which Node.js binaries become ``nodejsN`` runtimes, and how an instance of one starts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nimbus.compat import shapes
from nimbus.runtimes.registry import (
    NODE_BOOTSTRAP,
    Runtime,
    RuntimeRegistry,
    discover,
    discover_node,
    node_heap_flags,
    node_runtime,
)

NODE = shutil.which("node")


@pytest.mark.parametrize(
    ("output", "name", "version"),
    [
        ("v20.11.1\n", "nodejs20", "20.11.1"),
        ("v18.19.0", "nodejs18", "18.19.0"),
        ("v22.3.0-nightly2024", "nodejs22", "22.3.0"),
        ("v16.20.2\n", None, None),  # older than the runtime supports
        ("", None, None),
        ("node: bad option", None, None),
    ],
)
def test_node_runtime_from_version_output(output: str, name: str | None, version: str) -> None:
    runtime = node_runtime(Path("/opt/node/bin/node"), output)
    if name is None:
        assert runtime is None
    else:
        assert runtime == Runtime(name, "node", version, Path("/opt/node/bin/node"))


def test_heap_flags_stay_below_the_memory_limit() -> None:
    def flags(memory_mb: int) -> tuple[int, int]:
        old, semi = node_heap_flags(memory_mb)
        return int(old.split("=")[1]), int(semi.split("=")[1])

    assert flags(128) == (96, 6)
    assert flags(64) == (48, 3)
    assert flags(10240) == (7680, 16)  # the semi-space stays at V8's default cap
    for memory_mb in (64, 128, 256, 1024, 10240):
        old, semi = flags(memory_mb)
        assert old + 3 * semi <= memory_mb  # young generation: 3 semi-spaces at most


def test_argv_and_read_only_paths() -> None:
    node = Runtime("nodejs20", "node", "20.1.0", Path("/opt/node-v20/bin/node"))
    registry = RuntimeRegistry({"nodejs20": node})
    argv = registry.argv(node, "/var/task", 256)
    assert argv[0] == "/opt/node-v20/bin/node" and argv[-1] == str(NODE_BOOTSTRAP)
    assert "--max-old-space-size=192" in argv
    # In a sandbox that shows the runtime files elsewhere, the bootstrap is found there.
    inside = registry.argv(node, "/var/task", 256, "/opt/nimbus/runtimes")
    assert inside[-1] == "/opt/nimbus/runtimes/node/bootstrap.cjs"
    assert registry.ro_paths(node) == (str(NODE_BOOTSTRAP.parent), "/opt/node-v20")
    custom = Runtime("custom", "custom", None, None)
    assert registry.ro_paths(custom) == ()
    assert NODE_BOOTSTRAP.is_file()


def test_discovery_follows_symlinks_and_ignores_shims(tmp_path: Path) -> None:
    assert NODE is not None, "Node.js is not installed; scripts/setup.sh installs Debian's nodejs"
    real = Path(NODE).resolve()
    major = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True)
    name = "nodejs" + major.stdout.strip().lstrip("v").split(".")[0]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "node").symlink_to(real)
    found = discover_node((linked,))
    assert found[name].executable == real and found[name].kind == "node"
    assert name in discover()  # beside python3.X and custom

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "node").write_text("#!/bin/sh\necho v99.0.0\n")
    (shim / "node").chmod(0o755)
    assert "nodejs99" not in discover_node((shim,))  # a version manager's script: never


def test_lambda_api_runtime_names() -> None:
    assert shapes.nimbus_runtime("nodejs20.x") == "nodejs20"
    assert shapes.lambda_runtime("nodejs20") == "nodejs20.x"
    assert shapes.nimbus_runtime("python3.11") == "python3.11"
    assert shapes.lambda_runtime("custom") == "provided.al2023"
