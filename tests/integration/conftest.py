from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server for tests that do not depend on pool settings."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield srv
    srv.stop()
    srv.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a dedicated server with NIMBUS_* settings, stopped after the test."""
    started: list[Server] = []

    def factory(**settings: object) -> Server:
        env = {f"NIMBUS_{k.upper()}": str(v) for k, v in settings.items()}
        srv = Server(tmp_path / f"data{len(started)}", env).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()
        srv.close()
