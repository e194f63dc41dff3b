"""The pods' network: one Linux network namespace per test bed, reached from the host
through a veth pair, so that pod IPs are real addresses that only this machine routes.

Layout of the /16 a test bed takes (the first of 10.244/16 … 10.254/16 that the host
routes nowhere yet):

- `x.y.0.0/18`   KWOK's simulated pods (nothing listens there: a dial is refused at once);
- `x.y.64.0/18`  the pods `PodRunner` runs, each server bound to its pod IP;
- `x.y.128.0/17` Service ClusterIPs (nothing dials them; were it to, it would be refused).

The host routes the whole /16 into the veth (`src` a link-local address of the host
end); inside the namespace the /16 is a `local` route, so any of its addresses can be
bound and nothing sent there leaves the namespace. Traffic to pods therefore never
reaches another machine, whatever the host's default route says.

The other way round, the namespace routes nothing but the /16 and the host end's address,
and its resolver (`/etc/netns/<name>/resolv.conf`, which `ip netns exec` mounts over
/etc/resolv.conf) is its own loopback, where nothing answers: whatever a pod dials, it
reaches no other machine either. What pods may reach on the host (the platform's MinIO)
is forwarded to them on the host end's address (`forwarding`). Making the network needs
root (CAP_NET_ADMIN), as `ip netns` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.testbed.cache import cache_root

NETNS_PREFIX = "modelserve-pods-"
# Candidate /16s, one per test bed running at once on this machine.
CANDIDATE_SECOND_OCTETS = range(244, 255)


class PodNetworkError(RuntimeError):
    """The pod network cannot be made, or an address would leave it."""


def _ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PodNetworkError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Layout:
    """The address plan of one test bed (see the module's docstring)."""

    network: ipaddress.IPv4Network

    @classmethod
    def for_octet(cls, octet: int) -> Layout:
        return cls(ipaddress.IPv4Network(f"10.{octet}.0.0/16"))

    @property
    def simulated_pods(self) -> ipaddress.IPv4Network:
        return next(self.network.subnets(new_prefix=18))

    @property
    def running_pods(self) -> ipaddress.IPv4Network:
        return list(self.network.subnets(new_prefix=18))[1]

    @property
    def services(self) -> ipaddress.IPv4Network:
        return list(self.network.subnets(new_prefix=17))[1]

    @property
    def first_service_ip(self) -> str:
        return str(self.services.network_address + 1)

    @property
    def namespace_address(self) -> str:
        """The namespace's own source address towards the host: never a pod's."""
        return str(self.running_pods.broadcast_address - 1)

    @property
    def host_address(self) -> str:
        """The host end's source address: link-local, outside the /16, one per octet."""
        return f"169.254.{self.network.network_address.packed[1]}.1"


def _routed_elsewhere(network: ipaddress.IPv4Network) -> bool:
    """Whether the host has a route for (part of) `network` other than its default."""
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("broadcast", "local"):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Network(dst, strict=False).overlaps(network):
                return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> None:
    """Namespaces of test beds whose process died without removing them."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NETNS_PREFIX):
            continue
        owner = name.removeprefix(NETNS_PREFIX).split("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            with contextlib.suppress(PodNetworkError):
                _ip("netns", "del", name)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Test beds starting at once must not pick the same /16."""
    path = cache_root() / "pod-network.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class PodNetwork:
    """A made network namespace; `allocate` hands out pod IPs, `release` takes them back."""

    name: str
    layout: Layout
    host_device: str
    _used: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def exec_prefix(self) -> list[str]:
        """What a command is prefixed with to run inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def allocate(self) -> str:
        with self._lock:
            for address in self.layout.running_pods.hosts():
                text = str(address)
                if text not in self._used and text != self.layout.namespace_address:
                    self._used.add(text)
                    return text
        raise PodNetworkError(f"no free pod IP left in {self.layout.running_pods}")

    def release(self, address: str) -> None:
        with self._lock:
            self._used.discard(address)

    def check_route(self, address: str) -> None:
        """Refuse an address that the host would send anywhere but into this namespace."""
        ip = ipaddress.IPv4Address(address)
        if ip not in self.layout.running_pods:
            raise PodNetworkError(f"{address} is not in the pods' range {self.layout.running_pods}")
        found = json.loads(_ip("-j", "route", "get", address) or "[]")
        device = found[0].get("dev") if found else None
        if device != self.host_device:
            raise PodNetworkError(
                f"{address} would route through {device!r}, not the pod network's "
                f"{self.host_device!r}: refusing to start a pod there"
            )

    @property
    def config_folder(self) -> Path:
        """Files `ip netns exec` mounts over /etc inside the namespace."""
        return Path("/etc/netns") / self.name

    def remove(self) -> None:
        # Deleting the namespace destroys its veth end, hence the pair and its routes, but
        # the kernel frees a namespace lazily: remove the host end now.
        with contextlib.suppress(PodNetworkError):
            _ip("link", "del", self.host_device)
        with contextlib.suppress(PodNetworkError):
            _ip("netns", "del", self.name)
        shutil.rmtree(self.config_folder, ignore_errors=True)


def _commands(name: str, layout: Layout, host: str, inner: str) -> Sequence[tuple[str, ...]]:
    cidr = str(layout.network)
    return (
        ("link", "add", host, "type", "veth", "peer", "name", inner, "netns", name),
        ("addr", "add", f"{layout.host_address}/32", "dev", host),
        ("link", "set", host, "up"),
        ("route", "add", cidr, "dev", host, "src", layout.host_address),
    )


def _inner_commands(layout: Layout, inner: str) -> Sequence[tuple[str, ...]]:
    return (
        ("link", "set", "lo", "up"),
        ("link", "set", inner, "up"),
        # Every address of the /16 is this namespace's own: bindable, and never forwarded.
        ("route", "add", "local", str(layout.network), "dev", "lo", "table", "local"),
        # What the namespace dials itself (a host service) leaves from an address of its own.
        ("addr", "add", f"{layout.namespace_address}/32", "dev", inner),
        (
            "route",
            "add",
            f"{layout.host_address}/32",
            "dev",
            inner,
            "src",
            layout.namespace_address,
        ),
    )


def create_pod_network() -> PodNetwork:
    """Make the namespace, the veth pair and the routes of a free /16."""
    if os.geteuid() != 0:
        raise PodNetworkError(
            "the test bed's pod network needs root (it makes a network namespace and a "
            "veth pair with `ip`): run make dev / make test as root"
        )
    remove_stale_namespaces()
    suffix = f"{os.getpid()}-{os.urandom(2).hex()}"
    name = NETNS_PREFIX + suffix
    tag = os.urandom(3).hex()
    host, inner = f"msp{tag}h", f"msp{tag}n"
    with _machine_lock():
        octet = next(
            (
                o
                for o in CANDIDATE_SECOND_OCTETS
                if not _routed_elsewhere(Layout.for_octet(o).network)
            ),
            None,
        )
        if octet is None:
            raise PodNetworkError("every candidate pod range 10.244-254.0.0/16 is in use")
        layout = Layout.for_octet(octet)
        _ip("netns", "add", name)
        network = PodNetwork(name, layout, host)
        try:
            for args in _commands(name, layout, host, inner):
                _ip(*args)
            for args in _inner_commands(layout, inner):
                _ip(*args, netns=name)
            network.config_folder.mkdir(parents=True, exist_ok=True)
            # No resolver: a name a pod looks up is never asked of any server.
            (network.config_folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        except BaseException:
            network.remove()
            raise
    return network
