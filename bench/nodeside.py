"""Drive the real node-side sync engine (src/clustcontrol/node/engine/) the
way the initramfs does: busybox sh, busybox applets first in PATH, the real rsync after them.

`node_sync(source, target, ...)` is the one entry point of the benchmarks: it starts the engine
the one way `node rehearse` and the node tests start it (clustcontrol.rehearse:
engine_environment, engine_command: engine.sh and its modules sourced), sets the CC_*
variables and calls
`cc_sync TARGET TRANSPORT MODE`, so a change of the engine (a faster path, image generations)
shows up in the numbers without any change here. The source stands for one generation's tree:
the NFS transport reads a plain local directory, the rsync transport a real `rsync --daemon` on
loopback (`RsyncDaemon`) whose module is that tree; `cc_source` is pointed at it, and the
generation is the one its etc/clustcontrol-generation names (as `image commit` writes it),
read through the transport.
Disk partitioning and mounting (cc_run) and reading the master's current-generation file are
left out: the target is a directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

from tests.node.conftest import BUSYBOX as BUSYBOX

from clustcontrol.contract import (
    DELTAS_DIR,  # the generation deltas, never copied to nodes
)

# The one way into the engine (`node rehearse` and the node tests start it the same way): the
# busybox applets the Debian initramfs takes from busybox first in PATH, the engine sourced.
from clustcontrol.rehearse import applets_dir, engine_command, engine_environment

STATE_DIR = "var/lib/clustcontrol-node"  # the engine's CC_STATE_DIR default, inside the root
LOG_DIR = "var/log/clustcontrol"
ENGINE_PATHS = (STATE_DIR, LOG_DIR)  # written by the engine, not part of the standard
NOT_COPIED = (*ENGINE_PATHS, DELTAS_DIR)

SCRIPT = r"""
cc_defaults
mkdir -p "${CC_RUN_DIR}" "${CC_TARGET}" || exit 1
CC_IMAGE="${CC_BENCH_IMAGE}"
CC_SERVER="${CC_BENCH_SERVER}"
CC_RSYNC_MODULE="${CC_BENCH_IMAGE}"
CC_RETRIES="${CC_BENCH_RETRIES}"
cc_source()
{
	case "$1" in
	nfs) echo "${CC_SOURCE_MNT}/" ;;
	rsync) echo "rsync://${CC_SERVER}:${CC_RSYNC_PORT}/${CC_RSYNC_MODULE}/" ;;
	esac
}
# The generation the tree holds (what roots/current names on a master).
cc_fetch_file "${CC_BENCH_TRANSPORT}" "$(cc_source "${CC_BENCH_TRANSPORT}")" \
	"${CC_GENERATION_FILE}" "${CC_RUN_DIR}/bench-generation" || exit 1
CC_STD_GENERATION=$(head -n 1 "${CC_RUN_DIR}/bench-generation" 2>/dev/null)
CC_STD_GENERATION="${CC_STD_GENERATION:-uncommitted}"
cc_sync "${CC_TARGET}" "${CC_BENCH_TRANSPORT}" "${CC_BENCH_MODE}"
"""

STATS_LINE = re.compile(r"^([A-Z][A-Za-z ]+): ([\d,]+)", re.MULTILINE)


def busybox_bin(directory: Path) -> Path:
    """A directory of busybox applet links (created once)."""
    return applets_dir(directory, BUSYBOX)


def parse_stats(text: str) -> dict[str, int]:
    """rsync --stats output -> {"Total bytes received": 1234, ...} (first value per label)."""
    stats: dict[str, int] = {}
    for label, value in STATS_LINE.findall(text):
        stats.setdefault(label, int(value.replace(",", "")))
    return stats


@dataclass
class SyncResult:
    rc: int
    seconds: float
    output: str  # the engine's console output (stdout + stderr)
    stats: dict[str, int]  # rsync --stats of the last attempt
    failed_attempts: int  # attempts cc_retry retried
    refused: int  # of which the daemon refused (max connections)

    @property
    def bytes_received(self) -> int:
        return self.stats.get("Total bytes received", 0)

    @property
    def file_bytes(self) -> int:
        return self.stats.get("Total transferred file size", 0)

    @property
    def method(self) -> str:
        """How the engine copied: skip, tar, delta or tree (from its console output)."""
        if "no transfer" in self.output:
            return "skip"
        found = re.findall(r"^clustcontrol: sync done \((\w+)\)", self.output, re.MULTILINE)
        return found[-1] if found else "unknown"


@dataclass
class RunningSync:
    proc: subprocess.Popen[str]
    run_dir: Path
    start: float

    def wait(self, timeout: float | None = None) -> SyncResult:
        out, _ = self.proc.communicate(timeout=timeout)
        seconds = time.perf_counter() - self.start
        stats_file = self.run_dir / "rsync-stats"
        stats = parse_stats(stats_file.read_text(errors="replace")) if stats_file.exists() else {}
        return SyncResult(
            rc=self.proc.returncode,
            seconds=seconds,
            output=out,
            stats=stats,
            failed_attempts=len(re.findall(r"attempt \d+ of \d+ failed", out)),
            refused=len(re.findall(r"max connections \(\d+\) reached", out)),
        )


class SyncOptions(TypedDict, total=False):
    """What a node's sync is told besides its source and target (see start_node_sync)."""

    transport: str
    mode: str
    server: str
    port: int
    image: str
    retries: int
    env: dict[str, str] | None


def start_node_sync(
    source: str | Path,
    target: Path,
    *,
    run_dir: Path,
    bbdir: Path,
    transport: str = "nfs",
    mode: str = "normal",
    server: str = "127.0.0.1",
    port: int = 873,
    image: str = "default",
    retries: int = 5,
    env: dict[str, str] | None = None,
) -> RunningSync:
    """Start one node's sync (see node_sync) and return at once."""
    settings = {
        "CC_BENCH_IMAGE": image,
        "CC_BENCH_SERVER": server,
        "CC_BENCH_RETRIES": str(retries),
        "CC_BENCH_TRANSPORT": transport,
        "CC_BENCH_MODE": mode,
        "CC_TARGET": str(target),
        "CC_SOURCE_MNT": str(source).rstrip("/"),  # the "mounted export" for transport nfs
        "CC_RSYNC_PORT": str(port),
        "CC_WARN_PAUSE": "0",
        "CC_PARTITIONS": "",
        "CC_PERSISTENT": "",
        **(env or {}),
    }
    environ = engine_environment(bbdir, run_dir, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "rsync-stats").unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        engine_command(BUSYBOX, SCRIPT),
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return RunningSync(proc, run_dir, start)


def node_sync(
    source: str | Path,
    target: Path,
    *,
    run_dir: Path,
    bbdir: Path,
    timeout: float = 3600,
    **options: Unpack[SyncOptions],
) -> SyncResult:
    """Sync target (a directory) to the standard with the engine's cc_sync, as a node does at
    boot. transport "nfs": source is a local directory standing for the mounted export;
    transport "rsync": source is ignored, the node pulls rsync://server:port/image/.
    Returns the engine's status, wall time, output and the rsync statistics."""
    return start_node_sync(
        source,
        target,
        run_dir=run_dir,
        bbdir=bbdir,
        **options,
    ).wait(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RsyncDaemon:
    """`rsync --daemon` on 127.0.0.1 serving one read-only module (like the master's rsyncd)."""

    path: Path
    workdir: Path
    module: str = "default"
    max_connections: int = 0
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.workdir / "rsyncd.log"

    def start(self) -> RsyncDaemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.workdir / "rsyncd.conf"
        conf.write_text(
            "uid = root\ngid = root\nuse chroot = yes\nnumeric ids = yes\nreverse lookup = no\n"
            f"pid file = {self.workdir}/rsyncd.pid\nlock file = {self.workdir}/rsyncd.lock\n"
            f"max connections = {self.max_connections}\n"
            "refuse options = delete-excluded\n\n"
            f"[{self.module}]\n    path = {self.path}\n    read only = yes\n    list = yes\n"
            "    hosts allow = 127.0.0.1\n"
        )
        self.log.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                "rsync",
                "--daemon",
                "--no-detach",
                f"--config={conf}",
                f"--port={self.port}",
                "--address=127.0.0.1",
                f"--log-file={self.log}",
            ],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("rsync daemon did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    @staticmethod
    def refusals(log_text: str) -> int:
        return len(re.findall(r"max connections \(\d+\) reached", log_text))


class CountingProxy:
    """A TCP relay on 127.0.0.1 in front of a daemon that counts the bytes it relays over all
    connections, from the daemon to its clients (`downstream`: what a node read from the
    master) and back (`upstream`: block checksums, requests), counted at the transport (rsync's
    own statistics cover one connection, without protocol set-up)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.downstream = 0
        self.upstream = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst, count in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, count), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self._lock:
                    if down:
                        self.downstream += len(data)
                    else:
                        self.upstream += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._server.close()
        for t in self._threads:
            t.join(timeout=10)


@contextlib.contextmanager
def counting_proxy(target_port: int) -> Iterator[CountingProxy]:
    proxy = CountingProxy(target_port)
    try:
        yield proxy
    finally:
        proxy.close()


@contextlib.contextmanager
def rsync_daemon(
    path: Path, workdir: Path, *, module: str = "default", max_connections: int = 0
) -> Iterator[RsyncDaemon]:
    daemon = RsyncDaemon(path, workdir, module, max_connections).start()
    try:
        yield daemon
    finally:
        daemon.stop()
