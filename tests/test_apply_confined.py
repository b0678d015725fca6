"""apply stays inside --root (issue 11, cases 5, 7 and 8): manifest entries, symlinked targets
and directories, modes and owners whatever the umask, stray temp files, the manifest written
before the renames."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustcontrol import rootdir
from clustcontrol.apply import LOCK, MANIFEST, ApplyResult, Installer, apply_tree
from clustcontrol.errors import ClustcontrolError, UnsafePathError
from clustcontrol.inventory.model import Inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.dhcp.kea import KEA_CONF
from tests.conftest import BASE, Cli, make_inventory

PXE = "var/lib/tftpboot/cluster_node"
NODE03 = {"name": "node03", "mac": "52:54:00:00:00:03", "ip": "192.168.0.13"}
KEA = {**BASE["cluster"], "dhcp_server": "kea"}


def do_apply(inv: Inventory, root: Path, *, dry_run: bool = False) -> ApplyResult:
    tree = render_all(RenderContext(inv, previous=Installer(root).read))
    return apply_tree(inv, tree, root, check=False, dry_run=dry_run)


def manifest(root: Path) -> list[str]:
    files: list[str] = json.loads((root / MANIFEST.lstrip("/")).read_text())["files"]
    return files


def write_manifest(root: Path, files: list[str]) -> None:
    (root / MANIFEST.lstrip("/")).write_text(json.dumps({"files": files}))


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A private file outside the root that apply must never read, write or remove."""
    path = tmp_path / "outside" / "secret"
    path.parent.mkdir()
    path.write_text("SECRET-CONTENT\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def untouched(victim: Path) -> bool:
    return victim.read_text() == "SECRET-CONTENT\n" and victim.stat().st_mode & 0o777 == 0o600


# Case 5: manifest entries


@pytest.mark.parametrize(
    "entry", ["/../outside/secret", "/etc/../../outside/secret", "../outside/secret", "//x", ""]
)
def test_manifest_entry_leaving_the_root_is_refused(root: Path, victim: Path, entry: str) -> None:
    inv = make_inventory()
    do_apply(inv, root)
    write_manifest(root, [*manifest(root), entry])
    with pytest.raises(ClustcontrolError, match="not a normalized absolute path") as caught:
        do_apply(inv, root)
    assert repr(entry) in caught.value.message
    assert untouched(victim)


def test_dotdot_never_resolves_above_the_root(root: Path, victim: Path) -> None:
    # Below the manifest check: RootDir itself refuses '..' in a target path.
    with rootdir.RootDir(root) as tree, pytest.raises(UnsafePathError):
        tree.remove("/../outside/secret")
    assert untouched(victim)


def test_symlinked_directories_resolve_inside_the_root(
    tmp_path: Path, root: Path, victim: Path
) -> None:
    outside = victim.parent
    (root / "etc").mkdir()
    (root / "etc/dhcp").symlink_to(outside)  # absolute: taken as ROOT/<outside>
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/tftpboot").symlink_to("../../../../../../outside")  # '..' stops at ROOT
    do_apply(make_inventory(), root)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert untouched(victim)
    assert (root / str(outside).lstrip("/") / "dhcpd.conf").is_file()
    assert (root / "outside/cluster_node/pxelinux.cfg/default").is_file()


def test_stale_removal_through_a_symlinked_directory_stays_inside(root: Path, victim: Path) -> None:
    three = make_inventory(nodes=[*BASE["nodes"], NODE03])
    do_apply(three, root)
    nodes = root / "etc/clustcontrol/nodes"
    (victim.parent / "node03").write_text("NOT OURS\n")
    nodes.rename(root / "moved")
    nodes.symlink_to(victim.parent)  # nodes/node03 would be the outside file
    do_apply(make_inventory(), root)
    assert (victim.parent / "node03").read_text() == "NOT OURS\n"
    assert untouched(victim)


# Case 5: symlinked targets


TARGETS = [
    "/etc/dhcp/dhcpd.conf",  # a whole file
    "/etc/fstab",  # a managed block
    "/etc/bind/clustcontrol/db.rostclust",  # read for its serial while rendering
    MANIFEST,
    LOCK,
]


@pytest.mark.parametrize(
    ("target", "dry_run"),
    [(t, d) for t in TARGETS for d in (False, True) if not (t == LOCK and d)],  # no lock if dry
)
def test_symlinked_target_is_refused(root: Path, victim: Path, target: str, dry_run: bool) -> None:
    link = root / target.lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError) as caught:
        do_apply(make_inventory(), root, dry_run=dry_run)
    assert caught.value.lines() == [f"{link}: is a symbolic link; apply does not follow it"]
    assert "SECRET" not in str(caught.value)
    assert link.is_symlink() and untouched(victim)


def test_symlinked_stale_file_is_refused_not_removed(root: Path, victim: Path) -> None:
    do_apply(make_inventory(nodes=[*BASE["nodes"], NODE03]), root)
    stale = root / "etc/clustcontrol/nodes/node03"
    stale.unlink()
    stale.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="node03: is a symbolic link"):
        do_apply(make_inventory(), root)
    assert stale.is_symlink() and untouched(victim)


def test_every_symlinked_target_is_named_once(root: Path, victim: Path) -> None:
    for target in ("/etc/fstab", "/etc/dhcp/dhcpd.conf", "/etc/exports.d/clustcontrol.exports"):
        link = root / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(victim)
    with pytest.raises(UnsafePathError) as caught:
        do_apply(make_inventory(), root)
    assert [line.split(":")[0] for line in caught.value.lines()] == [
        f"{root}/etc/dhcp/dhcpd.conf",
        f"{root}/etc/exports.d/clustcontrol.exports",
        f"{root}/etc/fstab",
    ]


def test_a_symlinked_installed_target_is_named_once(root: Path, victim: Path) -> None:
    """A target the last apply installed (so in its manifest) replaced by a link: one line, not
    one for the output and one again for the stale manifest entry."""
    do_apply(make_inventory(), root)
    link = root / "etc/dhcp/dhcpd.conf"
    link.unlink()
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError) as caught:
        do_apply(make_inventory(), root)
    assert caught.value.lines() == [f"{link}: is a symbolic link; apply does not follow it"]
    assert link.is_symlink() and untouched(victim)


def test_dry_run_of_a_symlinked_block_file_shows_nothing_of_it(
    initialized: Cli, root: Path, victim: Path
) -> None:
    (root / "etc").mkdir()
    (root / "etc/fstab").symlink_to(victim)
    result = initialized("apply", "--root", root, "--dry-run", "--no-check")
    assert result.code == 1
    assert "SECRET" not in result.out + result.err
    assert result.err.splitlines()[0] == (
        f"clustcontrol: error: {root}/etc/fstab: is a symbolic link; apply does not follow it"
    )
    assert "Traceback" not in result.err


def test_a_directory_at_a_target_path_is_refused(root: Path) -> None:
    (root / "etc/dhcp/dhcpd.conf").mkdir(parents=True)
    with pytest.raises(UnsafePathError, match=r"dhcpd.conf: is not a regular file"):
        do_apply(make_inventory(), root)


def test_a_file_in_place_of_a_directory_is_one_line(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/dhcp").write_text("a file\n")
    with pytest.raises(UnsafePathError, match=r"etc/dhcp: is not a directory"):
        do_apply(make_inventory(), root)


def test_a_symlink_loop_is_one_line(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/dhcp").symlink_to("dhcp")
    with pytest.raises(UnsafePathError, match=r"too many levels of symbolic links"):
        do_apply(make_inventory(), root)


# Case 7: modes and owners whatever the umask


@pytest.fixture(params=[0o027, 0o077], ids=["umask027", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.lstat().st_mode & 0o7777
        for p in root.rglob("*")
        if not p.is_symlink()
    }


def test_new_directories_and_files_get_explicit_modes(root: Path, umask: int) -> None:
    inv = make_inventory(cluster=KEA)
    tree = render_all(RenderContext(inv))
    do_apply(inv, root)
    found = modes(root)
    dirs = {p for p in found if (root / p).is_dir()}
    assert {p: found[p] for p in dirs} == dict.fromkeys(dirs, 0o755)
    assert {"etc/bind/clustcontrol", PXE, f"{PXE}/pxelinux.cfg"} <= dirs
    for output in tree:
        if (root / output.path.lstrip("/")).exists() and not output.block:
            wanted = 0o644 if output.path == KEA_CONF else output.mode  # no _kea group here
            assert found[output.path.lstrip("/")] == wanted, output.path
    assert found[MANIFEST.lstrip("/")] == 0o644
    assert found["etc/fstab"] == 0o644


def test_kea_config_readable_by_kea_after_switching_servers(root: Path, umask: int) -> None:
    """Case 7: kea -> isc -> kea recreated kea-dhcp4.conf 0640 root:root, unreadable by _kea."""
    kea_gid = 4242
    (root / "etc").mkdir()
    (root / "etc/group").write_text(f"root:x:0:\n_kea:x:{kea_gid}:\n")
    conf = root / KEA_CONF.lstrip("/")
    for server in ("kea", "isc", "kea"):
        do_apply(make_inventory(cluster={**BASE["cluster"], "dhcp_server": server}), root)
    st = conf.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (os.getuid(), kea_gid, 0o640)
    assert (root / "etc/kea").stat().st_mode & 0o777 == 0o755


def test_kea_config_world_readable_without_a_kea_group(root: Path, umask: int) -> None:
    do_apply(make_inventory(cluster=KEA), root)
    st = (root / KEA_CONF.lstrip("/")).stat()
    assert (st.st_gid, st.st_mode & 0o777) == (os.getgid(), 0o644)


def test_existing_owner_and_mode_are_kept(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/group").write_text("_kea:x:4242:\n")
    inv = make_inventory(cluster=KEA)
    do_apply(inv, root)
    conf = root / KEA_CONF.lstrip("/")
    os.chown(conf, 0, 77)
    conf.chmod(0o604)
    conf.write_text("# hand edit\n")
    do_apply(inv, root)
    st = conf.stat()
    assert (st.st_gid, st.st_mode & 0o777) == (77, 0o604)


# Case 8: stray temp files, manifest before renames


def test_stray_temp_files_of_ours_are_removed(root: Path) -> None:
    inv = make_inventory()
    do_apply(inv, root)
    dhcp = root / "etc/dhcp"
    ours = [
        dhcp / ".dhcpd.conf.clustcontrol-0123abcd.tmp",
        dhcp / ".gone-file.clustcontrol-89abcdef.tmp",  # a file no longer rendered
        dhcp / ".dhcpd.conf.k2_xa9qz.tmp",  # the earlier tempfile.mkstemp name of a target
        root / "var/lib/clustcontrol/.installed.json.clustcontrol-00000000.tmp",
        root / f"{PXE}/pxelinux.cfg/.C0A8000B.clustcontrol-ffffffff.tmp",
    ]
    theirs = [
        dhcp / ".other.k2_xa9qz.tmp",  # mkstemp-like, but not beside a file of ours
        dhcp / "dhcpd.conf.clustcontrol-0123abcd.tmp",  # no leading dot
        dhcp / ".dhcpd.conf.clustcontrol-0123abcd.tmp.orig",
        dhcp / ".dhcpd.conf.clustcontrol-XYZ.tmp",
        root / "var/lib/.hidden.clustcontrol-0123abcd.tmp",  # no target in this directory
    ]
    for path in ours + theirs:
        path.write_text("partial")
    result = do_apply(inv, root)
    assert sorted(result.cleaned) == sorted(str(p) for p in ours)
    assert [p for p in ours if p.exists()] == []
    assert [p for p in theirs if not p.exists()] == []
    assert result.changes == []


def test_apply_says_how_many_strays_it_removed(initialized: Cli, root: Path) -> None:
    assert initialized("apply", "--root", root, "--no-check").code == 0
    (root / "etc/dhcp/.dhcpd.conf.clustcontrol-0123abcd.tmp").write_text("partial")
    result = initialized("apply", "--root", root, "--no-check")
    assert result.code == 0, result.err
    assert "removed 1 temp file an interrupted apply left" in result.out


def test_no_temp_file_is_left_by_a_complete_apply(root: Path) -> None:
    do_apply(make_inventory(), root)
    names = [p.name for p in root.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp")]
    assert all(not rootdir.is_temp_name(n) for n in names)


IMAGES = {"default": {"root": "/srv/a"}, "gpu": {"root": "/srv/b"}}
WITH_NODE03 = {"nodes": [*BASE["nodes"], {**NODE03, "image": "gpu"}], "images": IMAGES}


def count_commits(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many renames an uninterrupted apply of WITH_NODE03 does on a copy of root."""
    copy = root.with_name("count")
    shutil.copytree(root, copy, symlinks=True)
    commit = rootdir.RootDir.commit
    done: list[str] = []

    def counted(self: rootdir.RootDir, staged: rootdir.Staged) -> None:
        done.append(staged.path)
        commit(self, staged)

    with monkeypatch.context() as patch:
        patch.setattr(rootdir.RootDir, "commit", counted)
        do_apply(make_inventory(**WITH_NODE03), copy)
    return len(done)


@pytest.mark.parametrize("renames", [0, 1, 2, 5, -1])
def test_interrupted_apply_leaves_no_untracked_file(
    root: Path, renames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest lists the union of old and new paths before the first rename, so a new
    node's PXELINUX file renamed into place by a killed apply is removed once the node goes
    (-1: killed just before the final manifest is renamed into place)."""
    do_apply(make_inventory(images=IMAGES), root)
    if renames < 0:
        renames += count_commits(root, monkeypatch)
    commit = rootdir.RootDir.commit
    done: list[str] = []

    def killed_after(self: rootdir.RootDir, staged: rootdir.Staged) -> None:
        if len(done) == renames:
            raise KeyboardInterrupt  # stands in for SIGKILL: no clean-up runs after it
        done.append(staged.path)
        commit(self, staged)

    own = f"/{PXE}/pxelinux.cfg/C0A8000D"
    with monkeypatch.context() as patch:
        patch.setattr(rootdir.RootDir, "commit", killed_after)
        patch.setattr(rootdir.RootDir, "discard", lambda self, staged: None)
        with pytest.raises(KeyboardInterrupt):
            do_apply(make_inventory(**WITH_NODE03), root)
    if renames > 0:  # the first rename is the manifest listing old and new paths
        assert own in manifest(root)
    strays = [p for p in root.rglob("*") if rootdir.is_temp_name(p.name)]
    assert strays  # the killed apply left its staged files
    result = do_apply(make_inventory(images=IMAGES), root)
    assert not (root / own.lstrip("/")).exists()
    assert sorted(result.cleaned) == sorted(str(p) for p in strays)
    assert not [p for p in root.rglob("*") if rootdir.is_temp_name(p.name)]
    assert own not in manifest(root)
    assert not (root / "etc/clustcontrol/nodes/node03").exists()


def test_refused_apply_writes_nothing(root: Path, victim: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/fstab").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        do_apply(make_inventory(), root)
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert [str(p.relative_to(root)) for p in files] == [LOCK.lstrip("/")]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_link_on_the_way_to_the_bind_mount_is_refused(
    root: Path, victim: Path, dry_run: bool
) -> None:
    """The update node renames the working tree's etc away (the bind mount moves with it) and
    puts etc -> /var/lib in its place: mount -a would then hide /var/lib/clustcontrol (the
    state directory, apply's manifest) under the read-only control directory. apply stops
    before it writes anything, naming the link."""
    inv = make_inventory()
    do_apply(inv, root)
    fstab = (root / "etc/fstab").read_bytes()
    std = root / inv.images["default"].root.lstrip("/")
    (std / "etc/clustcontrol").mkdir(parents=True)
    (std / "etc").rename(std / "etc.moved")
    (std / "etc").symlink_to(victim.parent)
    with pytest.raises(UnsafePathError) as caught:
        do_apply(make_inventory(nodes=[*BASE["nodes"], NODE03]), root, dry_run=dry_run)
    assert caught.value.lines() == [
        f"{std}/etc: a symbolic link (to {str(victim.parent)!r}) on the way to the bind mount "
        f"of the control directory at {inv.images['default'].root}/etc/clustcontrol (image "
        "default): mount would follow it wherever it leads"
    ]
    assert caught.value.hint is not None and "restore the directory" in caught.value.hint
    assert (root / "etc/fstab").read_bytes() == fstab
    assert not (root / PXE / "pxelinux.cfg/C0A8000D").exists()  # node03's: nothing written
    assert untouched(victim)
    (std / "etc").unlink()
    (std / "etc.moved").rename(std / "etc")
    do_apply(make_inventory(nodes=[*BASE["nodes"], NODE03]), root)


def test_validate_names_a_link_on_the_way_to_the_bind_mount(cli: Cli, tmp_path: Path) -> None:
    """validate looks at the live mount points as apply does (exit 2, the same line)."""
    std = tmp_path / "std"
    (std / "etc").mkdir(parents=True)
    data = {**BASE, "images": {"default": {"root": str(std)}}}
    cli.config.write_text(json.dumps(data))
    assert cli("validate").code == 0
    (std / "etc").rename(std / "etc.moved")
    (std / "etc").symlink_to(tmp_path)
    result = cli("validate")
    assert result.code == 2
    assert result.err.startswith(
        f"clustcontrol: error: {std}/etc: a symbolic link (to {str(tmp_path)!r}) on the way to "
        "the bind mount"
    ), result.err


def test_links_above_the_standard_are_the_administrators(root: Path) -> None:
    """/srv -> /data/srv is the administrator's: only links inside a standard are refused."""
    (root / "data/srv").mkdir(parents=True)
    (root / "srv").symlink_to("data/srv")
    inv = make_inventory()
    do_apply(inv, root)
    (root / "data/srv/nfs4/clusternoderoot/etc").mkdir(parents=True, exist_ok=True)
    do_apply(make_inventory(nodes=[*BASE["nodes"], NODE03]), root)
