"""The generation store is root's alone on the master (issue 11): its trees keep set-id files
and device nodes exactly, as the nodes need them, so a local user who reached them was root
(a setuid copy of `id` printed euid=0 for nobody; a 0666 device node of the working tree was
open to everyone), and its manifests hold the sha256 of every secret file.

Checked for real: the commit through the command line, then `nobody` (setpriv) tries the
setuid program, the device node and a manifest."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustcontrol.image.generation import GenerationStore
from tests.conftest import Cli, inventory_data
from tests.image.conftest import IMAGE_ROOT, build_standard

SHELL_EXEC = ("/bin/sh", "-c", 'exec "$@"', "sh")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """argv run by nobody. setpriv still holds root's capabilities while it looks the program
    up (they go at its execve): a shell, itself found as root in /bin, looks it up as nobody."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *SHELL_EXEC, *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def open_prefix() -> Iterator[Path]:
    """A prefix every local user can enter (pytest's own temp directories are 0700), as / is."""
    prefix = Path(tempfile.mkdtemp(prefix="cc-store-", dir="/tmp"))
    prefix.chmod(0o755)
    try:
        yield prefix
    finally:
        shutil.rmtree(prefix)


def planted(root: Path) -> None:
    """What the update node can leave in the working tree: a setuid root copy of id and a
    device node open to all (/dev/null's number: harmless, but any would do)."""
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/id", root / "usr/local/bin/rootid")
    os.chown(root / "usr/local/bin/rootid", 0, 0)
    (root / "usr/local/bin/rootid").chmod(0o4755)
    os.mknod(root / "usr/local/dev-null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "usr/local/dev-null").chmod(0o666)


def test_no_local_user_reaches_the_generation_store(cli: Cli, open_prefix: Path) -> None:
    root = open_prefix / IMAGE_ROOT
    build_standard(root)
    planted(root)
    for directory in [root, *root.parents]:
        if directory == open_prefix.parent:
            break
        directory.chmod(0o755)
    cli.config.write_text(json.dumps(inventory_data()))
    result = cli("image", "commit", "default", "--root", open_prefix)
    assert result.code == 0, result.err
    store = GenerationStore.for_image(open_prefix, "default")
    generation = store.current()
    assert generation is not None
    tree = store.tree(generation)
    # The generation keeps them exactly: the nodes get the setuid bit and the device.
    assert stat.S_IMODE((tree / "usr/local/bin/rootid").stat().st_mode) == 0o4755
    assert stat.S_ISCHR((tree / "usr/local/dev-null").lstat().st_mode)
    # The harness can tell: nobody runs the working tree's copy as root (the admin's tree:
    # README, keep working trees under a 0700 parent or on a nosuid,nodev mount).
    assert as_nobody(str(root / "usr/local/bin/rootid"), "-u").stdout.strip() == "0"
    # The store is not theirs to enter.
    ran = as_nobody(str(tree / "usr/local/bin/rootid"), "-u")
    assert ran.returncode != 0 and "Permission denied" in ran.stderr, ran
    assert as_nobody("test", "-e", str(tree / "usr/local/dev-null")).returncode == 1
    manifest = store.base / "generations" / f"{generation}.manifest.gz"
    assert as_nobody("cat", str(manifest)).returncode != 0
    images = store.base.parent
    assert stat.S_IMODE(images.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.base.stat().st_mode) == 0o700
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600


def test_an_existing_open_store_is_made_private_by_the_next_commit(
    cli: Cli, open_prefix: Path
) -> None:
    # A store an earlier version left 0755 with 0644 manifests.
    root = open_prefix / IMAGE_ROOT
    build_standard(root)
    cli.config.write_text(json.dumps(inventory_data()))
    assert cli("image", "commit", "default", "--root", open_prefix).code == 0
    store = GenerationStore.for_image(open_prefix, "default")
    first = store.current()
    old_manifest = store.base / "generations" / f"{first}.manifest.gz"
    for path, mode in ((store.base.parent, 0o755), (store.base, 0o755), (old_manifest, 0o644)):
        path.chmod(mode)
    (root / "etc/motd").write_text("a change\n")
    assert cli("image", "commit", "default", "--root", open_prefix).code == 0
    assert stat.S_IMODE(store.base.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.base.stat().st_mode) == 0o700
    assert stat.S_IMODE(old_manifest.stat().st_mode) == 0o600
    # Unchanged since: the commit that writes nothing fixes the modes too.
    store.base.chmod(0o755)
    again = cli("image", "commit", "default", "--root", open_prefix)
    assert again.code == 0 and "unchanged" in again.out
    assert stat.S_IMODE(store.base.stat().st_mode) == 0o700
