"""Image operations stay inside their standard root (issue 11, case 4).

The update node mounts the working tree read-write, so the standard may hold any symbolic link.
`image prepare`, `image publish` and `image commit` resolve every path as the image's nodes see
it: an absolute link target starts at the standard's root, '..' never climbs above it. Around
the standard sit the master's own files (under the prefix, which plays the master's /, and
above it, where a relative link climbing out of the prefix would land): each holds the word
CANARY and must keep its content, mode, mtime and inode, and the word must never show up in
what the operations write (the standard, the TFTP tree, the generations) or in their diffs."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.errors import ClustcontrolError, UnsafePathError
from clustcontrol.image import generation, publish_image, snapshot
from clustcontrol.image.commit import commit_image
from clustcontrol.image.common import ImageResult
from clustcontrol.image.prepare import prepare_image
from clustcontrol.inventory.model import Inventory
from tests.conftest import Cli, inventory_data, make_inventory
from tests.image.conftest import IMAGE_ROOT, build_minimal_root

VERSION = "6.1.0-10-amd64"
MARK = b"CANARY"
# The master's files a link out of the standard would reach: relative to the prefix (the
# master's /) and to the directory above it. The secrets are 0600 as on a real master.
MASTER_FILES = {
    "etc/fstab": 0o644,
    "etc/network/interfaces": 0o644,
    "etc/initramfs-tools/initramfs.conf": 0o644,
    "etc/initramfs-tools/hooks/master-hook": 0o755,
    "etc/rc.local": 0o755,
    "usr/sbin/update-grub": 0o755,
    "usr/share/initramfs-tools/hook-functions": 0o644,
    f"boot/vmlinuz-{VERSION}": 0o644,
    f"boot/initrd.img-{VERSION}": 0o600,
    "real/etc/fstab": 0o644,
    "secret": 0o600,
}
OLD = 1_000_000_000 * 10**9  # 2001: any write moves the mtime
TEST_FILES = ("node-package", "reference", "cluster.yaml")  # beside the prefix, not the master's


class Master:
    """The master's own files around a standard under `prefix` (tmp_path/prefix)."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.tops = (prefix, prefix.parent)
        self.root = prefix / IMAGE_ROOT
        for top in self.tops:
            for rel, mode in MASTER_FILES.items():
                path = top / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if rel == "etc/initramfs-tools/initramfs.conf":
                    path.write_bytes(b"MODULES=dep\n# " + MARK + b"\n")  # what prepare edits
                elif rel.endswith("fstab"):
                    path.write_bytes(b"/dev/master / ext4 defaults 0 1\n# " + MARK + b"\n")
                else:
                    path.write_bytes(MARK + b" " + rel.encode() + b"\n")
                path.chmod(mode)
                os.utime(path, ns=(OLD, OLD))
        self.before = self.state()

    def _skipped(self, path: Path) -> bool:
        """What the operations may write: the standard, the prefix's var (TFTP tree, state
        directory, apply's manifest) and run (apply's lock); and the tests' own files."""
        return path in (self.root, self.prefix / "var", self.prefix / "run") or (
            path.parent == self.prefix.parent and path.name in TEST_FILES
        )

    def state(self) -> dict[str, tuple[int, int, int, int, bytes]]:
        """Every entry outside what the operations may write: (type and mode, inode, mtime,
        size, content or link target)."""
        found: dict[str, tuple[int, int, int, int, bytes]] = {}
        top = self.prefix.parent
        for dirpath, dirs, names in os.walk(top):
            here = Path(dirpath)
            dirs[:] = [d for d in dirs if not self._skipped(here / d)]
            for name in [*dirs, *names]:
                path = here / name
                if self._skipped(path):
                    continue
                st_ = path.lstat()
                if stat.S_ISREG(st_.st_mode):
                    data = path.read_bytes()
                elif stat.S_ISLNK(st_.st_mode):
                    data = os.fsencode(os.readlink(path))
                else:
                    data = b""
                when = 0 if stat.S_ISDIR(st_.st_mode) else st_.st_mtime_ns
                found[str(path.relative_to(top))] = (
                    st_.st_mode,
                    st_.st_ino,
                    when,
                    st_.st_size,
                    data,
                )
        return found

    def assert_untouched(self, *results: ImageResult) -> None:
        """No master file changed, none appeared, and none was copied: the mark is in no file
        the operations wrote, in no diff they showed, and no manifest holds a master file's
        digest."""
        assert self.state() == self.before
        digests = {
            hashlib.sha256((top / rel).read_bytes()).hexdigest()
            for top in self.tops
            for rel in MASTER_FILES
        }
        for base in (self.root, self.prefix / "var"):
            for path in files_below(base):
                data = path.read_bytes()
                assert MARK not in data, path
                if path.name.endswith(".manifest.gz"):
                    text = gzip.decompress(data).decode()
                    assert not any(d in text for d in digests), path
        for result in results:
            for change in result.changes:
                assert MARK not in (change.old or b"") + (change.new or b""), change.path


def files_below(top: Path) -> Iterator[Path]:
    """The regular files under top, links never followed."""
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            path = Path(dirpath, name)
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def build_standard(root: Path) -> None:
    """The minimal root of the image tests, a kernel and an initrd, and a real/ directory the
    links below lead to when they are resolved inside the standard."""
    build_minimal_root(root)
    (root / "boot").mkdir()
    for version in ("6.1.0-9-amd64", VERSION):
        (root / f"boot/vmlinuz-{version}").write_bytes(b"MZ kernel " + version.encode())
        (root / f"boot/initrd.img-{version}").write_bytes(b"initrd " + version.encode())
    shutil.copytree(root / "etc", root / "real/etc", symlinks=True)
    (root / "real/fstab").write_text("UUID=real / ext4 defaults 0 1\n")


def plant(root: Path, rel: str, target: str) -> bool:
    """Make `rel` (in the standard) a symbolic link to `target`, replacing what is there; False
    (nothing done) when a directory on the way is not a real directory inside the standard."""
    path = root / rel
    for parent in list(path.parents)[: len(Path(rel).parts) - 1]:
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.symlink_to(target)
    return True


@pytest.fixture
def master(tmp_path: Path, node_files: Path) -> Master:
    prefix = tmp_path / "prefix"
    build_standard(prefix / IMAGE_ROOT)
    return Master(prefix)


def prepare(master: Master, inv: Inventory | None = None, dry_run: bool = False) -> ImageResult:
    return prepare_image(
        inv or make_inventory(),
        "default",
        dry_run=dry_run,
        bootable_disk=True,
        root_prefix=master.prefix,
    )


def publish(master: Master) -> ImageResult:
    return publish_image(make_inventory(), "default", dry_run=False, root_prefix=master.prefix)


# prepare


@pytest.mark.parametrize("target", ["/etc", "../../../etc", "../../../../etc", "/../etc", "./etc"])
def test_an_etc_link_out_of_the_standard_is_a_loop_inside_it(master: Master, target: str) -> None:
    # The reproduced case: etc -> /etc. Seen from a node, /etc -> /etc is a loop, and so is
    # every way of climbing above the root and back into etc.
    plant(master.root, "etc", target)
    for dry_run in (True, False):
        with pytest.raises(UnsafePathError, match="too many levels of symbolic links") as caught:
            prepare(master, dry_run=dry_run)
        assert str(master.root / "etc/") in str(caught.value)
    master.assert_untouched()


def reference_etc(tmp_path: Path, node_files: Path) -> dict[str, bytes]:
    """What prepare makes of the standard's etc when nothing in it is a link."""
    prefix = tmp_path / "reference"
    build_standard(prefix / IMAGE_ROOT)
    prepare_image(
        make_inventory(), "default", dry_run=False, bootable_disk=True, root_prefix=prefix
    )
    etc = prefix / IMAGE_ROOT / "etc"
    return {str(p.relative_to(etc)): p.read_bytes() for p in files_below(etc)}


@pytest.mark.parametrize(
    "target", ["/real/etc", "../../../../real/etc", "real/etc", "/real/../real/etc"]
)
def test_a_linked_etc_is_edited_where_it_leads_inside_the_standard(
    master: Master, tmp_path: Path, node_files: Path, target: str
) -> None:
    # On the master, /real/etc (and ../../../../real/etc from the standard) are the master's
    # own files; on a node they are the standard's real/etc, and prepare edits those.
    shutil.rmtree(master.root / "etc")
    plant(master.root, "etc", target)
    result = prepare(master)
    assert (master.root / "etc").readlink() == Path(target)  # the link stays
    etc = master.root / "real/etc"
    assert {str(p.relative_to(etc)): p.read_bytes() for p in files_below(etc)} == reference_etc(
        tmp_path, node_files
    )
    assert f"{IMAGE_ROOT}/real/etc/fstab" in {c.path.lstrip("/") for c in result.changes}
    assert not prepare(master).changes  # a second run finds nothing to change
    master.assert_untouched(result)


@pytest.mark.parametrize("target", ["/real/fstab", "../real/fstab", "../../../../../real/fstab"])
def test_a_linked_file_is_replaced_where_it_leads_with_its_mode(
    master: Master, target: str
) -> None:
    (master.root / "real/fstab").chmod(0o640)
    plant(master.root, "etc/fstab", target)
    plant(master.root, "usr/sbin/update-grub", "/real/update-grub")  # a dangling one: created
    result = prepare(master)
    assert (master.root / "etc/fstab").readlink() == Path(target)
    real = master.root / "real/fstab"
    assert real.read_text().startswith("# clustcontrol: UUID=real / ext4")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    grub = master.root / "real/update-grub"
    assert b"update-grub stub" in grub.read_bytes()
    assert stat.S_IMODE(grub.stat().st_mode) == 0o755
    master.assert_untouched(result)


@pytest.mark.parametrize(
    ("links", "problem"),
    [
        ({"etc/fstab": "fstab"}, "too many levels of symbolic links"),
        ({"etc/fstab": "a", "etc/a": "/etc/b", "etc/b": "../etc/fstab"}, "too many levels"),
        ({"etc/network": "/etc/fstab"}, "is not a directory"),
        ({"etc/fstab": "/etc"}, "is not a regular file"),
        ({"etc/network/interfaces": "/boot/../../../.."}, "is not a regular file"),
    ],
)
def test_loops_and_wrong_types_are_one_clear_error_and_nothing_is_written(
    master: Master, cli: Cli, links: dict[str, str], problem: str
) -> None:
    for rel, target in links.items():
        plant(master.root, rel, target)
    before = {str(p): p.read_bytes() for p in files_below(master.root)}
    with pytest.raises(UnsafePathError, match=problem):
        prepare(master)
    assert {str(p): p.read_bytes() for p in files_below(master.root)} == before
    cli.config.write_text(json.dumps(inventory_data()))
    result = cli("image", "prepare", "default", "--root", master.prefix)
    assert result.code != 0 and problem in result.err and "Traceback" not in result.err
    master.assert_untouched()


def test_a_device_in_the_standard_is_refused_without_being_opened(master: Master) -> None:
    # The update node, root over NFS, can make device nodes in the standard; opening one on
    # the master can act on the master's hardware (a watchdog, a tape). Major 240 is for local
    # use, with no driver here: opening it fails with ENXIO, which prepare must never reach.
    device = master.root / "etc/fstab"
    device.unlink()
    os.mknod(device, stat.S_IFCHR | 0o644, os.makedev(240, 0))
    with pytest.raises(OSError, match="No such device"):
        os.close(os.open(device, os.O_RDONLY | os.O_NONBLOCK))
    with pytest.raises(UnsafePathError, match="etc/fstab: is not a regular file"):
        prepare(master)
    master.assert_untouched()


# publish


@pytest.mark.parametrize(
    "target", ["../../../../secret", "../../../../../secret", "/secret", "/../../secret"]
)
def test_an_initrd_link_never_reaches_a_master_file(master: Master, target: str) -> None:
    # The reproduced case: boot/initrd.img-X -> ../../secret, a 0600 file of the master.
    plant(master.root, f"boot/initrd.img-{VERSION}", target)
    result = publish(master)  # inside the standard the link dangles: the older pair is chosen
    tftp = master.prefix / "var/lib/tftpboot/cluster_node/default"
    assert (tftp / "initrd.img").read_bytes() == b"initrd 6.1.0-9-amd64"
    (master.root / "secret").write_bytes(b"the standard's own file\n")  # now the link leads here
    result = publish(master)
    assert (tftp / "initrd.img").read_bytes() == b"the standard's own file\n"
    master.assert_untouched(result)


@pytest.mark.parametrize("target", ["/boot", "../../../boot", "../../../../boot"])
def test_a_boot_link_out_of_the_standard_publishes_nothing(master: Master, target: str) -> None:
    plant(master.root, "boot", target)
    with pytest.raises(ClustcontrolError, match="too many levels of symbolic links"):
        publish(master)
    assert not (master.prefix / "var/lib/tftpboot/cluster_node/default").exists()
    master.assert_untouched()


def test_a_boot_link_inside_the_standard_publishes_what_it_leads_to(master: Master) -> None:
    (master.root / "kernels").mkdir()
    (master.root / "kernels/vmlinuz-7.0-amd64").write_bytes(b"MZ kernel 7.0")
    (master.root / "kernels/initrd.img-7.0-amd64").write_bytes(b"initrd 7.0")
    (master.root / "kernels/vmlinuz").symlink_to("/kernels/vmlinuz-7.0-amd64")
    plant(master.root, "boot", "../../../../kernels")  # on the master: tmp_path/kernels
    (master.prefix.parent / "kernels").mkdir()
    (master.prefix.parent / "kernels/vmlinuz-9.0-amd64").write_bytes(MARK)
    (master.prefix.parent / "kernels/initrd.img-9.0-amd64").write_bytes(MARK)
    master.before = master.state()
    result = publish(master)
    tftp = master.prefix / "var/lib/tftpboot/cluster_node/default"
    assert (tftp / "vmlinuz").read_bytes() == b"MZ kernel 7.0"
    assert "kernel vmlinuz-7.0-amd64, initrd initrd.img-7.0-amd64" in result.notes[0]
    master.assert_untouched(result)


# commit


def test_commit_copies_links_as_links_and_never_follows_them(master: Master) -> None:
    plant(master.root, "etc/network", "/etc/network")
    plant(master.root, "usr/share/initramfs-tools", "../../../../../usr/share/initramfs-tools")
    plant(master.root, f"boot/initrd.img-{VERSION}", "../../../../secret")
    plant(master.root, "real", "/")
    result = commit_image(make_inventory(), "default", master.prefix)
    tree = master.prefix / "var/lib/clustcontrol/images/default/roots" / result.generation
    assert os.readlink(tree / "etc/network") == "/etc/network"
    assert os.readlink(tree / f"boot/initrd.img-{VERSION}") == "../../../../secret"
    assert os.readlink(tree / "real") == "/"
    master.assert_untouched()


def replace_path(victim: Path, by: str) -> None:
    """What the update node does: `victim` (a file or a directory) becomes a FIFO ("fifo") or
    a symbolic link to `by`."""
    if victim.is_dir() and not victim.is_symlink():
        shutil.rmtree(victim)
    else:
        victim.unlink()
    if by == "fifo":
        os.mkfifo(victim)
    else:
        victim.symlink_to(by)


@pytest.mark.parametrize("by", [None, "../../../../etc"])
def test_a_directory_swapped_for_a_link_while_commit_walks_stops_it(
    master: Master, monkeypatch: pytest.MonkeyPatch, by: str | None
) -> None:
    # boot is listed as a directory; before the walk enters it, it becomes a link to the
    # master's etc (which holds the canary files).
    real = generation.walk

    def walking(root: str, control_dir: str) -> Iterator[tuple[str, os.stat_result, str]]:
        for rel, st_, path in real(root, control_dir):
            yield rel, st_, path
            if rel == "boot":
                replace_path(master.root / "boot", by or str(master.prefix / "etc"))

    monkeypatch.setattr(snapshot, "walk", walking)
    with pytest.raises(ClustcontrolError, match="boot: changed while it was read"):
        commit_image(make_inventory(), "default", master.prefix)
    master.assert_untouched()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("by", ["fifo", "/secret", "/proc/self/root/etc/hostname"])
def test_a_file_swapped_while_commit_copies_it_is_never_read(
    master: Master, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    # etc/fstab was listed as a regular file; right before it is copied it becomes a FIFO
    # (opening it would wait for a writer forever) or a link to a master file.
    real = generation.xattrs_of
    fstab = (master.root / "etc/fstab").stat().st_ino

    def swapping(path: str) -> list[tuple[str, bytes]]:
        attrs = real(path)
        if os.lstat(path).st_ino == fstab:
            replace_path(master.root / "etc/fstab", by)
        return attrs

    monkeypatch.setattr(snapshot, "xattrs_of", swapping)
    with pytest.raises(ClustcontrolError, match="etc/fstab: changed while it was read"):
        commit_image(make_inventory(), "default", master.prefix)
    master.assert_untouched()


# Everything at once, on generated standards

LINK_SITES = (
    "etc",
    "etc/fstab",
    "etc/network",
    "etc/network/interfaces",
    "etc/initramfs-tools",
    "etc/initramfs-tools/initramfs.conf",
    "etc/initramfs-tools/hooks",
    "etc/rc.local",
    "boot",
    f"boot/vmlinuz-{VERSION}",
    f"boot/initrd.img-{VERSION}",
    "usr",
    "usr/sbin",
    "usr/share/initramfs-tools",
    "usr/share/clustcontrol",
    "lib",
    "real",
)
TARGETS = (
    *(f"/{rel}" for rel in (*MASTER_FILES, *LINK_SITES)),
    *(f"{'../' * depth}{rel}" for depth in (1, 3, 4, 5) for rel in ("etc", "boot", "secret")),
    "/",
    "..",
    ".",
    "real/etc",
    "../real/fstab",
    "/real/../../../../secret",
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(links=st.dictionaries(st.sampled_from(LINK_SITES), st.sampled_from(TARGETS), max_size=5))
def test_no_planted_link_leads_an_image_operation_out_of_the_standard(
    tmp_path: Path, node_files: Path, links: dict[str, str]
) -> None:
    top = tmp_path / "example"
    shutil.rmtree(top, ignore_errors=True)
    prefix = top / "prefix"
    build_standard(prefix / IMAGE_ROOT)
    master = Master(prefix)
    for rel in sorted(links, key=lambda r: r.count("/")):  # shallow first
        plant(master.root, rel, links[rel])
    results: list[ImageResult] = []
    operations: list[Callable[[], ImageResult]] = [
        lambda: prepare(master, dry_run=True),
        lambda: prepare(master),
        lambda: publish(master),
    ]
    for operation in operations:
        # refused, with one clear message: fine, as long as nothing leaked
        with contextlib.suppress(ClustcontrolError):
            results.append(operation())
    with contextlib.suppress(ClustcontrolError):
        commit_image(make_inventory(), "default", master.prefix)
    master.assert_untouched(*results)
