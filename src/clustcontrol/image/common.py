"""What prepare and publish share: the image's paths under an installation prefix, file changes
computed before anything is written, and the result type; and the GNU tar archive that commit
writes of some entries of a tree (attributes, secrets)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from posixpath import join as pjoin
from posixpath import relpath

from clustcontrol.apply import Action, Change, Installer
from clustcontrol.errors import ClustcontrolError
from clustcontrol.inventory.model import Image, Inventory
from clustcontrol.inventory.normalize import defined_image
from clustcontrol.rootdir import RootDir
from clustcontrol.run import require, run


@dataclass(frozen=True)
class ImageResult:
    """What an image operation changed (or would change, in a dry run), and short notes for the
    user: steps that did not apply, things left alone, commands run."""

    changes: tuple[Change, ...]
    notes: tuple[str, ...]
    dry_run: bool


#: A note that starts with this is a warning: printed on stderr as "clustcontrol: WARNING: ...".
WARNING = "WARNING: "


@dataclass(frozen=True)
class Step:
    """What one install_*/configure_* step needs: changes to write and notes to report."""

    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()

    @staticmethod
    def of(changes: Iterable[Change | None] = (), notes: Iterable[str] = ()) -> Step:
        """A Step from any iterables; None changes (nothing to do) are dropped."""
        return Step(tuple(c for c in changes if c is not None), tuple(notes))


@dataclass(frozen=True)
class ImageTree:
    """One image's root. `installer` is the installation prefix's (the TFTP tree and the PXELINUX
    files go through it); the image's own files are read and written inside its root only
    (`files`), whatever links the standard holds.

    Paths in the image (`rel` below) are relative to its root, normalized, without '..' (str,
    e.g. "etc/fstab"). A symbolic link in the standard is resolved as the image's nodes see
    it, as if the root were `/` (chroot(2); openat2(2) RESOLVE_IN_ROOT): an absolute target
    starts at the image root, '..' never climbs above it, and the master's own files are never
    reached (rootdir.RootDir with `follow`). Reading or writing a path whose last component is
    a link reads or replaces the file it leads to; anything other than a regular file there is
    refused (UnsafePathError)."""

    name: str
    image: Image
    installer: Installer

    @property
    def root(self) -> Path:
        """The image root under the installation prefix (where it really is on this machine)."""
        return self.installer.live(self.image.root)

    @property
    def files(self) -> Installer:
        """Reads and writes inside the image root: links followed inside it, and a written file
        gets its change's mode (see rootdir.RootDir)."""
        return Installer(self.root, follow=True, keep_modes=False)

    def path(self, rel: str) -> str:
        """The inventory-level absolute path of `rel`, a path relative to the image root (str)."""
        return pjoin(self.image.root, rel)

    def live(self, rel: str) -> Path:
        """Where `rel` is on this machine, for messages (a plain join: links not resolved)."""
        return self.installer.live(self.path(rel))

    def _in_root(self, rel: str) -> str:
        return "/" + rel

    def read(self, rel: str) -> bytes | None:
        """The content of `rel`, or None when it does not exist. Raises UnsafePathError when it
        is not a regular file or its links loop, OSError when it cannot be read."""
        return self.files.read(self._in_root(rel))

    def stat(self, rel: str) -> os.stat_result | None:
        """The status of what `rel` leads to (links followed inside the root), or None when it
        does not exist. Raises UnsafePathError when its links loop or a file stands where a
        directory is needed."""
        with self.files.tree() as tree:
            return tree.stat(self._in_root(rel))

    def exists(self, rel: str) -> bool:
        """Whether `rel` leads to anything inside the root (a dangling link does not). Raises
        as stat."""
        return self.stat(rel) is not None

    def is_file(self, rel: str) -> bool:
        """Whether `rel` leads to a regular file inside the root. Raises as stat."""
        st = self.stat(rel)
        return st is not None and stat.S_ISREG(st.st_mode)

    def is_dir(self, rel: str) -> bool:
        """Whether `rel` leads to a directory inside the root. Raises as stat."""
        st = self.stat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def listdir(self, rel: str) -> list[str]:
        """The sorted names in directory `rel` ([] when it is missing). Raises UnsafePathError
        when it is not a directory or its links loop, OSError when it cannot be listed."""
        with self.files.tree() as tree:
            return tree.listdir(self._in_root(rel)) or []

    def resolve(self, rel: str) -> str:
        """Where `rel` leads inside the root, relative to it ("" for the root itself). Past a
        missing directory the rest is taken as written (writing creates it so). Raises as
        stat."""
        with self.files.tree() as tree:
            return _resolved(tree, rel)

    def mode(self, rel: str) -> int | None:
        """The permission bits of what `rel` leads to (st_mode & 0o7777), or None when it does
        not exist. Raises as stat."""
        st = self.stat(rel)
        return None if st is None else stat.S_IMODE(st.st_mode)

    def change(self, rel: str, new: bytes, mode: int | None = None) -> Change | None:
        """The change that makes rel hold new (with `mode`, or its current mode); None if none.
        For a link, the change names the file it leads to. Raises as read."""
        old = self.read(rel)
        current = self.mode(rel)
        real = self.resolve(rel)
        wanted = mode if mode is not None else (current if current is not None else 0o644)
        if old == new and current == wanted:
            return None
        action: Action = "create" if old is None else "update"
        return Change(self.path(real), action, None, old, new, wanted)


def _resolved(tree: RootDir, rel: str) -> str:
    found = tree.resolve("/" + rel)
    if found is not None:
        return found.lstrip("/")
    parent, _slash, name = rel.rpartition("/")
    return pjoin(_resolved(tree, parent), name) if parent else name


def image_tree(inv: Inventory, name: str, root_prefix: Path) -> ImageTree:
    """The image called name, its root resolved under root_prefix; the root must exist.

    Raises InvalidInputError when the inventory defines no such image (normalize.defined_image)
    and ClustcontrolError when its root is not a directory under root_prefix."""
    image = inv.images[defined_image(name, inv.images)]
    tree = ImageTree(name, image, Installer(root_prefix))
    if not tree.root.is_dir():
        raise ClustcontrolError(
            f"images.{name}.root: {tree.root} is not a directory",
            hint="create the standard root first (e.g. with debootstrap), or fix images."
            f"{name}.root",
        )
    return tree


def write_changes(tree: ImageTree, changes: Iterable[Change]) -> None:
    """Write changes made by ImageTree.change: atomic replacement of each file inside the image
    root (links followed inside it), with the change's mode (for edited files their current
    mode, for clustcontrol's own files the mode they must have) and the old owner.

    Raises UnsafePathError when a path leads to something other than a regular file or its
    links loop, OSError when a file cannot be written."""
    todo = [replace(c, path="/" + relpath(c.path, tree.image.root)) for c in changes]
    tree.files.write(todo)


def extraction_order(names: Iterable[str]) -> list[str]:
    """`names` (relative paths, "." for the tree itself) in the order GNU tar must extract them
    for each directory's times to hold: a directory before what it contains, and all it contains
    before anything else. GNU tar sets a directory's times when it extracts the first entry
    outside it (extract.c, apply_nonancestor_delayed_set_stat); a later entry inside it moves
    its mtime again. Plain string order puts "d.96" between "d" and "d/f" ("." sorts before
    "/"); this sorts by name components."""
    return sorted(names, key=lambda rel: [] if rel == "." else rel.split("/"))


def write_entries_archive(tree: Path, names: Iterable[str], archive: Path) -> None:
    """Archive the entries `names` of `tree` (relative paths, "." for the tree itself, in the
    order given) into `archive` (mode 0600) as GNU tar writes them: pax headers with every
    extended attribute and ACL (--xattrs --xattrs-include='*' --acls), numeric owners, holes
    kept, names "./PATH", no recursion. Raises CommandError when tar fails."""
    listing = b"".join((b"." if rel == "." else b"./" + os.fsencode(rel)) + b"\0" for rel in names)
    run(
        [
            require("tar", "tar"),
            "--create",
            f"--file={archive}",
            f"--directory={tree}",
            "--format=pax",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--sparse",
            "--no-recursion",
            "--null",
            "--verbatim-files-from",
            "--files-from=-",
        ],
        input=listing,
    )
    archive.chmod(0o600)
