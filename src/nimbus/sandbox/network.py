"""Egress networking for sandboxed instances (``network: egress``).

An instance with ``network: none`` (the default) has only its own loopback. An
instance with ``network: egress`` also gets a veth pair: ``eth0`` inside its
network namespace with a /30 from the egress subnet (``10.213.0.0/16`` unless
set), the other end (``nmb<tag><N>``) on the host, and a default route through it. The host forwards
and masquerades that traffic to its outside networks, and an nftables table
``inet nimbus_<tag>`` makes sure an instance reaches *only* the outside:

- nothing from an ``nmb*`` interface is delivered to the host itself (no
  platform API, no service bound on any host address, loopback included);
- nothing is forwarded from one instance to another;
- nothing goes to private, shared (100.64/10), loopback, link-local (cloud
  metadata), multicast or reserved addresses, and no IPv6: egress means the
  public outside, not the operator's own networks;
- nothing from outside may open a connection to an instance (only replies
  come back).

The platform creates the pair and moves one end into the instance's namespace
and configures both (``ip``, ``nsenter``) while the instance waits; its
function code starts only once the link is up. Needs ``ip`` (iproute2) and ``nft`` (nftables), and turns on
``net.ipv4.ip_forward`` for the host.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("nimbus.sandbox")

PREFIX = 30
#: Every Nimbus egress link on the host starts with this; the rules of each platform
#: refuse traffic from *any* of them to the host and between them.
IFACE_PREFIX = "nmb"


#: Never reachable with egress: this host's and private networks (the operator's LAN or
#: VPC, cloud metadata services), loopback, link-local, multicast and reserved space.
NEVER = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


def _rules(table: str, subnet: ipaddress.IPv4Network) -> str:
    return f"""
table inet {table} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{IFACE_PREFIX}*" drop
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    iifname "{IFACE_PREFIX}*" oifname "{IFACE_PREFIX}*" drop
    iifname "{IFACE_PREFIX}*" ip daddr {{ {", ".join(NEVER)} }} drop
    iifname "{IFACE_PREFIX}*" meta nfproto ipv6 drop
    oifname "{IFACE_PREFIX}*" ct state established,related accept
    oifname "{IFACE_PREFIX}*" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {subnet} oifname != "{IFACE_PREFIX}*" masquerade
  }}
}}
"""


class NetworkUnavailableError(Exception):
    """Egress cannot be offered on this host (missing tools or permissions)."""


@dataclass(frozen=True)
class Lease:
    """One instance's link: addresses inside and on the host."""

    index: int
    host_iface: str
    address: str  # the instance's, on eth0
    gateway: str  # the host end
    prefix: int = PREFIX


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise NetworkUnavailableError(f"{' '.join(argv[:3])}: {result.stderr.strip()}")


class EgressNetwork:
    """Egress links of one platform. ``tag`` (hex) tells its links and nftables table
    apart from those of other Nimbus servers on the host; ``subnet`` is the block its
    instances' /30s come from (give each server on a host its own)."""

    def __init__(self, tag: str, subnet: str = "10.213.0.0/16") -> None:
        network = ipaddress.ip_network(subnet)
        if not isinstance(network, ipaddress.IPv4Network) or network.prefixlen > 28:
            raise ValueError(f"egress subnet must be an IPv4 block of /28 or larger, got {subnet}")
        self._subnet: ipaddress.IPv4Network = network
        self._iface_prefix = f"{IFACE_PREFIX}{tag[:4]}"
        self._table = f"nimbus_{tag[:8]}"
        # index 0 would be the block's own network address; at most 0xffff links
        count = min(self._subnet.num_addresses // 4, 0x10000)
        self._free = list(range(count - 1, 0, -1))
        self._ready = False
        self._error: str | None = None

    def availability(self) -> str | None:
        """None when egress works here, else why not (checked once, lazily)."""
        if not self._ready and self._error is None:
            try:
                self._setup()
                self._ready = True
            except NetworkUnavailableError as exc:
                self._error = str(exc)
        return self._error

    def _setup(self) -> None:
        for tool in ("ip", "nft", "nsenter"):
            if shutil.which(tool) is None:
                raise NetworkUnavailableError(f"'{tool}' is not installed")
        try:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        except OSError as exc:
            raise NetworkUnavailableError(f"cannot enable IP forwarding: {exc}") from exc
        subprocess.run(["nft", "delete", "table", "inet", self._table], capture_output=True)
        _run(["nft", "-f", "-"], _rules(self._table, self._subnet))
        # Links left by an earlier run whose instances are gone.
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
        for line in links.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(self._iface_prefix):
                subprocess.run(["ip", "link", "del", name], capture_output=True)

    def attach(self, pid: int) -> Lease:
        """Create a link whose inner end is ``eth0`` in the network namespace of ``pid``."""
        reason = self.availability()
        if reason is not None:
            raise NetworkUnavailableError(reason)
        if not self._free:
            raise NetworkUnavailableError("no free egress address left")
        index = self._free.pop()
        base = int(self._subnet.network_address) + index * 4
        lease = Lease(
            index,
            f"{self._iface_prefix}{index:x}",
            str(ipaddress.ip_address(base + 2)),
            str(ipaddress.ip_address(base + 1)),
        )
        try:
            _run(
                ["ip", "-batch", "-"],
                (
                    f"link add {lease.host_iface} type veth peer name eth0 netns {pid}\n"
                    f"addr add {lease.gateway}/{PREFIX} dev {lease.host_iface}\n"
                    f"link set {lease.host_iface} up\n"
                ),
            )
            _run(
                ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-batch", "-"],
                (
                    f"addr add {lease.address}/{PREFIX} dev eth0\n"
                    "link set eth0 up\n"
                    f"route add default via {lease.gateway}\n"
                ),
            )
        except NetworkUnavailableError:
            self.release(lease)
            raise
        return lease

    def release(self, lease: Lease) -> None:
        """Remove the host end (the pair goes with it) and free the address."""
        subprocess.run(["ip", "link", "del", lease.host_iface], capture_output=True)
        self._free.append(lease.index)

    def close(self) -> None:
        if self._ready:
            subprocess.run(["nft", "delete", "table", "inet", self._table], capture_output=True)
