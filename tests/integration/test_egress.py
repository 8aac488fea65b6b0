"""``network: egress`` in the namespaces sandbox, against an "outside network" the test builds.

This machine has no outside network, so the test makes one: a network namespace
joined to the host by a veth pair, with a TCP service in it, routed like any
outside address. A function with ``network: egress`` must reach that service
(through the host, masqueraded), and still reach nothing of the host: not a
listener bound on every host address, not the host end of its own link. A
function with the default ``network: none`` must not reach the service at all.
When an egress instance is reaped, its link is gone from the host.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.integration.harness import Server, wait_until

#: A public (not private) block, as outside networks are; host .1, service .2
OUTSIDE_NET = "198.18.0"
#: The same service on a private address, as a database on the operator's LAN would be.
PRIVATE_ADDRESS = "192.168.213.2"
SERVICE_PORT = 8099
#: Answers every connection with the address it came from, so masquerading shows.
SERVICE = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {SERVICE_PORT}))
s.listen()
print("ready", flush=True)
while True:
    c, addr = s.accept()
    c.sendall(("outside saw " + addr[0]).encode())
    c.close()
"""

PROBE_APP = """
import errno, socket

def fetch(host, port):
    try:
        with socket.create_connection((host, port), timeout=1.5) as s:
            s.settimeout(1.5)
            return s.recv(100).decode() or "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def gateway():
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None

def interfaces():
    with open("/proc/net/dev") as f:
        return sorted(l.split(":")[0].strip() for l in f.read().splitlines()[2:])

def handler(event, context):
    gw = gateway()
    out = {"interfaces": interfaces(), "gateway": gw, "targets": {}}
    for name, (host, port) in event["targets"].items():
        out["targets"][name] = fetch(host, port)
    if gw is not None:
        out["targets"]["host end of the link"] = fetch(gw, event["host_port"])
    return out
"""


@dataclass
class Outside:
    service: tuple[str, int]
    host_address: str


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@pytest.fixture
def outside() -> Iterator[Outside]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the egress test needs root and iproute2 (scripts/setup.sh installs it)")
    tag = secrets.token_hex(3)
    netns, host_if = f"nimbus-out-{tag}", f"nxo{tag}"
    _run("ip", "netns", "add", netns)
    service = None
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "addr", "add", f"{OUTSIDE_NET}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        for cmd in (
            f"addr add {OUTSIDE_NET}.2/30 dev eth0",
            f"addr add {PRIVATE_ADDRESS}/32 dev eth0",
            "link set eth0 up",
            "link set lo up",
            f"route add default via {OUTSIDE_NET}.1",
        ):
            _run("ip", "-n", netns, *cmd.split())
        _run("ip", "route", "add", PRIVATE_ADDRESS, "via", f"{OUTSIDE_NET}.2")
        service = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SERVICE],
            stdout=subprocess.PIPE,
        )
        assert service.stdout is not None and service.stdout.readline() == b"ready\n"
        yield Outside((f"{OUTSIDE_NET}.2", SERVICE_PORT), f"{OUTSIDE_NET}.1")
    finally:
        if service is not None:
            service.kill()
            service.wait()
            if service.stdout is not None:
                service.stdout.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def _links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def test_egress_reaches_outside_networks_and_never_the_host(
    outside: Outside, make_server: Callable[..., Server]
) -> None:
    host_listener = socket.socket()
    host_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host_listener.bind(("0.0.0.0", 0))
    host_listener.listen(16)
    host_port = host_listener.getsockname()[1]
    server = make_server(sandbox="namespaces", egress_subnet="10.252.0.0/24")
    try:
        # Control: the service answers from its namespace, and the host listener is
        # reachable through the very host address the outside network uses.
        for address in (outside.service, (PRIVATE_ADDRESS, SERVICE_PORT)):
            with socket.create_connection(address, timeout=2) as s:
                assert s.recv(100).decode().startswith("outside saw ")
        targets = {
            "outside service": list(outside.service),
            "private network": [PRIVATE_ADDRESS, SERVICE_PORT],
            "host listener": [outside.host_address, host_port],
            "host loopback": ["127.0.0.1", host_port],
            "platform": [outside.host_address, server.port],
        }
        event = {"targets": targets, "host_port": host_port}

        fn = server.deploy("egress-probe", {"app.py": PROBE_APP}, network="egress", timeout_s=20)
        assert fn["network"] == "egress"
        r = server.invoke("egress-probe", event)
        assert r["status"] == "succeeded", r.get("error")
        probe = r["result"]
        assert probe["interfaces"] == ["eth0", "lo"], probe
        # Reaches the outside, seen as the host (masqueraded), not by its own address.
        assert probe["targets"]["outside service"] == f"outside saw {outside.host_address}", probe
        # Nothing private (the operator's networks), nothing of the host: dropped, so the attempts time out rather than being refused.
        assert probe["targets"]["private network"] == "timeout", probe
        assert probe["targets"]["host listener"] == "timeout", probe
        assert probe["targets"]["host end of the link"] == "timeout", probe
        assert probe["targets"]["platform"] == "timeout", probe
        assert probe["targets"]["host loopback"] == "ECONNREFUSED", probe  # its own loopback
        host_listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            host_listener.accept()

        # The default: no route anywhere but its own loopback.
        fn = server.deploy("none-probe", {"app.py": PROBE_APP}, timeout_s=20)
        assert fn["network"] == "none"
        r = server.invoke("none-probe", event)
        assert r["status"] == "succeeded", r.get("error")
        probe = r["result"]
        assert probe["interfaces"] == ["lo"] and probe["gateway"] is None, probe
        assert probe["targets"]["outside service"] == "ENETUNREACH", probe

        # Switching a function to egress and back takes effect for its next instance.
        r = server.http.patch("/v1/functions/none-probe", json={"network": "egress"})
        assert r.status_code == 200 and r.json()["network"] == "egress", r.text
        r = server.invoke("none-probe", event)
        assert r["status"] == "succeeded", r.get("error")
        probe = r["result"]
        assert probe["targets"]["outside service"].startswith("outside saw "), probe

        # A reaped or deleted egress instance leaves no link behind on the host.
        digest = hashlib.sha256(str(server.data_dir.resolve()).encode()).hexdigest()[:10]
        prefix = f"nmb{digest[:4]}"
        assert len(_links(prefix)) == 2
        assert server.http.delete("/v1/functions/egress-probe").status_code == 204
        assert server.http.delete("/v1/functions/none-probe").status_code == 204
        assert wait_until(lambda: not _links(prefix), timeout=10), _links(prefix)
    finally:
        host_listener.close()
