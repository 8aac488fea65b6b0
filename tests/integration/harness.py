"""Start a real ``nimbus serve`` and talk to it over HTTP, as a user would."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

NIMBUS = str(Path(sys.executable).with_name("nimbus"))
TOKEN = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_zip(files: Mapping[str, str | bytes], executables: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            mode = 0o755 if name in executables else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


class Server:
    """One ``nimbus serve`` process with its own data dir."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "NIMBUS_ADMIN_TOKEN": TOKEN,
            "NIMBUS_SANDBOX": os.environ.get("NIMBUS_TEST_SANDBOX", "auto"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [NIMBUS, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nimbus serve exited:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"nimbus serve did not become ready:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        return rc

    # ---- API helpers ----------------------------------------------------
    def upload(self, package: bytes) -> str:
        r = self.http.put("/v1/code", content=package, headers={"Content-Type": "application/zip"})
        assert r.status_code == 201, r.text
        return str(r.json()["sha256"])

    def deploy(
        self,
        name: str,
        files: Mapping[str, str | bytes],
        *,
        runtime: str = "python3.11",
        handler: str = "app.handler",
        executables: tuple[str, ...] = (),
        **settings: Any,
    ) -> dict[str, Any]:
        sha = self.upload(make_zip(files, executables))
        body = {"runtime": runtime, "handler": handler, "code_sha256": sha, **settings}
        r = self.http.put(f"/v1/functions/{name}", json=body)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def invoke(self, name: str, event: Any = None, **headers: str) -> dict[str, Any]:
        r = self.http.post(
            f"/v1/functions/{name}/invocations",
            content=json.dumps(event if event is not None else {}),
            headers={"Content-Type": "application/json", **headers},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def logs(self, name: str, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get(f"/v1/functions/{name}/logs", params=params)
        assert r.status_code == 200, r.text
        return list(r.json()["lines"])

    def close(self) -> None:
        self.http.close()


def instance_pids(data_dir: Path) -> set[int]:
    """Pids of live instances, from the process sandbox's pidfiles."""
    pids = set()
    for f in (data_dir / "run" / "pids").glob("*.pid"):
        try:
            pid = int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            pids.add(pid)
    return pids


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def vendored(*requirements: str) -> dict[str, str | bytes]:
    """The distributions and everything they require (markers evaluated), copied from this
    environment's site-packages, as `pip install --target .` would put them in a package."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted: set[str] = set()
    todo = list(requirements)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in wanted:
            continue
        wanted.add(name)
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    files: dict[str, str | bytes] = {}
    for name in wanted:
        dist = metadata.distribution(name)
        for entry in dist.files or []:
            path = Path(str(dist.locate_file(entry)))
            parts = Path(str(entry)).parts
            if (
                parts[0].endswith(".dist-info")
                or parts[0] == ".."
                or "__pycache__" in parts
                or not path.is_file()
            ):
                continue
            files[str(entry)] = path.read_bytes()
    return files


#: A handler that prints each event it gets as ``EVENT <json>`` (read back with
#: :func:`recorded_events`).
RECORDER = """
import json

def handler(event, context):
    print("EVENT " + json.dumps(event))
    return "ok"
"""


def recorded_events(srv: Server, name: str) -> list[dict[str, Any]]:
    """The events a function deployed from :data:`RECORDER` (or printing like it) got."""
    return [
        json.loads(line["message"][len("EVENT ") :])
        for line in srv.logs(name)
        if line["message"].startswith("EVENT ")
    ]


def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
