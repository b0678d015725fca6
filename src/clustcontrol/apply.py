"""Install rendered outputs into the live system (or under a prefix): plan, check, replace, reload.

plan      compare every selected output with what is installed; nothing changed -> no write
check     the real programs' checkers on the new files (verify.py)
replace   atomic write per file (temp + fsync + rename), managed blocks merged in place,
          files installed by an earlier apply and no longer rendered are removed
reload    once per affected service, only on the live root
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clustcontrol.errors import ClustcontrolError
from clustcontrol.fsutil import (
    atomic_write,
    atomic_write_many,
    exclusive_lock,
    read_bytes_or_none,
)
from clustcontrol.inventory.model import Inventory
from clustcontrol.render.base import Output, RenderedTree, Service
from clustcontrol.run import run, which
from clustcontrol.verify import CheckResult, check_outputs, require_clean

MANIFEST = "/var/lib/clustcontrol/installed.json"
LOCK = "/run/clustcontrol-apply.lock"
BLOCK_BEGIN = "# BEGIN clustcontrol managed block: generated, do not edit"
BLOCK_END = "# END clustcontrol managed block"

Action = Literal["create", "update", "remove"]

RELOADS: dict[Service, list[list[str]]] = {
    "dns": [["rndc", "reload"]],
    "dhcp-isc": [["systemctl", "restart", "isc-dhcp-server"]],
    "dhcp-kea": [["systemctl", "restart", "kea-dhcp4-server"]],
    "dhcp-dnsmasq": [["systemctl", "restart", "dnsmasq"]],
    "tftp": [["systemctl", "restart", "tftpd-hpa"]],
    "nfs-kernel": [["exportfs", "-ra"]],
    "nfs-ganesha": [["systemctl", "restart", "nfs-ganesha"]],
    "bind-mount": [["mount", "-a", "-t", "none", "-O", "bind"]],
    "rsyncd": [],
    "pxe": [],
    "control": [],
}


DHCP_SERVICES: dict[str, Service] = {
    "isc": "dhcp-isc",
    "kea": "dhcp-kea",
    "dnsmasq": "dhcp-dnsmasq",
}


def selected_services(inv: Inventory) -> set[Service]:
    """What apply installs: the chosen DHCP and NFS servers, rsyncd when an image uses it."""
    services: set[Service] = {"dns", "tftp", "pxe", "control", "bind-mount"}
    services.add(DHCP_SERVICES[inv.cluster.dhcp_server])
    services.add("nfs-kernel" if inv.cluster.nfs_server == "kernel" else "nfs-ganesha")
    if any(inv.transport_of(name) == "rsync" for name in inv.images):
        services.add("rsyncd")
    return services


def merge_block(existing: bytes | None, block: bytes) -> bytes:
    """Put block between the BEGIN/END markers of existing (appending them when absent)."""
    lines = (existing or b"").decode().splitlines()
    body = block.decode().splitlines()
    managed = [BLOCK_BEGIN, *body, BLOCK_END]
    if BLOCK_BEGIN in lines and BLOCK_END in lines[lines.index(BLOCK_BEGIN) :]:
        start = lines.index(BLOCK_BEGIN)
        end = lines.index(BLOCK_END, start)
        merged = lines[:start] + managed + lines[end + 1 :]
    else:
        merged = [*lines, *managed]
    return ("\n".join(merged) + "\n").encode()


@dataclass(frozen=True)
class Change:
    """One file to create, update or remove, with both contents for the diff.

    `path` is absolute as seen on the target system (the installer puts it under its root),
    `old` and `new` are the current and wanted contents (None: absent), `mode` the permission
    bits a new file gets, `service` the owner (None for a stale file being removed)."""

    path: str
    action: Action
    service: Service | None
    old: bytes | None
    new: bytes | None
    mode: int = 0o644

    def diff(self) -> str:
        """A unified diff of old and new (a/PATH, b/PATH, /dev/null for an absent side), or a
        one-line "Binary file ..." note when either side has a NUL byte in its first 8 KiB."""
        if _binary(self.old) or _binary(self.new):
            return f"Binary file {self.path} {'removed' if self.new is None else 'differs'}\n"
        old = (self.old or b"").decode().splitlines(keepends=True)
        new = (self.new or b"").decode().splitlines(keepends=True)
        before = f"a{self.path}" if self.old is not None else "/dev/null"
        after = f"b{self.path}" if self.new is not None else "/dev/null"
        return "".join(difflib.unified_diff(old, new, before, after))


def _binary(data: bytes | None) -> bool:
    return data is not None and b"\0" in data[:8192]


@dataclass
class ApplyResult:
    """What apply_tree did (or, with `dry_run`, would do): the changes, how many outputs were
    already up to date, the checker results and the reload commands run (argv joined by spaces).
    """

    changes: list[Change]
    unchanged: int
    checks: list[CheckResult] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    dry_run: bool = False


class Installer:
    """All paths hang off one root, so tests (and image builders) can apply under a prefix."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def live(self, path: str) -> Path:
        """The real location of an absolute target path under the installer's root."""
        return self.root / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        """The installed content of an absolute target path, or None when it does not exist."""
        return read_bytes_or_none(self.live(path))

    def _manifest(self) -> set[str]:
        data = self.read(MANIFEST)
        if data is None:
            return set()
        try:
            return set(json.loads(data)["files"])
        except (ValueError, KeyError, TypeError):
            raise ClustcontrolError(
                f"{self.live(MANIFEST)} is corrupt", hint="remove it; the next apply rewrites it"
            ) from None

    def plan(
        self, outputs: Iterable[Output], *, partial: bool = False
    ) -> tuple[list[Change], int, list[str]]:
        """Changes that install outputs, how many are unchanged, and the new manifest.

        Returns (changes, unchanged count, sorted target paths for the manifest); block outputs
        are merged into the installed file and are not listed in the manifest. Raises
        ClustcontrolError when the existing manifest is not valid JSON of the expected shape.

        A partial plan (some services only) removes nothing and keeps every manifest entry: a
        file another service installed, or one no longer rendered, stays until the next full
        apply."""
        changes: list[Change] = []
        unchanged = 0
        installed: list[str] = []
        for output in outputs:
            old = self.read(output.path)
            new = merge_block(old, output.data()) if output.block else output.data()
            if not output.block:
                installed.append(output.path)
            if old == new:
                unchanged += 1
                continue
            action: Action = "create" if old is None else "update"
            changes.append(Change(output.path, action, output.service, old, new, output.mode))
        if partial:
            return changes, unchanged, sorted(self._manifest() | set(installed))
        for stale in sorted(self._manifest() - set(installed)):
            old = self.read(stale)
            if old is not None:
                changes.append(Change(stale, "remove", None, old, None))
        return changes, unchanged, sorted(installed)

    def write(self, changes: Iterable[Change]) -> None:
        """Carry out changes: atomic replacement per file (an existing file keeps its mode).

        Removals unlink the file (missing is fine). Raises OSError when a write fails; files not
        yet renamed keep their old content."""
        changes = list(changes)
        # One flush for the whole batch; each file is still replaced by a single rename.
        atomic_write_many(
            [(self.live(c.path), c.new, c.mode) for c in changes if c.new is not None]
        )
        for change in changes:
            if change.new is None:
                self.live(change.path).unlink(missing_ok=True)

    def install(self, changes: list[Change], installed: list[str]) -> None:
        """Write the changes, then the manifest (MANIFEST, JSON {"files": [...]}) listing the
        `installed` target paths, when it differs. Raises OSError when a write fails."""
        self.write(changes)
        manifest = json.dumps({"files": installed}, indent=0).encode() + b"\n"
        if self.read(MANIFEST) != manifest:
            atomic_write(self.live(MANIFEST), manifest)


def reload_services(services: Iterable[Service]) -> list[str]:
    """Run the RELOADS commands of each service once (sorted, duplicates dropped).

    A command whose program is not installed is skipped. Returns the commands run, each argv
    joined by spaces. Raises CommandError when one fails or takes more than 120 seconds."""
    done: list[str] = []
    for service in sorted(set(services)):
        for argv in RELOADS[service]:
            if which(argv[0]) is None:
                continue
            run(argv, timeout=120)
            done.append(" ".join(argv))
    return done


def apply_tree(
    inv: Inventory,
    tree: RenderedTree,
    root: Path,
    *,
    dry_run: bool = False,
    check: bool = True,
    reload: bool = False,
    services: Collection[Service] | None = None,
) -> ApplyResult:
    """Install the tree's outputs of the selected services (all of them, or those of `services`
    only: a partial apply, see Installer.plan).

    Files go under `root` (Path("/") for the live system). With `check` the changed files are
    first checked with the services' own programs (verify.check_outputs); with `dry_run`
    nothing is written, not even the lock; with `reload` the affected services are reloaded.
    Raises ClustcontrolError when `reload` is asked under a root other than /, LockedError when
    another apply holds the lock, InvalidInputError when a checker rejects a file (nothing is
    installed then), CommandError when a reload fails and OSError when a write fails."""
    if reload and root.resolve() != Path("/"):
        raise ClustcontrolError("--reload only makes sense on the live root, not under --root")
    selected = selected_services(inv)
    if services is not None:
        selected &= set(services)
    outputs = [o for o in tree if o.service in selected]
    installer = Installer(root)
    # A dry run writes nothing, not even the lock file.
    lock = contextlib.nullcontext() if dry_run else exclusive_lock(installer.live(LOCK))
    with lock:
        changes, unchanged, installed = installer.plan(outputs, partial=services is not None)
        changed_paths = {c.path for c in changes}
        checks: list[CheckResult] = []
        if check and changes:
            checks = check_outputs(o for o in outputs if o.path in changed_paths)
            require_clean(checks)
        result = ApplyResult(changes, unchanged, checks, dry_run=dry_run)
        if dry_run:
            return result
        installer.install(changes, installed)
        if reload:
            result.reloaded = reload_services(c.service for c in changes if c.service)
        return result


def write_tree(tree: RenderedTree, out: Path) -> int:
    """`render --out`: every output (all services) under out, blocks as the block text alone.

    Returns how many files were written; identical files are left untouched. Raises OSError
    when a file cannot be written."""
    written = 0
    for output in tree:
        target = out / output.path.lstrip("/")
        data = output.data()
        if read_bytes_or_none(target) != data:
            atomic_write(target, data, mode=output.mode)
            written += 1
    return written
