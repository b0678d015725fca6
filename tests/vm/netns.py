"""A network namespace holding the test cluster's master: a bridge, tap devices for node VMs,
and the daemons started inside it. Nothing in it reaches any address outside the namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def sh(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=120)


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class Namespace:
    name: str
    bridge: str = "ccbr0"
    daemons: dict[str, Daemon] = field(default_factory=dict)
    taps: list[str] = field(default_factory=list)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(self.exec_argv(argv), check=check)

    def create(self, address: str, prefixlen: int) -> None:
        sh(["ip", "netns", "add", self.name])
        self.run(["ip", "link", "set", "lo", "up"])
        self.run(["ip", "link", "add", self.bridge, "type", "bridge", "forward_delay", "0"])
        self.run(["ip", "addr", "add", f"{address}/{prefixlen}", "dev", self.bridge])
        # iPXE waits ~16 s for an IPv6 router advertisement unless something sends one.
        self.run(["ip", "-6", "addr", "add", "fd99::1/64", "dev", self.bridge])
        self.run(["ip", "link", "set", self.bridge, "up"])

    def add_tap(self, tap: str) -> None:
        self.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        self.run(["ip", "link", "set", tap, "master", self.bridge, "up"])
        self.taps.append(tap)

    def start(self, name: str, argv: Sequence[str], log: Path) -> Daemon:
        self.stop(name)
        handle = log.open("ab")
        process = subprocess.Popen(
            self.exec_argv(argv), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        daemon = Daemon(name, process, log)
        self.daemons[name] = daemon
        return daemon

    def stop(self, name: str) -> None:
        daemon = self.daemons.pop(name, None)
        if daemon is not None:
            daemon.stop()

    def wait_port(self, port: int, proto: str = "tcp", timeout: float = 20.0) -> None:
        """Poll until something listens on port inside the namespace."""
        flag = "-lnt" if proto == "tcp" else "-lnu"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(["ss", "-H", flag, f"sport = :{port}"], check=False).stdout
            if out.strip():
                return
            time.sleep(0.2)
        raise TimeoutError(f"nothing listens on {proto} port {port} in {self.name}")

    def destroy(self) -> None:
        for name in list(self.daemons):
            self.stop(name)
        sh(["ip", "netns", "delete", self.name], check=False)


@contextlib.contextmanager
def namespace(name: str, address: str, prefixlen: int) -> Iterator[Namespace]:
    ns = Namespace(name)
    sh(["ip", "netns", "delete", name], check=False)
    try:
        ns.create(address, prefixlen)
        yield ns
    finally:
        ns.destroy()
