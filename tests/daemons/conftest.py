"""Shared machinery for the real-daemon tests: rendering, free ports, daemon processes, namespaces.

Every daemon runs in the foreground as a child of the test, logs to a file in the test's tmp dir
and is stopped (SIGTERM, then SIGKILL) and reaped in fixture teardown. Every network namespace is
deleted in teardown after the daemons in it are stopped. Nothing here talks to any address outside
loopback and the test's own namespaces: DNS listens on 127.0.0.1 (or inside a namespace), DHCP
runs between two namespaces joined only by a veth pair, TFTP listens on 127.0.0.1."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import pytest

from clustcontrol.apply import write_tree
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, RenderedTree, render_all
from tests.conftest import BASE, inventory_data

PROGRAMS = (
    "dhcpd",
    "kea-dhcp4",
    "dnsmasq",
    "named",
    "named-checkconf",
    "named-checkzone",
    "dig",
    "in.tftpd",
    "curl",
    "udhcpc",
    "ip",
    "nft",
    "ganesha.nfsd",
    "rpcbind",
    "nfs-cat",
    "setpriv",
    "exportfs",
)
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 20.0
NETNS_PREFIX = "clustcontrol-test-"

_sequence = itertools.count()


def unique_tag() -> str:
    """Short and unique per test run and per call: interface names are limited to 15 bytes."""
    return f"{os.getpid()}x{next(_sequence)}"


# --- environment -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _needs_root_and_programs() -> None:
    if os.geteuid() != 0:
        pytest.skip("the daemon tests need root (network namespaces, DHCP and DNS daemons)")
    path = os.environ.get("PATH", "") + ":" + SBIN_PATH
    missing = [p for p in PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        pytest.fail(
            f"programs missing for the daemon tests: {', '.join(missing)} "
            "(scripts/install-deps installs them)"
        )


@pytest.fixture(scope="session", autouse=True)
def _remove_stale_namespaces() -> None:
    """Namespaces a killed earlier run left behind (its pytest process is gone): stop the
    daemons still inside them (they can only be that run's) and delete them."""
    if os.geteuid() != 0:
        return
    for line in run(["ip", "netns", "list"]).stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = re.fullmatch(rf"{NETNS_PREFIX}(\d+)x\d+-\w+", name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pid in run(["ip", "netns", "pids", name]).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "delete", name])


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run a short command; never raises on a non-zero exit (the tests assert on it)."""
    full_env = dict(os.environ)
    full_env["PATH"] = full_env.get("PATH", "") + ":" + SBIN_PATH
    full_env["LC_ALL"] = "C"
    if env:
        full_env.update(env)
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def must(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run a short command that has to succeed."""
    proc = run(argv, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{shlex.join(map(str, argv))} failed:\n{proc.stdout}{proc.stderr}"
    return proc


def poll(predicate: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until predicate() holds, checking every 20 ms, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A port on 127.0.0.1 that is free for both UDP and TCP right now (DNS needs both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port on 127.0.0.1")


def udp_listening(port: int, address: str = "127.0.0.1") -> bool:
    """Whether some socket of this network namespace is bound to address:port (from /proc)."""
    packed = socket.inet_aton(address)
    wanted = f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == wanted for line in list(table)[1:])


# --- inventories and rendering -------------------------------------------------------------------


def cluster(**changes: object) -> dict[str, object]:
    """The base inventory's cluster section with some keys changed."""
    section = copy.deepcopy(cast(dict[str, object], BASE["cluster"]))
    section.update(changes)
    return section


def base_nodes() -> list[dict[str, str]]:
    """A copy of the base inventory's nodes (node01, node02)."""
    return copy.deepcopy(cast(list[dict[str, str]], BASE["nodes"]))


def inventory(**overrides: object) -> Inventory:
    return parse_inventory(inventory_data(**overrides))


def render_into(inv: Inventory, out: Path) -> RenderedTree:
    """Render every output of inv under out (at its live path, like `render --out`)."""
    tree = render_all(RenderContext(inv))
    write_tree(tree, out)
    return tree


# --- daemons -------------------------------------------------------------------------------------


@dataclass
class Daemon:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    _handle: IO[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the daemon's log matches pattern (a multi-line regex); fail if it exits."""
        regex = re.compile(pattern, re.MULTILINE)

        def ready() -> bool:
            if regex.search(self.output()):
                return True
            if not self.running():
                raise AssertionError(
                    f"{self.name} exited with status {self.proc.returncode} before it was ready:\n"
                    f"{shlex.join(self.argv)}\n{self.output()}"
                )
            return False

        try:
            poll(ready, f"{self.name} to log {pattern!r}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.output()}") from None

    def stop(self) -> None:
        """SIGTERM, wait for the exit (SIGKILL after 10 s); idempotent."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._handle.close()


@dataclass
class Daemons:
    """Starts daemons for one test; the fixture stops every one of them in teardown."""

    logdir: Path
    started: list[Daemon] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        ready: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        args = [str(a) for a in argv]
        log = self.logdir / f"{name}-{len(self.started)}.log"
        handle = log.open("wb")
        full_env = dict(os.environ)
        full_env["PATH"] = full_env.get("PATH", "") + ":" + SBIN_PATH
        if env:
            full_env.update(env)
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=full_env
        )
        daemon = Daemon(name, args, proc, log, handle)
        self.started.append(daemon)
        if ready is not None:
            daemon.wait_for(ready)
        return daemon

    def stop_all(self) -> None:
        for daemon in reversed(self.started):
            daemon.stop()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    pool = Daemons(logdir)
    try:
        yield pool
    finally:
        pool.stop_all()


# --- network namespaces --------------------------------------------------------------------------


def in_netns(ns: str, *argv: str | Path) -> list[str]:
    return ["ip", "netns", "exec", ns, *(str(a) for a in argv)]


@dataclass
class Netns:
    """Creates namespaces for one test; teardown stops the test's daemons, then deletes them."""

    created: list[str] = field(default_factory=list)

    def create(self, role: str) -> str:
        name = f"{NETNS_PREFIX}{unique_tag()}-{role}"
        must(["ip", "netns", "add", name])
        self.created.append(name)
        must(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def delete_all(self) -> None:
        for name in reversed(self.created):
            run(["ip", "netns", "delete", name])
        self.created.clear()


@pytest.fixture
def netns(daemons: Daemons) -> Iterator[Netns]:
    manager = Netns()
    try:
        yield manager
    finally:
        # A namespace lives on while a process is inside it: stop the daemons first.
        daemons.stop_all()
        manager.delete_all()


@dataclass(frozen=True)
class Link:
    """Two namespaces joined by one veth pair: the master's side and a client's side."""

    server_ns: str
    client_ns: str
    server_if: str
    client_if: str

    def server(self, *argv: str | Path) -> list[str]:
        return in_netns(self.server_ns, *argv)

    def client(self, *argv: str | Path) -> list[str]:
        return in_netns(self.client_ns, *argv)

    def set_client_mac(self, mac: str) -> None:
        must(["ip", "-n", self.client_ns, "link", "set", self.client_if, "down"])
        must(["ip", "-n", self.client_ns, "link", "set", self.client_if, "address", mac])
        must(["ip", "-n", self.client_ns, "link", "set", self.client_if, "up"])


def make_link(netns: Netns, server_cidr: str, *, server_ns: str | None = None) -> Link:
    """A veth pair created directly inside two namespaces (never in the host namespace): a
    fresh client one, and `server_ns` (an earlier link's, for a server with two links) or a
    fresh one."""
    server_ns = server_ns or netns.create("srv")
    client_ns = netns.create("cli")
    tag = unique_tag()
    link = Link(server_ns, client_ns, f"ccs{tag}", f"ccc{tag}")
    veth = ["type", "veth", "peer", "name", link.client_if, "netns", client_ns]
    must(["ip", "link", "add", link.server_if, "netns", server_ns, *veth])
    must(["ip", "-n", server_ns, "addr", "add", server_cidr, "dev", link.server_if])
    must(["ip", "-n", server_ns, "link", "set", link.server_if, "up"])
    must(["ip", "-n", client_ns, "link", "set", link.client_if, "up"])
    return link


# rpcbind and ganesha get a /run and /var/lib/nfs of their own (no other rpcbind sees their
# registrations, rpcbind's socket lives in /run) and die with their PID namespace when the test
# stops them.
_GANESHA = """
mount -t tmpfs none /run && mount -t tmpfs none /var/lib/nfs
mkdir -p /run/ganesha /run/rpcbind /var/lib/nfs/ganesha
rpcbind -f -w &
sleep 1
exec ganesha.nfsd -F -f "$1" -L "$2" -p /run/ganesha/ganesha.pid -N NIV_EVENT
"""


def ganesha_command(conf: Path, log: Path) -> list[str | Path]:
    """rpcbind and nfs-ganesha (config `conf`, log `log`) in private mount and PID namespaces,
    to run inside a network namespace (Link.server, in_netns) as one daemon."""
    return [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
        "sh", "-euc", _GANESHA, "sh", conf, log,
    ]  # fmt: skip


@pytest.fixture
def link(netns: Netns) -> Link:
    """The base inventory's network: the master's 192.168.0.1/24 on the server side."""
    return make_link(netns, "192.168.0.1/24")


# --- named ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Named:
    daemon: Daemon
    port: int


def start_named(daemons: Daemons, root: Path, *, include: str) -> Named:
    """Run named chrooted (-t) into a rendered or applied tree, serving `include` on 127.0.0.1.

    The rendered named.conf.clustcontrol names its zone files by their absolute live paths
    (/etc/bind/clustcontrol/db.ZONE). With `-t ROOT` named chroots before it reads its
    configuration, so those live paths resolve inside ROOT and the rendered files are loaded
    byte-for-byte, without rewriting any path. Only the top-level named.conf is the test's own:
    a loopback listener on a free port, no recursion, no NOTIFY (the zones' NS is the master's
    address, which must not be contacted) and no control channel.

    named keeps running when it cannot bind its port, so a port taken between free_port() and
    named's bind is detected in /proc and retried with another port."""
    workdir = root / "run" / "named-test"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = root / "etc" / "bind" / "named.conf.test"
    for _ in range(3):
        port = free_port()
        conf.write_text(
            "options {\n"
            '    directory "/run/named-test";\n'
            '    pid-file "/run/named-test/named.pid";\n'
            f"    listen-on port {port} {{ 127.0.0.1; }};\n"
            "    listen-on-v6 { none; };\n"
            "    recursion no;\n"
            "    notify no;\n"
            "    dnssec-validation no;\n"
            "};\n"
            "controls { };\n"
            f'include "{include}";\n'
        )
        daemon = daemons.start(
            "named",
            ["named", "-g", "-u", "root", "-t", root, "-c", "/etc/bind/named.conf.test"],
            # "... running" ends the start-up; "running on Linux" and "running as:" come earlier.
            ready=r" running$",
        )
        if udp_listening(port):
            return Named(daemon, port)
        daemon.stop()
    raise AssertionError(f"named could not listen on 127.0.0.1:{port}:\n{daemon.output()}")


def dig(port: int, *query: str, server: str = "127.0.0.1") -> str:
    proc = must(["dig", f"@{server}", "-p", str(port), "+time=2", "+tries=3", *query])
    return proc.stdout


def dig_short(port: int, *query: str) -> list[str]:
    return dig(port, "+short", *query).split()


def dig_status(port: int, *query: str) -> str:
    match = re.search(r"status: (\w+)", dig(port, "+noall", "+comments", *query))
    assert match is not None, f"no status in dig's answer to {query}"
    return match.group(1)
