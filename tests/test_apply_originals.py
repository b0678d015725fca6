"""apply puts back the distribution's own files it replaced (issue 12, item 8): switching
dhcp_server from kea to isc removed Debian's /etc/kea/kea-dhcp4.conf.

The first apply that replaces (or records unchanged) a file not in its manifest keeps the
original (bytes, mode, owner) in ORIGINALS; when the file is no longer rendered, the original
is written back. Interrupts are simulated at every call that changes the tree (rename, unlink):
from the k-th on, each raises and nothing more happens, as if the process had been killed.
The oracle: nothing is ever lost, and once later applies and an uninstall (a plan of no
outputs) ran, the tree is the distribution's again, byte for byte, with the same modes and
owners."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clustcontrol.apply import (
    LOCK,
    MANIFEST,
    ORIGINALS,
    Installer,
    apply_tree,
    live_services,
    selected_services,
)
from clustcontrol.errors import ClustcontrolError, UnsafePathError
from clustcontrol.inventory.model import Inventory
from clustcontrol.originals import Original, OriginalStore, key
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.dhcp.dnsmasq import DNSMASQ_CONF
from clustcontrol.render.dhcp.isc import DEFAULTS, DHCPD_CONF
from clustcontrol.render.dhcp.kea import KEA_CONF
from clustcontrol.render.nfs import EXPORTS, GANESHA_CONF
from clustcontrol.render.pxe import TFTPD_DEFAULTS
from clustcontrol.rootdir import RootDir
from tests.conftest import BASE, Cli, inventory_data, make_inventory

ROOT = os.geteuid() == 0
# (uid, gid) pairs a distribution file may have; only our own without root.
OWNERS = [(0, 0), (0, 100), (104, 109), (65534, 65534)] if ROOT else [(os.getuid(), os.getgid())]
MODES = [0o600, 0o640, 0o644, 0o755, 0o2755]
# Files apply writes into (or beside) a file of its own and never removes.
BLOCK_FILES = {"etc/fstab", "etc/bind/named.conf.local"}

State = tuple[bytes, int, int, int]  # bytes, mode, uid, gid
Tree = dict[str, State]


def inventory(**cluster: object) -> Inventory:
    """The base inventory with cluster keys replaced; master.interface set (so isc renders
    /etc/default/isc-dhcp-server) unless `interface` is None."""
    interface = cluster.pop("interface", "eth1")
    master: dict[str, Any] = {**BASE["cluster"]["master"]}
    if interface is not None:
        master["interface"] = interface
    return make_inventory(cluster={**BASE["cluster"], "master": master, **cluster})


ISC = inventory(dhcp_server="isc")
KEA = inventory(dhcp_server="kea")


def apply(inv: Inventory, root: Path, *, dry_run: bool = False) -> Any:
    tree = render_all(RenderContext(inv, previous=Installer(root).read))
    return apply_tree(inv, tree, root, check=False, dry_run=dry_run)


def uninstall(root: Path) -> None:
    """What no inventory renders: every file of apply's goes, every original comes back (and
    the temp files a killed apply left, beside the managed-block files too, as apply's targets
    include them)."""
    installer = Installer(root)
    with installer.lock():
        installer.install(installer.plan([]), ["/" + rel for rel in BLOCK_FILES])


def put(
    root: Path, path: str, data: bytes, mode: int = 0o644, owner: tuple[int, int] = OWNERS[0]
) -> None:
    live = root / path.lstrip("/")
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(data)
    os.chown(live, *owner)
    os.chmod(live, mode)


def state(live: Path) -> State | None:
    try:
        st = live.lstat()
    except FileNotFoundError:
        return None
    return live.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def snapshot(root: Path) -> Tree:
    """Every regular file under root but the lock, the manifest and the managed-block files."""
    skip = {LOCK.lstrip("/"), MANIFEST.lstrip("/"), *BLOCK_FILES}
    found = {}
    for live in root.rglob("*"):
        rel = str(live.relative_to(root))
        if live.is_file() and not live.is_symlink() and rel not in skip:
            found[rel] = state(live)
    return {rel: value for rel, value in found.items() if value is not None}


def manifest(root: Path) -> set[str]:
    live = root / MANIFEST.lstrip("/")
    return set(json.loads(live.read_bytes())["files"]) if live.exists() else set()


def saved(root: Path) -> dict[str, Original]:
    with RootDir(root) as tree:
        return OriginalStore(tree, ORIGINALS).load()


def debian(root: Path) -> Tree:
    """A master as the packages left it: the DHCP servers' own files, tftpd-hpa's defaults."""
    put(root, KEA_CONF, b'// Debian\n{ "Dhcp4": { } }\n', 0o640, OWNERS[-1])
    put(root, DHCPD_CONF, b"# dhcpd.conf from isc-dhcp-server\n", 0o644)
    put(root, DEFAULTS, b'INTERFACESv4=""\n', 0o644)
    put(root, TFTPD_DEFAULTS, b'TFTP_USERNAME="tftp"\n', 0o644)
    return snapshot(root)


def test_switching_away_puts_the_distributions_file_back(tmp_path: Path) -> None:
    before = debian(tmp_path)
    kea_conf = tmp_path / KEA_CONF.lstrip("/")
    result = apply(ISC, tmp_path)
    assert result.kept == sorted([DEFAULTS, DHCPD_CONF, TFTPD_DEFAULTS])
    assert set(saved(tmp_path)) == {DEFAULTS, DHCPD_CONF, TFTPD_DEFAULTS}
    result = apply(KEA, tmp_path)
    assert result.kept == [KEA_CONF]
    actions = {c.path: c.action for c in result.changes if c.path != "/etc/clustcontrol/default"}
    assert actions == {KEA_CONF: "update", DHCPD_CONF: "restore", DEFAULTS: "restore"}
    for rel in (DHCPD_CONF, DEFAULTS):
        assert state(tmp_path / rel.lstrip("/")) == before[rel.lstrip("/")]
    assert kea_conf.read_bytes().startswith(b"// generated by clustcontrol")
    assert set(saved(tmp_path)) == {KEA_CONF, TFTPD_DEFAULTS}
    apply(ISC, tmp_path)
    assert state(kea_conf) == before[KEA_CONF.lstrip("/")]  # bytes, 0640, its owner
    assert KEA_CONF not in manifest(tmp_path)
    store = tmp_path / ORIGINALS.lstrip("/")
    assert sorted(p.name for p in store.iterdir()) == sorted(
        name
        for path in (DEFAULTS, DHCPD_CONF, TFTPD_DEFAULTS)
        for name in (key(path), f"{key(path)}.json")
    )
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in store.iterdir()} == {0o600}
    uninstall(tmp_path)
    assert snapshot(tmp_path) == before


def test_switching_back_and_forth_keeps_the_original_not_ours(tmp_path: Path) -> None:
    """The second take-over keeps the original again (the live file is the original), and a
    re-apply of the same inventory keeps nothing: the file is in the manifest."""
    before = debian(tmp_path)
    for inv in (KEA, ISC, KEA, KEA, ISC, KEA):
        apply(inv, tmp_path)
        if inv is KEA:
            assert saved(tmp_path)[KEA_CONF].data == before[KEA_CONF.lstrip("/")][0]
        else:
            assert state(tmp_path / KEA_CONF.lstrip("/")) == before[KEA_CONF.lstrip("/")]
    assert apply(KEA, tmp_path).kept == []
    apply(ISC, tmp_path)
    assert state(tmp_path / KEA_CONF.lstrip("/")) == before[KEA_CONF.lstrip("/")]


def test_files_apply_created_are_removed_as_before(tmp_path: Path) -> None:
    apply(ISC, tmp_path)  # nothing there before
    assert saved(tmp_path) == {}
    result = apply(KEA, tmp_path)
    assert {c.path: c.action for c in result.changes if c.path in (DHCPD_CONF, DEFAULTS)} == {
        DHCPD_CONF: "remove",
        DEFAULTS: "remove",
    }
    assert not (tmp_path / DHCPD_CONF.lstrip("/")).exists()
    assert not (tmp_path / ORIGINALS.lstrip("/")).exists()


def test_a_file_equal_to_ours_is_kept_too(tmp_path: Path) -> None:
    """Recorded unchanged, it became apply's without a write and was removed on the switch."""
    apply(KEA, tmp_path / "render")
    ours = (tmp_path / "render" / KEA_CONF.lstrip("/")).read_bytes()
    root = tmp_path / "root"
    put(root, KEA_CONF, ours, 0o644)
    result = apply(KEA, root)
    assert KEA_CONF not in {c.path for c in result.changes}
    assert result.kept == [KEA_CONF]
    apply(ISC, root)
    assert (root / KEA_CONF.lstrip("/")).read_bytes() == ours


def test_dry_run_shows_the_restore_and_its_diff_and_writes_nothing(tmp_path: Path) -> None:
    debian(tmp_path)
    apply(ISC, tmp_path)
    before = snapshot(tmp_path)
    result = apply(KEA, tmp_path, dry_run=True)
    assert result.kept == [KEA_CONF]
    restore = next(c for c in result.changes if c.path == DHCPD_CONF)
    assert (restore.action, restore.service) == ("restore", "dhcp-isc")
    diff = restore.diff()
    assert diff.startswith(f"--- a{DHCPD_CONF}\n+++ b{DHCPD_CONF}\n")
    assert "+# dhcpd.conf from isc-dhcp-server\n" in diff
    assert snapshot(tmp_path) == before
    # The switched-away server is still stopped (apply --reload), the chosen one reloaded.
    stop, reload = live_services(result.changes, selected_services(KEA))
    assert stop == {"dhcp-isc"} and "dhcp-kea" in reload


def test_a_restore_resets_mode_and_owner_the_admin_changed(tmp_path: Path) -> None:
    before = debian(tmp_path)
    apply(KEA, tmp_path)
    live = tmp_path / KEA_CONF.lstrip("/")
    live.chmod(0o600)
    apply(ISC, tmp_path)
    assert state(live) == before[KEA_CONF.lstrip("/")]


def test_a_restored_file_is_left_alone_by_the_next_apply(tmp_path: Path) -> None:
    debian(tmp_path)
    apply(KEA, tmp_path)
    apply(ISC, tmp_path)
    result = apply(ISC, tmp_path)
    assert result.changes == [] and result.kept == []


def test_the_cli_keeps_and_restores_under_root(cli: Cli, tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    put(prefix, KEA_CONF, b"// Debian\n", 0o640)
    data = inventory_data()
    data["cluster"] = {**BASE["cluster"], "dhcp_server": "kea"}
    cli.config.write_text(json.dumps(data))
    result = cli("apply", "--root", prefix, "--no-check")
    assert result.code == 0, result.err
    assert (
        f"kept the original of {KEA_CONF} in {ORIGINALS} (put back when apply no longer writes it)"
        in result.out
    )
    assert (prefix / ORIGINALS.lstrip("/") / key(KEA_CONF)).read_bytes() == b"// Debian\n"
    data["cluster"] = BASE["cluster"]
    cli.config.write_text(json.dumps(data))
    result = cli("apply", "--root", prefix, "--no-check", "--dry-run")
    assert result.code == 0, result.err
    assert "+// Debian\n" in result.out and "│ restore │ dhcp-kea" in result.out
    assert cli("apply", "--root", prefix, "--no-check").code == 0
    assert (prefix / KEA_CONF.lstrip("/")).read_bytes() == b"// Debian\n"


def test_a_store_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    before = debian(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = root / ORIGINALS.lstrip("/")
    store.parent.mkdir(parents=True)
    store.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="originals: is a symbolic link"):
        apply(ISC, root)
    assert list(elsewhere.iterdir()) == []
    store.unlink()
    assert snapshot(root) == before  # nothing taken over without its original kept


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda json_file, data_file: json_file.write_text("{"), "is corrupt"),
        (
            lambda json_file, data_file: data_file.write_text("other"),
            "is not the bytes it recorded",
        ),
        (lambda json_file, data_file: data_file.unlink(), "is missing"),
        (
            lambda json_file, data_file: json_file.write_text(
                json_file.read_text().replace('"mode": "0640"', '"mode": "4777"')
            ),
            r"mode 4777 \(set-user-ID or world-writable\) is no configuration file's",
        ),
        (
            lambda json_file, data_file: os.chown(json_file, 1000, 1000),
            r"belongs to uid 1000, not to the user running apply",
        ),
        (
            lambda json_file, data_file: os.chown(json_file.parent, 1000, 1000),
            r"originals belongs to uid 1000",
        ),
        (
            lambda json_file, data_file: json_file.write_text(
                json_file.read_text().replace(KEA_CONF, DHCPD_CONF)
            ),
            "which is not the path its name stands for",
        ),
    ],
)
def test_a_damaged_original_stops_apply(
    tmp_path: Path, damage: Callable[[Path, Path], object], message: str
) -> None:
    debian(tmp_path)
    apply(KEA, tmp_path)
    store = tmp_path / ORIGINALS.lstrip("/")
    damage(store / f"{key(KEA_CONF)}.json", store / key(KEA_CONF))
    with pytest.raises(ClustcontrolError, match=message):
        apply(ISC, tmp_path, dry_run=True)
    assert (tmp_path / KEA_CONF.lstrip("/")).read_bytes().startswith(b"// generated")


# Interrupts


class Killed(BaseException):
    """The simulated kill: not an Exception, so nothing handles it on the way out."""


@contextmanager
def killed_at(calls: int) -> Iterator[list[int]]:
    """os.replace and os.unlink (every rename and removal apply makes) run `calls` times; the
    next one and every one after it raise Killed. Yields [how many ran]."""
    ran = [0]
    real = {name: getattr(os, name) for name in ("replace", "unlink")}

    def gate(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if ran[0] >= calls:
                raise Killed
            ran[0] += 1
            return function(*args, **kwargs)

        return call

    for name, function in real.items():
        setattr(os, name, gate(function))
    try:
        yield ran
    finally:
        for name, function in real.items():
            setattr(os, name, function)


def interrupted(action: Callable[[], object], calls: int) -> bool:
    """Run action with killed_at(calls); whether it was killed."""
    try:
        with killed_at(calls):
            action()
    except Killed:
        return True
    return False


def assert_nothing_lost(root: Path, originals: Tree) -> None:
    """Each original is the live file, or saved whole with its path in the manifest (so the
    next apply that does not render it puts it back)."""
    recorded, kept = manifest(root), saved(root)
    for rel, original in originals.items():
        if state(root / rel) == original:
            continue
        path = "/" + rel
        assert path in recorded, f"{path}: replaced, and not in the manifest"
        assert path in kept, f"{path}: replaced, and its original not kept"
        copy = kept[path]
        assert (copy.data, copy.mode, copy.uid, copy.gid) == original, path


PHASES: dict[str, tuple[list[Inventory], Callable[[Path], object]]] = {
    # (applies before, what is interrupted)
    "take over": ([], lambda root: apply(ISC, root)),
    "switch": ([ISC], lambda root: apply(KEA, root)),
    "switch back": ([ISC, KEA], lambda root: apply(ISC, root)),
    "uninstall": ([KEA], uninstall),
}


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_an_interrupt_at_any_point_loses_nothing(tmp_path: Path, phase: str) -> None:
    before_applies, action = PHASES[phase]
    trials = 0
    for calls in range(500):
        root = tmp_path / f"t{calls}"
        originals = debian(root)
        for inv in before_applies:
            apply(inv, root)
        if not interrupted(partial(action, root), calls):
            break
        trials += 1
        assert_nothing_lost(root, originals)
        follow = (ISC, KEA)[calls % 2]
        apply(follow, root)
        assert_nothing_lost(root, originals)
        assert set(saved(root)) == {"/" + rel for rel in originals} & manifest(root)
        uninstall(root)
        assert snapshot(root) == originals, f"killed after {calls} calls, then {follow}"
    assert trials >= 10, f"{phase}: only {trials} interrupt points"


# The property


CANDIDATES = [DHCPD_CONF, DEFAULTS, KEA_CONF, DNSMASQ_CONF, GANESHA_CONF, EXPORTS, TFTPD_DEFAULTS]
FILE = st.tuples(
    st.binary(max_size=64), st.sampled_from(MODES), st.sampled_from(OWNERS)
)  # fmt: skip
STEP = st.fixed_dictionaries(
    {
        "dhcp_server": st.sampled_from(["isc", "kea", "dnsmasq"]),
        "nfs_server": st.sampled_from(["kernel", "ganesha"]),
        "interface": st.sampled_from([None, "eth1"]),
        "kill": st.one_of(st.none(), st.integers(0, 40)),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(st.sampled_from(CANDIDATES), FILE, min_size=1),
    st.lists(STEP, min_size=1, max_size=5),
)
@example(  # killed staging /etc/fstab's block: its temp file is the uninstall's to remove too
    {DHCPD_CONF: (b"", 0o600, OWNERS[0])},
    [{"dhcp_server": "isc", "nfs_server": "kernel", "interface": None, "kill": 3}],
)
def test_switches_put_back_every_distribution_file(
    tmp_path: Path,
    existing: dict[str, tuple[bytes, int, tuple[int, int]]],
    steps: list[dict[str, Any]],
) -> None:
    """Random switches of DHCP server, NFS server and master.interface (which decides whether
    isc renders /etc/default/isc-dhcp-server), some interrupted, over random distribution
    files: after each finished apply, a distribution file apply does not write is the original
    and one it writes has its original kept; after an uninstall only the originals remain."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        root = Path(scratch)
        for path, (data, mode, owner) in existing.items():
            put(root, path, data, mode, owner)
        originals = snapshot(root)
        for step in steps:
            inv = inventory(
                dhcp_server=step["dhcp_server"],
                nfs_server=step["nfs_server"],
                ganesha_shared_file_systems=True,
                interface=step["interface"],
            )
            if step["kill"] is not None and interrupted(partial(apply, inv, root), step["kill"]):
                assert_nothing_lost(root, originals)
                continue
            if step["kill"] is None:
                apply(inv, root)
            rendered = {
                o.path
                for o in render_all(RenderContext(inv))
                if o.service in selected_services(inv) and not o.block
            }
            assert manifest(root) == rendered
            assert set(saved(root)) == {"/" + rel for rel in originals} & rendered
            assert_nothing_lost(root, originals)
            for rel, original in originals.items():
                if "/" + rel not in rendered:
                    assert state(root / rel) == original
            strays = {rel for rel in snapshot(root) if not rel.startswith(ORIGINALS.lstrip("/"))}
            assert strays <= {p.lstrip("/") for p in rendered} | set(originals)
        uninstall(root)
        assert snapshot(root) == originals
