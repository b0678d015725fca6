"""Where the NFS exports lie: whether a file handle forged from one export stays inside it.

An NFS file handle names a file by its file system and its inode number and generation, which
the server hands to open_by_handle_at(2). A server without a subtree check serves whatever
inode of that file system a handle names, so a client allowed on one export that edits the
inode in a handle it was given reaches every file of the export's file system. The root
directory of an ext4 file system is always inode 2, generation 0: from there LOOKUP walks to
any file. nfs-ganesha has no subtree check at all (its VFS back end decodes the handle
whatever directory it lies below; seen with Debian 12's ganesha 4.3 in
tests/daemons/test_forged_handles.py), while it does refuse a handle whose file system
belongs to no file system the export lies on (NFS3ERR_STALE). The kernel server checks when
an export has subtree_check (exports(5)), which render/nfs.py writes on every kernel export.

So for nfs-ganesha an export is confined to itself only when its directory is the root of a
file system of its own (the mount's root is the file system's root: not a bind mount of a
subdirectory, not a btrfs subvolume, which a handle can leave too) and no other export lies
on that file system. This module looks at where each exported directory
(render.nfs.exported_directories) lies on this machine and says, for each one that is not so
confined, what a forged handle reaches. findmnt(8) (util-linux) reads the mount table.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from clustcontrol.inventory.model import Inventory
from clustcontrol.render.nfs import ExportedDirectory, exported_directories
from clustcontrol.render.view import ClusterView
from clustcontrol.rootdir import RootDir
from clustcontrol.run import require, run

# How many other exported directories a problem names before it counts the rest.
NAMED_OTHERS = 3


@dataclass(frozen=True)
class Placement:
    """Where an exported directory lies on this machine.

    `export` is the directory as the inventory gives it; `location` its path here (under the
    prefix, symbolic links followed inside it); `exists` whether it is there. The other fields
    describe the mount that holds `location` (or, when it does not exist, its nearest existing
    parent), as findmnt(8) gives them: `mount_point` (TARGET), `source` (SOURCE), `fstype`
    (FSTYPE), `fs_root` (FSROOT: the directory of the file system that the mount shows, "/"
    for the file system's root) and `device` (MAJ:MIN, one per mounted file system)."""

    export: ExportedDirectory
    location: str
    exists: bool
    mount_point: str
    source: str
    fstype: str
    fs_root: str
    device: str

    @property
    def own_file_system(self) -> bool:
        """True when the directory is the root of the file system mounted there."""
        return self.exists and self.mount_point == self.location and self.fs_root == "/"


def _mount_of(path: Path) -> dict[str, str]:
    """findmnt's columns of the mount that holds the existing path `path`: findmnt --target
    lists every mount at the mount point that holds it, a mount stacked over another after
    it; the topmost is the one whose device is the path's (stat(2) st_dev). Raises
    CommandError when findmnt fails or is missing, OSError when `path` cannot be looked at."""
    proc = run(
        [
            require("findmnt", "util-linux"),
            "--json",
            "--nofsroot",
            "--target",
            path,
            "--output",
            "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN",
        ],
        timeout=30,
    )
    mounts = [
        {key: str(value or "-") for key, value in mount.items()}
        for mount in json.loads(proc.stdout)["filesystems"]
    ]
    device = path.stat().st_dev
    visible = [m for m in mounts if m["maj:min"] == f"{os.major(device)}:{os.minor(device)}"]
    return (visible or mounts)[-1]


def _existing(location: Path) -> Path:
    """`location` itself when it exists, else its nearest existing parent directory."""
    return next(path for path in (location, *location.parents) if path.exists())


def placements(inv: Inventory, root: Path) -> list[Placement]:
    """Where each directory the NFS exports serve (render.nfs.exported_directories) lies under
    `root` ("/" on the master; a prefix in tests), symbolic links followed inside `root` (as
    GenerationStore.for_image resolves the store).

    Returns one Placement per exported directory, in exported_directories' order. Raises
    UnsafePathError when a path cannot be resolved inside `root` (a component that is not a
    directory, links that loop), CommandError when findmnt fails."""
    found = []
    with RootDir(root) as tree:
        for export in exported_directories(ClusterView(inv)):
            target = tree.realpath(posixpath.normpath(export.path))
            location = (root / target.lstrip("/")).resolve()
            exists = location.is_dir()
            mount = _mount_of(location if exists else _existing(location))
            found.append(
                Placement(
                    export=export,
                    location=str(location),
                    exists=exists,
                    mount_point=mount["target"],
                    source=mount["source"],
                    fstype=mount["fstype"],
                    fs_root=mount["fsroot"],
                    device=mount["maj:min"],
                )
            )
    return found


def _named(paths: list[str]) -> str:
    shown = ", ".join(paths[:NAMED_OTHERS])
    rest = len(paths) - NAMED_OTHERS
    return shown + (f" and {rest} more" if rest > 0 else "")


def _where(place: Placement) -> str:
    """Which file system a forged handle reaches, in words."""
    fs = f"the file system on {place.source} ({place.fstype}"
    if place.fs_root == "/":
        return f"{fs}, mounted at {place.mount_point})"
    return f"{fs}, of which {place.mount_point} shows the directory {place.fs_root})"


def exposure(found: list[Placement]) -> list[str]:
    """One line per exported directory whose export a forged file handle can leave: it is not
    the root of a file system of its own (it does not exist yet, it is a directory of a
    larger file system, or it is mounted from a directory of one), or another exported
    directory lies on its file system (the same MAJ:MIN). Each line names the directory, what
    it is, why, and what a forged handle reaches. Empty when every export is confined."""
    lines = []
    for place in found:
        others = [
            other.export.path
            for other in found
            if other is not place and other.device == place.device
        ]
        if place.own_file_system and not others:
            continue
        if not place.exists:
            why = f"which does not exist: made there, it would lie on {_where(place)}"
        elif place.own_file_system:
            why = f"which is the root of {_where(place)}"
        elif place.mount_point == place.location:
            why = f"which is not the root of a file system of its own: it is {_where(place)}"
        else:
            why = f"which is not the root of a file system of its own but lies on {_where(place)}"
        if others:
            why += f"; that file system also holds {_named(others)}"
        reach = "every file of that file system"
        if place.mount_point == "/":
            reach += ", the master's own among them"
        lines.append(
            f"{place.export.path} ({place.export.what}), {why}: a file handle forged from its "
            f"export reaches {reach}"
        )
    return lines
