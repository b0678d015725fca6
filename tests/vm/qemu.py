"""A node VM: QEMU under TCG, PXE boot from a tap device in the master's namespace, the serial
console in a log file, a local disk image."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.vm.netns import Namespace, sh


@dataclass
class BootResult:
    log: str
    seconds: float
    exit_code: int | None
    killed: bool


@dataclass
class NodeVM:
    ns: Namespace
    name: str
    mac: str
    tap: str
    disk: Path
    memory_mb: int = 1024

    def create_disk(self, size: str = "4G") -> None:
        self.disk.unlink(missing_ok=True)
        sh(["qemu-img", "create", "-q", "-f", "raw", str(self.disk), size])

    def argv(self, serial_log: Path) -> list[str]:
        return [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            str(self.memory_mb),
            "-smp",
            "1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{serial_log}",
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device",
            f"e1000,netdev=n0,mac={self.mac}",
            "-drive",
            f"file={self.disk},if=virtio,format=raw,cache=unsafe",
            "-boot",
            "n",
        ]

    def boot(
        self,
        serial_log: Path,
        timeout: float = 600,
        kill_on: str | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> BootResult:
        """Boot until the VM powers off (or timeout); with kill_on, pull the plug as soon as
        the serial log matches that regular expression; echo gets the console as it comes."""
        serial_log.unlink(missing_ok=True)
        serial_log.touch()
        start = time.monotonic()
        process = subprocess.Popen(
            self.ns.exec_argv(self.argv(serial_log)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        killed = False
        pattern = re.compile(kill_on) if kill_on else None
        shown = 0

        def show(text: str) -> None:
            nonlocal shown
            if echo is not None and len(text) > shown:
                echo(text[shown:])
                shown = len(text)

        try:
            while process.poll() is None:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"{self.name} did not power off within {timeout} s")
                text = serial_log.read_text(errors="replace")
                show(text)
                if pattern and pattern.search(text):
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
                    killed = True
                    break
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        text = serial_log.read_text(errors="replace")
        show(text)
        return BootResult(text, time.monotonic() - start, process.returncode, killed)
