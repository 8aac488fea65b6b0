"""Clients that misbehave on the wire: silent, trickling, half-open, deeply nested.

Each is refused or cut off on its own while everyone else is served; nothing
already stored changes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import TOKEN, Server

ECHO = {"app.py": "def handler(event, context):\n    return event\n"}
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"NIMBUS_CLIENT_TIMEOUT_S": str(TIMEOUT_S)}
    srv = Server(tmp_path_factory.mktemp("hostile") / "data", env).start()
    srv.deploy("echo", ECHO)
    yield srv
    srv.stop()
    srv.close()


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), None if it stayed open."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - start
    except ConnectionResetError:
        return time.monotonic() - start
    except TimeoutError:
        return None


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


HEAD = (
    "POST /v1/functions/echo/invocations HTTP/1.1\r\n"
    "Host: x\r\n"
    f"Authorization: Bearer {TOKEN}\r\n"
    "Content-Type: application/json\r\n"
)

ATTACKS: dict[str, Callable[[socket.socket], None]] = {
    "silent after connecting": lambda s: None,
    "headers never end": lambda s: s.sendall(HEAD.encode()),
    "body stops half-way": lambda s: s.sendall(
        (HEAD + "Content-Length: 100\r\n\r\n" + '{"x": ').encode()
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_slow_clients_are_cut_off_and_others_served(strict: Server, attack: str) -> None:
    victims = [_connect(strict) for _ in range(20)]
    try:
        for sock in victims:
            ATTACKS[attack](sock)
        # Everyone else is served meanwhile.
        assert strict.invoke("echo", {"ok": 1})["result"] == {"ok": 1}
        waited = [_closed_within(sock, TIMEOUT_S * 6) for sock in victims]
        assert all(w is not None for w in waited), waited
    finally:
        for sock in victims:
            sock.close()


def test_trickled_headers_do_not_extend_the_deadline(strict: Server) -> None:
    sock = _connect(strict)
    try:
        start = time.monotonic()
        closed = False
        for i in range(int(TIMEOUT_S * 10)):
            try:
                sock.sendall(f"X-Trickle-{i}: y\r\n".encode() if i else HEAD.encode())
            except OSError:
                closed = True
                break
            time.sleep(TIMEOUT_S / 4)
        if not closed:
            closed = _closed_within(sock, TIMEOUT_S * 3) is not None
        assert closed and time.monotonic() - start < TIMEOUT_S * 6
    finally:
        sock.close()


def test_a_slow_but_steady_client_still_gets_its_answer(strict: Server) -> None:
    """The deadline is per piece of body, not for the whole request."""
    body = json.dumps({"steady": "x" * 64}).encode()
    sock = _connect(strict)
    try:
        sock.sendall((HEAD + f"Content-Length: {len(body)}\r\n\r\n").encode())
        for i in range(0, len(body), len(body) // 4 + 1):
            time.sleep(TIMEOUT_S / 2)
            sock.sendall(body[i : i + len(body) // 4 + 1])
        sock.settimeout(10)
        reply = b""
        while b'"steady"' not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        sock.close()


def test_idle_keepalive_and_half_open_connections_are_released(strict: Server) -> None:
    # Half-open: the client shuts its sending side and never reads.
    sock = _connect(strict)
    sock.shutdown(socket.SHUT_WR)
    assert _closed_within(sock, TIMEOUT_S * 6) is not None
    sock.close()


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_json_is_refused_everywhere(strict: Server, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    r = strict.http.post(
        "/v1/functions/echo/invocations",
        content=nested,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "Request.InvalidJSON", r.text
    before = strict.http.get("/v1/functions/echo").json()
    r = strict.http.patch(
        "/v1/functions/echo",
        content='{"env": ' + "{" * depth + "}" * depth + "}",
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500 and "code" in r.json()["error"], r.text
    assert strict.http.get("/v1/functions/echo").json() == before
    assert strict.invoke("echo", {"after": depth})["result"] == {"after": depth}
