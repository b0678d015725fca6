"""Install rendered outputs into the live system (or under a prefix): plan, check, replace, reload.

plan      compare every selected output with what is installed; nothing changed -> no write
check     the real programs' checkers on the new files (verify.py)
replace   atomic write per file (temp + fsync + rename), managed blocks merged in place,
          files installed by an earlier apply and no longer rendered are removed, or put back
          as the distribution had them (originals.py)
reload    once per affected service, only on the live root

Every path is resolved inside the root (rootdir.RootDir): no manifest entry and no symbolic
link leads outside it, and a symbolic link at a target path is refused, never read or replaced.
A manifest entry that is no path a renderer writes (render.paths) stops apply: whoever wrote
it, apply never removes anything but its own kinds of files.
The manifest lists every path an apply may leave behind before the first rename (the old and
the new paths), and only the new ones once all is in place; temp files a killed apply left
are removed by the next one.

A file that exists but is not in the manifest (the distribution's /etc/kea/kea-dhcp4.conf) is
not apply's: before apply first replaces it (or records it unchanged), it keeps the original in
ORIGINALS (originals.OriginalStore: bytes, mode, owner). When the path is no longer rendered,
the original is written back (action "restore") instead of the file being removed, then the
manifest drops the path, then the saved copy is dropped. At every point a killed apply stops,
each original is either the live file or saved with the path still in the manifest (see
Installer.install).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import posixpath
import re
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clustcontrol.errors import ClustcontrolError, InvalidInputError, UnsafePathError
from clustcontrol.export_filesystems import exposure, placements
from clustcontrol.inventory.model import Inventory
from clustcontrol.originals import OriginalStore
from clustcontrol.render.base import Output, RenderedTree, Service
from clustcontrol.render.firewall import REMOVE_TABLE, UNIT, uses_rsync
from clustcontrol.render.nfs import control_mount_point
from clustcontrol.render.paths import could_render
from clustcontrol.rootdir import RootDir, is_target_path
from clustcontrol.run import require, run, which
from clustcontrol.verify import CheckResult, check_outputs, require_clean

MANIFEST = "/var/lib/clustcontrol/installed.json"
LOCK = "/run/clustcontrol-apply.lock"
#: The originals of the files apply took over (originals.OriginalStore), beside the manifest.
ORIGINALS = posixpath.join(posixpath.dirname(MANIFEST), "originals")
BLOCK_BEGIN = "# BEGIN clustcontrol managed block: generated, do not edit"
BLOCK_END = "# END clustcontrol managed block"

Action = Literal["create", "update", "remove", "restore"]

RELOADS: dict[Service, list[list[str]]] = {
    "dns": [["rndc", "reload"]],
    "dhcp-isc": [["systemctl", "restart", "isc-dhcp-server"]],
    "dhcp-kea": [["systemctl", "restart", "kea-dhcp4-server"]],
    "dhcp-dnsmasq": [["systemctl", "restart", "dnsmasq"]],
    "tftp": [["systemctl", "restart", "tftpd-hpa"]],
    "nfs-kernel": [["exportfs", "-ra"]],
    # Debian's unit (nfs-kernel-server is an alias): rpc.nfsd reads its listen address and
    # rpc.mountd its port at start; restarting nfs-server restarts nfs-mountd (BindsTo= it).
    "nfsd": [["systemctl", "restart", "nfs-server"]],
    "nfs-ganesha": [["systemctl", "restart", "nfs-ganesha"]],
    "bind-mount": [["mount", "-a", "-t", "none", "-O", "bind"]],
    "rsyncd": [],
    "pxe": [],
    "control": [],
    # The unit or its drop-in may be new: daemon-reload first. reload-or-restart starts the
    # unit when it is not active (nft -f) and reloads it otherwise (nft -f again: the ruleset
    # replaces its table in one transaction).
    "firewall": [["systemctl", "daemon-reload"], ["systemctl", "reload-or-restart", UNIT]],
}

# What runs when apply removes the files of a service it no longer installs (e.g. the firewall
# turned off). The table goes whatever systemd knows of the unit (its file is already gone):
# nft adds the table if absent and deletes it, in one transaction; then systemd forgets the
# unit and its drop-in.
STOPS: dict[Service, list[list[str]]] = {
    "firewall": [["nft", REMOVE_TABLE], ["systemctl", "daemon-reload"]],
    # Another DHCP server was chosen: the old one would keep answering on port 67 with the
    # configuration it read. dnsmasq may serve the site's DNS as well: restarted without our
    # drop-in, not stopped.
    "dhcp-isc": [["systemctl", "stop", "isc-dhcp-server"]],
    "dhcp-kea": [["systemctl", "stop", "kea-dhcp4-server"]],
    "dhcp-dnsmasq": [["systemctl", "restart", "dnsmasq"]],
    # nfs-ganesha was chosen: the kernel server drops our exports (exportfs(8) -r: the exports
    # files re-read, what they no longer name is unexported) and frees port 2049 for ganesha.
    "nfs-kernel": [["exportfs", "-ra"]],
    "nfsd": [["systemctl", "stop", "nfs-server"]],
    # The kernel server was chosen: ganesha would keep serving the exports and port 2049.
    "nfs-ganesha": [["systemctl", "stop", "nfs-ganesha"]],
}


DHCP_SERVICES: dict[str, Service] = {
    "isc": "dhcp-isc",
    "kea": "dhcp-kea",
    "dnsmasq": "dhcp-dnsmasq",
}


def selected_services(inv: Inventory) -> set[Service]:
    """What apply installs: the chosen DHCP and NFS servers (the kernel's: its exports and its
    nfs.conf.d file), rsyncd when an image uses it, the firewall when cluster.firewall is true."""
    services: set[Service] = {"dns", "tftp", "pxe", "control", "bind-mount"}
    services.add(DHCP_SERVICES[inv.cluster.dhcp_server])
    if inv.cluster.nfs_server == "kernel":
        services |= {"nfs-kernel", "nfsd"}
    else:
        services.add("nfs-ganesha")
    if uses_rsync(inv):
        services.add("rsyncd")
    if inv.cluster.firewall:
        services.add("firewall")
    return services


def merge_block(existing: bytes | None, block: bytes, where: str = "the file") -> bytes:
    """Put `block` between the BEGIN/END marker lines of `existing` (BLOCK_BEGIN, BLOCK_END),
    or append the markers and the block when the file has neither.

    Exact on bytes: lines end at b"\\n" only (a CR, a form feed or a byte that is not UTF-8
    is part of its line, as the file's programs read it: fstab(5) is read by getmntent(3), line
    by line), and everything outside the block is kept byte for byte, a missing final newline
    included (a newline is added before an appended block only). A marker is a line that is
    exactly BLOCK_BEGIN or BLOCK_END. `block` is the block's text (a newline is added when it
    lacks the final one); `where` names the file in messages.

    Raises InvalidInputError, one line per problem naming `where` and the marker's line number,
    when the markers do not make one block (a BEGIN without its END after it, an END without a
    BEGIN, two blocks): replacing from a stray BEGIN to a later END would delete the administrator's
    lines in between, so nothing is merged."""
    data = existing or b""
    lines = data.split(b"\n")
    markers = [(i, line == _BEGIN) for i, line in enumerate(lines) if line in (_BEGIN, _END)]
    body = block if not block or block.endswith(b"\n") else block + b"\n"
    managed = _BEGIN + b"\n" + body + _END + b"\n"
    if not markers:
        return data + (b"\n" if data and not data.endswith(b"\n") else b"") + managed
    blocks, problems = _blocks(markers)
    if not problems and len(blocks) == 1:
        first, last = blocks[0]
        start = sum(len(line) + 1 for line in lines[:first])
        stop = min(sum(len(line) + 1 for line in lines[: last + 1]), len(data))
        return data[:start] + managed + data[stop:]
    raise InvalidInputError(
        [f"{where}: line {i + 1}: {why}" for i, why in problems],
        hint=f"leave one {BLOCK_BEGIN!r} line and one {BLOCK_END!r} line after it (or none), "
        "then run the command again",
    )


_BEGIN = BLOCK_BEGIN.encode()
_END = BLOCK_END.encode()


def _blocks(markers: list[tuple[int, bool]]) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """Pair the marker lines ((0-based line, is BEGIN), in file order): the (BEGIN, END) pairs
    and the problems ((0-based line, why), in file order) of those that pair with nothing, or
    of every block after the first."""
    blocks: list[tuple[int, int]] = []
    problems: list[tuple[int, str]] = []
    opened: int | None = None
    for index, is_begin in markers:
        if is_begin:
            if opened is not None:
                problems.append(
                    (opened, f"no end marker before the next begin marker (line {index + 1})")
                )
            opened = index
        elif opened is None:
            problems.append((index, "an end marker without a begin marker before it"))
        else:
            blocks.append((opened, index))
            opened = None
    if opened is not None:
        problems.append((opened, "a begin marker without an end marker after it"))
    for begin, _end in blocks[1:]:
        problems.append(
            (begin, f"a second managed block (the first begins at line {blocks[0][0] + 1})")
        )
    return blocks, sorted(problems)


@dataclass(frozen=True)
class Change:
    """One file to create, update, remove or restore, with both contents for the diff.

    `path` is absolute as seen on the target system (the installer puts it under its root),
    `old` and `new` are the current and wanted contents (None: absent), `mode` the permission
    bits a new file gets, `service` the owner (None for a stale file of no known service),
    `group` the group a new file gets when the target system has it (see Output.group).
    A "restore" puts back a file apply took over (originals.Original): `new` is its original
    content, written with exactly `mode` and `ownership` (uid, gid) whatever the live file has.
    """

    path: str
    action: Action
    service: Service | None
    old: bytes | None
    new: bytes | None
    mode: int = 0o644
    group: str | None = None
    ownership: tuple[int, int] | None = None

    def diff(self) -> str:
        """A unified diff of old and new (a/PATH, b/PATH, /dev/null for an absent side), or a
        one-line "Binary file ..." note when either side has a NUL byte in its first 8 KiB.
        Lines end at "\\n" only (a form feed or CR is part of its line, as in the file), a last
        line without one is marked "\\ No newline at end of file" (as diff(1) does); bytes that
        are not UTF-8 are shown as their escapes (\\xfc). The text may hold control
        characters: the command line shows it through cli.common.printable."""
        if _binary(self.old) or _binary(self.new):
            return f"Binary file {self.path} {'removed' if self.new is None else 'differs'}\n"
        old = _text_lines(self.old or b"")
        new = _text_lines(self.new or b"")
        before = f"a{self.path}" if self.old is not None else "/dev/null"
        after = f"b{self.path}" if self.new is not None else "/dev/null"
        lines = difflib.unified_diff(old, new, before, after)
        # A last line without its newline is marked as diff(1) and git do.
        return "".join(line if line.endswith("\n") else f"{line}\n{_NO_NEWLINE}" for line in lines)


_NO_NEWLINE = "\\ No newline at end of file\n"


def _text_lines(data: bytes) -> list[str]:
    """data as text lines for a diff, each ending with its "\\n" (the last may lack it)."""
    text = data.decode("utf-8", "backslashreplace")
    return [line for line in re.split(r"(?<=\n)", text) if line]


def _binary(data: bytes | None) -> bool:
    return data is not None and b"\0" in data[:8192]


@dataclass(frozen=True)
class Plan:
    """What Installer.plan found: the changes, how many outputs are unchanged, the sorted target
    paths of the new manifest, and `taken_over`: the sorted paths that exist but are not in the
    old manifest and become apply's (changed or not), whose originals install keeps first."""

    changes: list[Change]
    unchanged: int
    installed: list[str]
    taken_over: list[str] = field(default_factory=list)


@dataclass
class ApplyResult:
    """What apply_tree did (or, with `dry_run`, would do): the changes, how many outputs were
    already up to date, the checker results, the reload commands run (argv joined by spaces),
    the temp files an interrupted apply had left, now removed (paths on this machine),
    warnings for the user, one line each (see ganesha_exposure), and the target paths whose
    originals apply keeps (would keep) in ORIGINALS before it first replaces them.
    """

    changes: list[Change]
    unchanged: int
    checks: list[CheckResult] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    dry_run: bool = False
    cleaned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class Installer:
    """All paths hang off one root, so tests (and image builders) can apply under a prefix.

    Reading, writing and removing go through rootdir.RootDir: paths are resolved inside the
    root and a symbolic link at a target path is refused (UnsafePathError). With `follow`, such
    a link is followed inside the root instead and the file it leads to is read or replaced (an
    image's standard root, seen as its nodes see it); with `keep_modes` False, an existing file
    written gets its change's mode instead of keeping its own. `foreign`: directories (absolute
    target paths) no renderer writes into, such as the image roots: a manifest entry inside one
    is no file apply installed (render.paths.could_render)."""

    def __init__(
        self,
        root: Path,
        *,
        follow: bool = False,
        keep_modes: bool = True,
        foreign: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.follow = follow
        self.keep_modes = keep_modes
        self.foreign = tuple(foreign)

    def tree(self, *, create: bool = False) -> RootDir:
        """A RootDir on the installer's root, with its `follow` (see rootdir.RootDir)."""
        return RootDir(self.root, create=create, follow=self.follow)

    def live(self, path: str) -> Path:
        """The location of an absolute target path under the installer's root, for messages and
        for callers that resolve it themselves (a plain join: no check against links)."""
        return self.root / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        """The installed content of an absolute target path, or None when it does not exist.

        Raises UnsafePathError when it is a symbolic link or not a regular file (see
        RootDir.read), OSError for other failures."""
        with self.tree() as tree:
            return tree.read(path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold apply's lock (LOCK under the root) for the `with` block. Raises LockedError when
        another process holds it, UnsafePathError when it is a symbolic link."""
        with RootDir(self.root, create=True) as tree, tree.lock(LOCK):
            yield

    def _manifest(self, tree: RootDir) -> set[str]:
        data = tree.read(MANIFEST)
        if data is None:
            return set()
        try:
            files = json.loads(data)["files"]
            if not isinstance(files, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ClustcontrolError(
                f"{tree.display(MANIFEST)} is corrupt", hint="remove it; the next apply rewrites it"
            ) from None
        for entry in files:
            if not isinstance(entry, str) or not is_target_path(entry):
                raise ClustcontrolError(
                    f"{tree.display(MANIFEST)}: entry {entry!r} is not a normalized absolute path",
                    hint="remove the entry (apply only records the absolute paths it installs)",
                )
            if not could_render(entry, self.foreign):
                raise ClustcontrolError(
                    f"{tree.display(MANIFEST)}: entry {entry!r} is no file clustcontrol renders; "
                    "apply never removes it",
                    hint="remove the entry (apply only records the files it renders), and find "
                    "out who else can write the manifest",
                )
        return set(files)

    def plan(
        self,
        outputs: Iterable[Output],
        *,
        partial: bool = False,
        owners: Mapping[str, Service] | None = None,
    ) -> Plan:
        """Changes that install outputs, how many are unchanged, the new manifest and the files
        taken over (see Plan); block outputs are merged into the installed file and are not
        listed in the manifest. A stale file (installed earlier, not among `outputs`) is
        removed, or restored when apply keeps its original (ORIGINALS; nothing to do when the
        live file already is the original, mode and owner included, as a killed apply may have
        left it); its change names the service `owners` (live path -> service, e.g. of every
        rendered output) gives it, else None. Raises ClustcontrolError when the existing
        manifest is not valid JSON of the expected shape or lists a path that is not normalized
        and absolute or that no renderer writes (render.paths.could_render: apply removes
        nothing else), or a saved original is damaged (OriginalStore.load), UnsafePathError
        naming every
        target (installed or stale) that is a symbolic link or not a regular file, and
        InvalidInputError naming every marker line of a managed-block file whose markers make
        no single block (merge_block).

        A partial plan (some services only) removes nothing and keeps every manifest entry: a
        file another service installed, or one no longer rendered, stays until the next full
        apply."""
        changes: list[Change] = []
        unchanged = 0
        installed: list[str] = []
        taken_over: list[str] = []
        refused: list[UnsafePathError] = []
        refused_paths: set[str] = set()  # each named once, not again as a stale file
        unmerged: list[InvalidInputError] = []
        with RootDir(self.root) as tree:
            manifest = self._manifest(tree)
            originals = OriginalStore(tree, ORIGINALS).load()
            for output in outputs:
                try:
                    old = tree.read(output.path)
                except UnsafePathError as exc:
                    refused.append(exc)
                    refused_paths.add(output.path)
                    continue
                new = output.data()
                if output.block:
                    try:
                        new = merge_block(old, new, tree.display(output.path))
                    except InvalidInputError as exc:
                        unmerged.append(exc)
                        continue
                if not output.block:
                    installed.append(output.path)
                    if old is not None and output.path not in manifest:
                        taken_over.append(output.path)
                if old == new:
                    unchanged += 1
                    continue
                action: Action = "create" if old is None else "update"
                changes.append(
                    Change(output.path, action, output.service, old, new, output.mode, output.group)
                )
            stale = [] if partial else sorted(manifest - set(installed) - refused_paths)
            for path in stale:
                try:
                    old = tree.read(path)
                except UnsafePathError as exc:
                    refused.append(exc)
                    continue
                owner = owners.get(path) if owners else None
                original = originals.get(path)
                if original is not None:
                    if not original.matches(old, tree.stat(path)):
                        back = (original.uid, original.gid)
                        data, mode = original.data, original.mode
                        restore = Change(path, "restore", owner, old, data, mode, ownership=back)
                        changes.append(restore)
                elif old is not None:
                    changes.append(Change(path, "remove", owner, old, None))
        if refused:
            raise UnsafePathError(
                [line for exc in refused for line in exc.problems], hint=refused[0].hint
            )
        if unmerged:
            raise InvalidInputError(
                [line for exc in unmerged for line in exc.problems], hint=unmerged[0].hint
            )
        new_manifest = sorted(manifest | set(installed)) if partial else sorted(installed)
        return Plan(changes, unchanged, new_manifest, sorted(taken_over))

    def _write(self, tree: RootDir, changes: list[Change]) -> None:
        # Stage everything, flush the staged files, then one rename per file; removals last,
        # then the directories flushed.
        with tree.staging() as staged:
            for c in changes:
                if c.new is not None:
                    staged.append(
                        tree.stage(
                            c.path,
                            c.new,
                            mode=c.mode,
                            group=c.group,
                            fsync=False,
                            keep_mode=self.keep_modes,
                            owner=c.ownership,
                        )
                    )
        for change in changes:
            if change.new is None:
                tree.remove(change.path)
        tree.sync_dirs(staged)

    def write(self, changes: Iterable[Change]) -> None:
        """Carry out changes: atomic replacement per file (an existing file keeps its owner, and
        its mode unless keep_modes is False; a new one gets the change's mode and group, see
        RootDir.stage).

        Removals unlink the file (missing is fine). Raises UnsafePathError when a target is a
        symbolic link or not a regular file, OSError when a write fails; files not yet renamed
        keep their old content."""
        with self.tree(create=True) as tree:
            self._write(tree, list(changes))

    def _write_manifest(self, tree: RootDir, files: Iterable[str]) -> None:
        manifest = json.dumps({"files": sorted(files)}, indent=0).encode() + b"\n"
        if tree.read(MANIFEST) != manifest:
            tree.write(MANIFEST, manifest)

    def install(self, plan: Plan, targets: Iterable[str] = ()) -> tuple[list[str], list[str]]:
        """Install the plan's changes and record its `installed` target paths in the manifest
        (MANIFEST, JSON {"files": [...]}), so that no interrupted run leaves a file no later
        apply handles, and none loses a file apply took over:

        1. remove the temp files an interrupted apply left beside any path of the old manifest,
           `installed`, the changes, `targets` (e.g. every output, blocks included), MANIFEST
           or the store of originals;
        2. keep the original of each path taken over that is still not in the manifest
           (ORIGINALS: the live file is not apply's, so it is the distribution's);
        3. record the old and the new paths together;
        4. write the changes (RootDir: stage, flush, rename; restores too; then removals);
        5. record `installed` alone;
        6. drop the saved originals of the paths no longer in the manifest: restored in 4, or
           left as they were by a killed apply (OriginalStore.prune).

        Killed before 3, a path taken over is still the distribution's file and not in the
        manifest (a next apply keeps it again, or drops the copy); from 3 to 5 it is in the
        manifest with its original saved (a next apply restores it, or finds it restored);
        after 5 it is the original again. Returns (the removed temp files, paths on this
        machine; the paths whose originals were kept). Raises UnsafePathError when a target is
        a symbolic link or not a regular file, OSError when a write fails."""
        with RootDir(self.root, create=True) as tree:
            old = self._manifest(tree)
            store = OriginalStore(tree, ORIGINALS)
            stored = [posixpath.join(ORIGINALS, name) for name in store.names()]
            changed = (c.path for c in plan.changes)
            paths = {*old, *plan.installed, *targets, MANIFEST, *changed, *stored}
            cleaned = tree.remove_temps(paths)
            kept = [path for path in plan.taken_over if path not in old and store.save(path)]
            self._write_manifest(tree, old | set(plan.installed))
            self._write(tree, plan.changes)
            self._write_manifest(tree, plan.installed)
            store.prune(set(plan.installed))
        return cleaned, kept


def _run_commands(
    table: Mapping[Service, list[list[str]]], services: Iterable[Service]
) -> list[str]:
    done: list[str] = []
    for service in sorted(set(services)):
        for argv in table.get(service, []):
            if which(argv[0]) is None:
                continue
            run(argv, timeout=120)
            done.append(" ".join(argv))
    return done


def reload_services(services: Iterable[Service]) -> list[str]:
    """Run the RELOADS commands of each service once (sorted, duplicates dropped).

    A command whose program is not installed is skipped. Returns the commands run, each argv
    joined by spaces. Raises CommandError when one fails or takes more than 120 seconds."""
    return _run_commands(RELOADS, services)


def stop_services(services: Iterable[Service]) -> list[str]:
    """Run the STOPS commands of each service once (sorted, duplicates dropped; a service
    without any has nothing to stop), as reload_services does."""
    return _run_commands(STOPS, services)


def live_services(
    changes: Iterable[Change], selected: Collection[Service]
) -> tuple[set[Service], set[Service]]:
    """What makes `changes` live: (the services to stop: those whose files were removed
    because they are no longer in `selected`, the services to reload: the selected ones with a
    change). A removed file of no known service (Change.service None) is in neither."""
    stop: set[Service] = set()
    reload: set[Service] = set()
    for change in changes:
        if change.service is None:
            continue
        (reload if change.service in selected else stop).add(change.service)
    return stop, reload


GANESHA_EXPOSURE_HINT = (
    "mount a file system of its own at each directory named (an LV or a partition; "
    "docs/security.md, 'Forged file handles'), or use nfs_server: kernel, whose exports carry "
    "subtree_check; set cluster.ganesha_shared_file_systems: true to serve them anyway, "
    "with a warning"
)


def ganesha_exposure(inv: Inventory, root: Path) -> list[str]:
    """The warnings nfs-ganesha's exports call for under `root`: one line per exported
    directory a forged file handle can leave (export_filesystems.exposure), when
    cluster.ganesha_shared_file_systems allows serving them; none when every export is
    confined.

    Raises InvalidInputError, one line per such directory naming cluster.nfs_server, when the
    setting is false (the default): nfs-ganesha has no subtree check, so the file systems are
    its only confinement. Raises UnsafePathError or CommandError as
    export_filesystems.placements does."""
    lines = exposure(placements(inv, root))
    if lines and not inv.cluster.ganesha_shared_file_systems:
        raise InvalidInputError(
            [f"cluster.nfs_server: 'ganesha' would export {line}" for line in lines],
            hint=GANESHA_EXPOSURE_HINT,
        )
    return lines


BIND_TARGET_HINT = (
    "the update node writes the working tree as root and can rename a directory holding the "
    "mount and put a link in its place; mount(8) follows it: restore the directory (remove the "
    "link, move the directory back) and look at what else the update node changed"
)


def bind_mount_problems(inv: Inventory, root: Path) -> list[str]:
    """Where the fstab block's bind mounts of the control directory (render_bind_mounts) would
    land elsewhere than inside their standard: one line per mount point under `root` ("/" on
    the master) whose path inside its tree (the working tree or the generation roots) passes
    through a symbolic link, or a component that is no directory; links above the tree are the
    administrator's (/srv -> /data/srv) and followed. mount(8) and systemd's fstab generator
    follow links in a mount point: an update node that renames etc away and links
    etc -> /var/lib made `mount -a` hide the master's state directory under the read-only
    control directory. A missing component ends the walk (nothing is there to follow: mount
    fails, or systemd makes the directories where the path says). Raises OSError when a
    component cannot be examined."""
    control_dir = inv.cluster.control_dir
    problems = []
    for image in sorted(inv.images):
        for tree in (inv.images[image].root, inv.generation_roots(image)):
            target = control_mount_point(tree, control_dir)
            here = root / posixpath.normpath(tree).lstrip("/")  # the admin's links: followed
            for part in posixpath.normpath(control_dir).strip("/").split("/"):
                here = here / part
                try:
                    st = os.lstat(here)
                except FileNotFoundError:
                    break
                if stat.S_ISLNK(st.st_mode):
                    problems.append(
                        f"{here}: a symbolic link (to {str(here.readlink())!r}) on the way "
                        f"to the bind mount of the control directory at {target} (image "
                        f"{image}): mount would follow it wherever it leads"
                    )
                    break
                if not stat.S_ISDIR(st.st_mode):
                    problems.append(
                        f"{here}: not a directory, on the way to the bind mount of the control "
                        f"directory at {target} (image {image})"
                    )
                    break
    return problems


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
    Raises ClustcontrolError when `reload` is asked under a root other than /, CommandError
    when it is and the firewall changes but nft is not installed (nothing is installed then),
    LockedError when another apply holds the lock, UnsafePathError when a target is a symbolic
    link or not a regular file (nothing is installed then, and nothing read through it),
    InvalidInputError when a checker rejects a file (nothing is installed then), CommandError
    when a reload fails and OSError when a write fails.

    With `reload`, the services whose files were removed because they are no longer selected
    are stopped first (STOPS: the firewall's table is deleted), then each selected service with
    a change is reloaded once (RELOADS); see live_services.

    The bind mounts' mount points are looked at first (bind_mount_problems): UnsafePathError
    when one passes through a link (nothing is installed then). When nfs-ganesha is among the
    services, its exported directories are looked at first
    (ganesha_exposure): InvalidInputError when one is not confined to itself and
    cluster.ganesha_shared_file_systems is false (nothing is installed then), else one warning
    per such directory in the result."""
    if reload and root.resolve() != Path("/"):
        raise ClustcontrolError("--reload only makes sense on the live root, not under --root")
    selected = selected_services(inv)
    if services is not None:
        selected &= set(services)
    warnings = ganesha_exposure(inv, root) if "nfs-ganesha" in selected else []
    if "bind-mount" in selected and (problems := bind_mount_problems(inv, root)):
        raise UnsafePathError(problems, hint=BIND_TARGET_HINT)
    outputs = [o for o in tree if o.service in selected]
    # No renderer writes into a working tree or the state directory (generations, secrets).
    foreign = [posixpath.normpath(i.root) for i in inv.images.values()]
    installer = Installer(root, foreign=[*foreign, posixpath.normpath(inv.cluster.state_dir)])
    # A dry run writes nothing, not even the lock file.
    lock = contextlib.nullcontext() if dry_run else installer.lock()
    with lock:
        owners = {o.path: o.service for o in tree}
        plan = installer.plan(outputs, partial=services is not None, owners=owners)
        changes = plan.changes
        changed_paths = {c.path for c in changes}
        checks: list[CheckResult] = []
        if check and changes:
            checks = check_outputs(o for o in outputs if o.path in changed_paths)
            require_clean(checks)
        result = ApplyResult(changes, plan.unchanged, checks, dry_run=dry_run, warnings=warnings)
        result.kept = plan.taken_over
        if dry_run:
            return result
        if reload and any(c.service == "firewall" for c in changes):
            require("nft", "nftables")  # loads the table, or deletes it
        result.cleaned, result.kept = installer.install(plan, (o.path for o in outputs))
        if reload:
            stop, reload_ = live_services(changes, selected)
            # Looked at again just before mount -a: the update node may have planted a link
            # while the checkers ran and the files were written.
            if "bind-mount" in reload_ and (problems := bind_mount_problems(inv, root)):
                raise UnsafePathError(problems, hint=BIND_TARGET_HINT)
            result.reloaded = stop_services(stop) + reload_services(reload_)
        return result


def write_tree(tree: RenderedTree, out: Path) -> int:
    """`render --out`: every output (all services) under out, blocks as the block text alone.

    Paths are resolved inside out (rootdir.RootDir); new files get the output's mode. Returns
    how many files were written; identical files are left untouched. Each file is replaced
    atomically, all of them staged and flushed together first (RootDir.flush), then renamed,
    then their directories flushed. Raises UnsafePathError when a target in out is a symbolic
    link or not a regular file, OSError when a file cannot be written (the staged files are
    removed then)."""
    with RootDir(out, create=True) as staging:
        with staging.staging() as staged:
            for output in tree:
                data = output.data()
                if staging.read(output.path) != data:
                    staged.append(
                        staging.stage(
                            output.path, data, mode=output.mode, keep_mode=True, fsync=False
                        )
                    )
        staging.sync_dirs(staged)
    return len(staged)
