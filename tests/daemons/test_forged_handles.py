"""File handles forged from nfs-ganesha's exports, against the rendered ganesha.conf (issue 11).

The master's file system is an ext4 image mounted in a mount namespace of the test's own; the
state directory (a committed generation and its secrets archive), the working tree, the control
directory (bind-mounted read-only into the exports, as the fstab block says) and a file of the
master's own lie on it. rpcbind and nfs-ganesha serve the rendered config; a client namespace
speaks NFSv3 itself (tests/daemons/nfsv3.py) from a reserved port, as root does.

One file system for everything (what the reviewer found): root at an address that is not in
the inventory mounts the generation roots (read-only to the cluster network), swaps inode 2,
generation 0 (an ext4 file system's root) into the handle and LOOKUPs its way to the secrets
archive, the working tree's /etc/shadow and the master's own file; from the update address the
read-write export's handle, so forged, creates a file outside the working tree. Exactly what
apply's check (export_filesystems) says of this layout.

A file system of its own for each exported directory (what docs/security.md recommends): the
check says nothing, the same forgery only reaches the export's own root, and a handle of
another file system presented under the roots export's id is refused (NFS3ERR_STALE): ganesha
serves an export only the file systems it lies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clustcontrol.export_filesystems import exposure, placements
from clustcontrol.image.commit import commit_image
from clustcontrol.inventory.model import Inventory
from clustcontrol.render.nfs import control_mount_point
from tests.daemons.conftest import (
    Daemons,
    Link,
    cluster,
    ganesha_command,
    inventory,
    must,
    poll,
    render_into,
    run,
)
from tests.daemons.nfsv3 import (
    NFS3_OK,
    NFS3ERR_STALE,
    Nfs3,
    forge,
    mount,
    with_export_of,
)
from tests.mountns import private_mount_namespace

pytestmark = pytest.mark.daemon

MASTER = "192.168.0.1"
FOREIGN = "192.168.0.77"  # in the cluster network, not in the inventory
NODE = "192.168.0.11"  # node01
UPDATE = "192.168.0.253"  # the update address (node01 is the update node)
SITE = Path("/srv/clustcontrol-site")  # on a tmpfs over /srv, in the test's mount namespace
SHADOW = b"root:$6$THE-SHADOW:19000:0:99999:7:::\n"
MASTER_ONLY = b"bmc_password: THE-MASTER-ONLY-SECRET\n"


@pytest.fixture
def mounts(link: Link, daemons: Daemons) -> Iterator[None]:
    """A mount namespace of the test's own (after the network namespaces exist, so that they
    are made and deleted in the original one), with a tmpfs over /srv. The daemons stop
    before the mounts go."""
    with private_mount_namespace():
        must(["mount", "-t", "tmpfs", "-o", "size=1m", "none", "/srv"])
        try:
            yield
        finally:
            daemons.stop_all()
            run(["umount", "-R", "/srv"])


def ext4(image: Path, where: Path) -> None:
    """A fresh 16 MiB ext4 file system from `image`, mounted at `where`."""
    with image.open("wb") as f:
        f.truncate(16 << 20)
    must(["mkfs.ext4", "-q", "-F", image])
    where.mkdir(parents=True, exist_ok=True)
    must(["mount", "-o", "loop", image, where])


def build_master(tmp_path: Path, *, own_file_systems: bool) -> Inventory:
    """The master's files on SITE (see the module docstring), a generation committed, the
    control directory bound into the exports; with `own_file_systems` the generation roots,
    the secrets, the working tree and the control directory each on an ext4 of their own."""
    ext4(tmp_path / "master.img", SITE)
    inv = inventory(
        cluster=cluster(
            nfs_server="ganesha",
            state_dir=str(SITE / "state"),
            control_dir=str(SITE / "clustcontrol"),
        ),
        images={"default": {"root": str(SITE / "std")}},
        update_node={"node": "node01"},
    )
    exported = {
        "roots": inv.generation_roots("default"),
        "secrets": inv.secrets_root("default"),
        "std": inv.images["default"].root,
        "control": inv.cluster.control_dir,
    }
    for name, path in exported.items():
        if own_file_systems:
            ext4(tmp_path / f"{name}.img", Path(path))
        else:
            Path(path).mkdir(parents=True, exist_ok=True)
    std = Path(exported["std"])
    (std / "etc").mkdir()
    (std / "etc/shadow").write_bytes(SHADOW)
    (std / "etc/shadow").chmod(0o640)
    (std / "etc/motd").write_text("served to every node\n")
    (SITE / "master-only").mkdir()
    (SITE / "master-only/cluster.yaml").write_bytes(MASTER_ONLY)
    (SITE / "master-only/cluster.yaml").chmod(0o600)
    commit_image(inv, "default")
    (Path(exported["control"]) / "params").write_text("CC_IMAGE=default\n")
    for root in (exported["roots"], exported["std"]):
        point = Path(control_mount_point(root, exported["control"]))
        point.mkdir(parents=True, exist_ok=True)
        must(["mount", "--bind", exported["control"], point])
        must(["mount", "-o", "remount,bind,ro", point])
    return inv


def serve(inv: Inventory, tmp_path: Path, link: Link, daemons: Daemons) -> None:
    """ganesha with the rendered config; the client namespace gets the test's addresses."""
    render_into(inv, tmp_path / "rendered")
    conf = tmp_path / "rendered/etc/ganesha/ganesha.conf"
    daemons.start("ganesha", link.server(*ganesha_command(conf, tmp_path / "ganesha.log")))
    for address in (FOREIGN, NODE, UPDATE):
        must(["ip", "-n", link.client_ns, "addr", "add", f"{address}/24", "dev", link.client_if])

    def listening() -> bool:
        out = run(link.server("ss", "-ltn")).stdout
        return ":2049 " in out and ":20048 " in out

    poll(listening, "ganesha on ports 2049 and 20048", timeout=60)


def root_of(link: Link, source: str, path: str) -> tuple[Nfs3, bytes]:
    """An NFSv3 connection from `source` and the root handle of the export `path`."""
    status, handle = mount(link.client_ns, source, MASTER, path)
    assert status == 0, f"MNT {path} from {source}: status {status}"
    return Nfs3(link.client_ns, source, MASTER), handle


def file_system_root(nfs: Nfs3, handle: bytes) -> bytes:
    """`handle` made to name inode 2, generation 0: the root of an ext4 file system."""
    status, attributes = nfs.getattr(handle)
    assert status == NFS3_OK and attributes is not None
    return forge(handle, attributes.fileid, 2, 0)


@pytest.mark.usefixtures("mounts")
def test_one_file_system_a_forged_handle_reaches_every_file(
    tmp_path: Path, link: Link, daemons: Daemons
) -> None:
    inv = build_master(tmp_path, own_file_systems=False)
    roots, secrets = inv.generation_roots("default"), inv.secrets_root("default")
    std, control = inv.images["default"].root, inv.cluster.control_dir
    lines = {line.split(" ", 1)[0]: line for line in exposure(placements(inv, Path("/")))}
    assert set(lines) == {control, roots, secrets, std}
    assert f"(ext4, mounted at {SITE}); that file system also holds " in lines[roots]
    assert secrets in lines[roots].split("also holds ")[1]
    serve(inv, tmp_path, link, daemons)

    assert mount(link.client_ns, FOREIGN, MASTER, secrets)[0] != 0  # not a node of the image
    nfs, handle = root_of(link, FOREIGN, roots)
    top = file_system_root(nfs, handle)
    status, names = nfs.readdir(top)
    assert status == NFS3_OK and names is not None
    assert {"state", "std", "master-only", "clustcontrol"} <= set(names)
    generation = (Path(roots) / "current").read_text().strip()
    status, archive = nfs.walk(top, f"state/images/default/secrets/{generation}.tar")
    assert status == NFS3_OK and archive is not None
    status, data = nfs.read(archive)
    assert status == NFS3_OK and data is not None and SHADOW in data
    for path, content in (("std/etc/shadow", SHADOW), ("master-only/cluster.yaml", MASTER_ONLY)):
        status, found = nfs.walk(top, path)
        assert status == NFS3_OK and found is not None, path
        assert nfs.read(found) == (NFS3_OK, content), path
    nfs.close()

    # The update node's read-write export: writes outside the working tree, as root.
    nfs, handle = root_of(link, UPDATE, std)
    status, directory = nfs.lookup(file_system_root(nfs, handle), "master-only")
    assert status == NFS3_OK and directory is not None
    status, planted = nfs.create(directory, "planted")
    assert status == NFS3_OK and planted is not None
    assert nfs.write(planted, b"written by the update node\n") == NFS3_OK
    nfs.close()
    assert (SITE / "master-only/planted").read_bytes() == b"written by the update node\n"


@pytest.mark.usefixtures("mounts")
def test_a_file_system_of_its_own_each_confines_forged_handles(
    tmp_path: Path, link: Link, daemons: Daemons
) -> None:
    inv = build_master(tmp_path, own_file_systems=True)
    roots, secrets = inv.generation_roots("default"), inv.secrets_root("default")
    std, control = inv.images["default"].root, inv.cluster.control_dir
    assert exposure(placements(inv, Path("/"))) == []
    serve(inv, tmp_path, link, daemons)

    nfs, handle = root_of(link, FOREIGN, roots)
    top = file_system_root(nfs, handle)
    assert nfs.getattr(top) == nfs.getattr(handle)  # the export's own root
    status, names = nfs.readdir(top)
    assert status == NFS3_OK and names is not None
    assert not {"state", "images", "secrets", "master-only", "std"} & set(names), names
    # A handle of another exported file system under the roots export's id: the secrets
    # (as root at a node of the image has it) and the working tree (the update address).
    for source, path in (
        (NODE, secrets),
        (UPDATE, std),
        (FOREIGN, control_mount_point(roots, control)),
    ):
        other, other_handle = root_of(link, source, path)
        spliced = with_export_of(handle, other_handle)
        assert nfs.getattr(spliced)[0] == NFS3ERR_STALE, path
        # ... which the export's own clients may forge within its file system.
        assert other.readdir(file_system_root(other, other_handle))[0] == NFS3_OK, path
        other.close()
    nfs.close()

    # The read-write export: a forged handle stays in the working tree.
    nfs, handle = root_of(link, UPDATE, std)
    top = file_system_root(nfs, handle)
    assert nfs.getattr(top) == nfs.getattr(handle)
    status, names = nfs.readdir(top)
    assert status == NFS3_OK and names is not None and "master-only" not in names
    nfs.close()
    assert sorted(p.name for p in (SITE / "master-only").iterdir()) == ["cluster.yaml"]


def test_forging_changes_the_object_or_the_export_alone() -> None:
    """forge swaps the inode and generation after the type byte; with_export_of the export id."""
    ino_gen = (24).to_bytes(4, "little") + (0xAF12EAB7).to_bytes(4, "little")
    handle = bytes.fromhex("430000011a43") + bytes(16) + b"\x01" + ino_gen + b"\x00"
    forged = forge(handle, 24, 2, 0)
    assert forged == handle[:23] + (2).to_bytes(4, "little") + bytes(4) + b"\x00"
    other = bytes.fromhex("430007d1") + b"rest"
    assert with_export_of(handle, other) == bytes.fromhex("43000001") + b"rest"
