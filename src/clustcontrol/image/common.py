"""What prepare and publish share: the image's paths under an installation prefix, file changes
computed before anything is written, and the result type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from posixpath import join as pjoin

from clustcontrol.apply import Change, Installer
from clustcontrol.errors import ClustcontrolError
from clustcontrol.inventory.model import Image, Inventory
from clustcontrol.inventory.normalize import defined_image


@dataclass(frozen=True)
class ImageResult:
    """What an image operation changed (or would change, in a dry run), and short notes for the
    user: steps that did not apply, things left alone, commands run."""

    changes: tuple[Change, ...]
    notes: tuple[str, ...]
    dry_run: bool


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
    """One image's root as seen through the installer: `path` gives the inventory-level absolute
    path (used in Change.path and diffs), `live` the real path under the prefix."""

    name: str
    image: Image
    installer: Installer

    @property
    def root(self) -> Path:
        """The image root under the installation prefix (where it really is on this machine)."""
        return self.installer.live(self.image.root)

    def path(self, rel: str) -> str:
        """The inventory-level absolute path of `rel`, a path relative to the image root (str)."""
        return pjoin(self.image.root, rel)

    def live(self, rel: str) -> Path:
        """The real path of `rel` (relative to the image root) under the installation prefix."""
        return self.installer.live(self.path(rel))

    def read(self, rel: str) -> bytes | None:
        """The content of `rel` (relative to the image root), or None when it does not exist."""
        return self.installer.read(self.path(rel))

    def mode(self, rel: str) -> int | None:
        """The permission bits of `rel` (st_mode & 0o7777, symlinks followed), or None when it
        does not exist."""
        try:
            return self.live(rel).stat().st_mode & 0o7777
        except (FileNotFoundError, NotADirectoryError):
            return None

    def change(self, rel: str, new: bytes, mode: int | None = None) -> Change | None:
        """The change that makes rel hold new (with `mode`, or its current mode); None if none."""
        old = self.read(rel)
        current = self.mode(rel)
        wanted = mode if mode is not None else (current if current is not None else 0o644)
        if old == new and current == wanted:
            return None
        return Change(self.path(rel), "create" if old is None else "update", None, old, new, wanted)


def image_tree(inv: Inventory, name: str, root_prefix: Path) -> ImageTree:
    """The image called name, its root resolved under root_prefix; the root must exist.

    Raises InvalidInputError when the inventory defines no such image (normalize.defined_image)
    and ClustcontrolError
    when its root is not a directory under root_prefix."""
    image = inv.images[defined_image(name, inv.images)]
    tree = ImageTree(name, image, Installer(root_prefix))
    if not tree.root.is_dir():
        raise ClustcontrolError(
            f"images.{name}.root: {tree.root} is not a directory",
            hint="create the standard root first (e.g. with debootstrap), or fix images."
            f"{name}.root",
        )
    return tree


def write_changes(installer: Installer, changes: Iterable[Change]) -> None:
    """Atomic write of each change; then every written file gets the change's mode (for edited
    files that is their current mode, for clustcontrol's own files the mode they must have).

    Raises OSError when a file cannot be written."""
    todo = list(changes)
    installer.write(todo)
    for change in todo:
        if change.new is not None:
            installer.live(change.path).chmod(change.mode)
