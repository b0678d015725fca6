"""Where the NFS exports lie (issue 11, forged file handles): export_filesystems and apply.

Rendered files (any inventory, hypothesis): every kernel export carries subtree_check, and
exported_directories names exactly the directories both NFS servers' files export, so the
check looks at every one of them.

With real mounts (tmpfs, in a mount namespace of the test's own, under an apply prefix): the
check names each exported directory that is not the root of a file system of its own or
shares one with another export, says what a forged handle reaches, and names nothing once
each has its own; apply refuses nfs-ganesha's exports then (exit 2, nothing written) unless
cluster.ganesha_shared_file_systems allows them, with a WARNING each. `image commit` works
with the generation roots and the secrets on file systems of their own.
tests/daemons/test_forged_handles.py shows with real ganesha that what the check says is real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustcontrol.export_filesystems import exposure, placements
from clustcontrol.image.commit import commit_image
from clustcontrol.image.generation import GenerationStore
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.nfs import (
    EXPORTS,
    GANESHA_CONF,
    control_mount_point,
    exported_directories,
)
from clustcontrol.render.view import ClusterView
from tests.conftest import Cli, inventory_data
from tests.mountns import private_mount_namespace
from tests.test_update_exposure import inventories

# --- the rendered files --------------------------------------------------------------------


def kernel_entries(text: str) -> list[tuple[str, list[str]]]:
    """exports(5) entries: (path, every client's option list), continuation lines joined."""
    entries = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("/"):
            path, *clients = line.split()
            entries.append((path, [re.fullmatch(r"[^(]+\((.*)\)", c)[1] for c in clients]))  # type: ignore[index]
    return entries


@settings(max_examples=60, deadline=None, database=None)
@given(data=inventories(), update=st.booleans())
def test_every_kernel_export_has_subtree_check(data: dict[str, Any], update: bool) -> None:
    """Every client of every exports(5) entry, read-only, read-write and secrets alike."""
    if update:
        data = {**data, "update_node": {**data["update_node"], "node": data["nodes"][0]["name"]}}
    tree = render_all(RenderContext(parse_inventory(data)))
    entries = kernel_entries(tree[EXPORTS].data().decode())
    assert entries
    for path, clients in entries:
        for options in clients:
            assert "subtree_check" in options.split(","), (path, options)
            assert "no_subtree_check" not in options.split(","), (path, options)


@settings(max_examples=60, deadline=None, database=None)
@given(data=inventories(), update=st.booleans())
def test_the_check_looks_at_every_exported_directory(data: dict[str, Any], update: bool) -> None:
    """exported_directories: the control directory plus exactly the paths the kernel's exports
    file names, which are exactly ganesha's Paths but for the control directory's mount point
    inside each generation roots and working tree."""
    if update:
        data = {**data, "update_node": {**data["update_node"], "node": data["nodes"][0]["name"]}}
    inv = parse_inventory(data)
    tree = render_all(RenderContext(inv))
    listed = [d.path for d in exported_directories(ClusterView(inv))]
    control = inv.cluster.control_dir
    assert listed[0] == control and len(set(listed)) == len(listed)
    kernel = [path for path, _ in kernel_entries(tree[EXPORTS].data().decode())]
    assert sorted(kernel) == sorted(listed[1:])
    ganesha = re.findall(r'^    Path = "([^"]+)";$', tree[GANESHA_CONF].data().decode(), re.M)
    mount_points = {control_mount_point(p, control) for p in kernel if "/secrets" not in p}
    assert sorted(ganesha) == sorted([*kernel, *mount_points])


# --- real mounts ----------------------------------------------------------------------------


@pytest.fixture
def mounts() -> Iterator[None]:
    """The test in a mount namespace of its own: its tmpfs mounts vanish with it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts)")
    with private_mount_namespace():
        yield


def tmpfs(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    return where


SITE = Path("/srv/site")  # where the inventory's directories are, below the prefix


def ganesha_data(**cluster: object) -> dict[str, Any]:
    """An nfs-ganesha inventory with an update node, its working tree and state directory in
    SITE (which the tests put below an apply prefix); `cluster` overrides cluster settings."""
    data: dict[str, Any] = inventory_data()
    data["cluster"] = {
        **data["cluster"],
        "nfs_server": "ganesha",
        "state_dir": f"{SITE}/state",
        **cluster,
    }
    data["images"] = {"default": {"root": f"{SITE}/std"}}
    data["update_node"] = {"node": "node01"}
    return data


@pytest.fixture
def site(tmp_path: Path, mounts: None) -> tuple[Inventory, Path]:
    """The inventory and the prefix, with every exported directory made (no mount yet)."""
    prefix = tmp_path / "prefix"
    inv = parse_inventory(ganesha_data())
    for directory in exported_directories(ClusterView(inv)):
        (prefix / directory.path.lstrip("/")).mkdir(parents=True)
    return inv, prefix


def under(prefix: Path, path: str) -> Path:
    return prefix / path.lstrip("/")


def test_one_file_system_for_all_names_every_export(site: tuple[Inventory, Path]) -> None:
    """Everything on the file system of the prefix (the master's, here): each export is named
    with what it is, the file system it lies on, the other exports there and what a handle
    reaches."""
    inv, prefix = site
    lines = exposure(placements(inv, prefix))
    exported = exported_directories(ClusterView(inv))
    assert len(lines) == len(exported) == 4
    mount = json.loads(
        subprocess.run(
            ["findmnt", "--json", "--target", str(prefix), "--output", "TARGET,SOURCE"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["filesystems"][0]
    for line, directory in zip(lines, exported, strict=True):
        assert line.startswith(f"{directory.path} ({directory.what}), which is not the root of")
        assert f"lies on the file system on {mount['source']} " in line
        assert f"mounted at {mount['target']})" in line
        others = [d.path for d in exported if d is not directory]
        assert f"; that file system also holds {', '.join(others)}: " in line
        reach = "a file handle forged from its export reaches every file of that file system"
        if mount["target"] == "/":
            reach += ", the master's own among them"
        assert line.endswith(reach)


def test_a_file_system_of_its_own_each_names_none(site: tuple[Inventory, Path]) -> None:
    inv, prefix = site
    for directory in exported_directories(ClusterView(inv)):
        tmpfs(under(prefix, directory.path))
    found = placements(inv, prefix)
    assert all(p.own_file_system for p in found)
    assert len({p.device for p in found}) == len(found)
    assert exposure(found) == []


def test_roots_and_secrets_sharing_one_file_system(site: tuple[Inventory, Path]) -> None:
    """A file system for the whole state directory (the old advice): the generation roots and
    the secrets lie on it together, so a handle forged from the roots export (the whole
    cluster network) reaches the secrets."""
    inv, prefix = site
    state = tmpfs(under(prefix, inv.cluster.state_dir))
    roots, secrets = inv.generation_roots("default"), inv.secrets_root("default")
    for path in (roots, secrets):
        under(prefix, path).mkdir(parents=True)
    for path in (inv.cluster.control_dir, inv.images["default"].root):
        tmpfs(under(prefix, path))
    lines = exposure(placements(inv, prefix))
    assert [line.split(" ", 1)[0] for line in lines] == [roots, secrets]
    assert f"lies on the file system on tmpfs (tmpfs, mounted at {state})" in lines[0]
    assert lines[0].split("; ")[1].startswith(f"that file system also holds {secrets}: ")
    assert lines[1].split("; ")[1].startswith(f"that file system also holds {roots}: ")


def test_mounts_that_do_not_confine(site: tuple[Inventory, Path]) -> None:
    """A bind mount of a subdirectory is no file system of its own (a handle leaves it for the
    rest of its file system); one file system mounted at two exported directories is shared;
    a directory that does not exist yet is named as such. Mounts stacked over others: the
    one on top counts."""
    inv, prefix = site
    big = tmpfs(prefix.parent / "big")
    (big / "sub").mkdir()
    # Each mounted over a file system of its own: the mount on top is the one that counts.
    tree = tmpfs(under(prefix, inv.images["default"].root))
    subprocess.run(["mount", "--bind", str(big / "sub"), str(tree)], check=True)
    roots = tmpfs(under(prefix, inv.generation_roots("default")))
    control = tmpfs(under(prefix, inv.cluster.control_dir))
    subprocess.run(["mount", "--bind", str(control), str(roots)], check=True)
    secrets = under(prefix, inv.secrets_root("default"))
    secrets.rmdir()
    lines = {line.split(" ", 1)[0]: line for line in exposure(placements(inv, prefix))}
    assert set(lines) == {
        inv.cluster.control_dir,
        inv.generation_roots("default"),
        inv.secrets_root("default"),
        inv.images["default"].root,
    }
    assert (
        f"which is not the root of a file system of its own: it is the file system on tmpfs "
        f"(tmpfs, of which {tree} shows the directory /sub): a file handle"
        in lines[str(SITE / "std")]
    )
    assert (
        f"which is the root of the file system on tmpfs (tmpfs, mounted at {control})"
        in (lines[inv.cluster.control_dir])
    )
    assert (
        f"that file system also holds {inv.generation_roots('default')}:"
        in (lines[inv.cluster.control_dir])
    )
    assert (
        "which does not exist: made there, it would lie on the file system on "
        in (lines[inv.secrets_root("default")])
    )


def write_inventory(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))  # JSON is YAML


def test_apply_refuses_ganesha_on_shared_file_systems(
    site: tuple[Inventory, Path], cli: Cli
) -> None:
    """Refused, one line per export naming cluster.nfs_server, exit 2, nothing written; with
    cluster.ganesha_shared_file_systems: true applied with a WARNING per export; with file
    systems of their own, or with the kernel server, no warning."""
    inv, prefix = site
    data = ganesha_data()
    write_inventory(cli.config, data)
    result = cli("apply", "--root", prefix, "--no-check")
    assert result.code == 2, result.err
    refused = result.err.splitlines()
    assert len(refused) == 5 and refused[-1].startswith("clustcontrol: hint: mount a file")
    for line, directory in zip(refused, exported_directories(ClusterView(inv)), strict=False):
        assert line.startswith(
            f"clustcontrol: error: cluster.nfs_server: 'ganesha' would export {directory.path} "
        )
    assert not under(prefix, GANESHA_CONF).exists()

    write_inventory(cli.config, ganesha_data(ganesha_shared_file_systems=True))
    result = cli("apply", "--root", prefix, "--no-check")
    assert result.code == 0, result.err
    warned = [x for x in result.err.splitlines() if x.startswith("clustcontrol: WARNING: ")]
    assert len(warned) == 4
    assert warned[1].startswith(
        f"clustcontrol: WARNING: nfs-ganesha exports {inv.generation_roots('default')} (image "
        "default's generation roots, read-only to 192.168.0.0/24), which is not the root of a "
    )
    assert under(prefix, GANESHA_CONF).is_file()

    write_inventory(cli.config, {**data, "cluster": {**data["cluster"], "nfs_server": "kernel"}})
    result = cli("apply", "--root", prefix, "--no-check")
    assert result.code == 0 and "WARNING" not in result.err, result.err

    for directory in exported_directories(ClusterView(inv)):
        tmpfs(under(prefix, directory.path))
    write_inventory(cli.config, data)
    result = cli("apply", "--root", prefix, "--no-check", "--dry-run")
    assert result.code == 0 and "WARNING" not in result.err, result.err


def test_image_commit_with_roots_and_secrets_on_file_systems_of_their_own(
    tmp_path: Path, mounts: None
) -> None:
    """The layout docs/security.md recommends works: two commits (the second links unchanged
    files to the first, inside the roots file system), the secrets archive on its own."""
    std = tmp_path / "std"
    (std / "etc").mkdir(parents=True)
    (std / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (std / "etc/motd").write_text("one\n")
    state = tmp_path / "state"
    data: dict[str, Any] = inventory_data(images={"default": {"root": str(std)}})
    data["cluster"] = {**data["cluster"], "state_dir": str(state)}
    inv = parse_inventory(data)
    store = GenerationStore.for_image(Path("/"), "default", str(state))
    tmpfs(store.roots)
    tmpfs(store.secrets)
    first = commit_image(inv, "default").generation
    (std / "etc/motd").write_text("two\n")
    second = commit_image(inv, "default").generation
    assert store.current() == second and store.trees() == [first, second]
    assert (store.tree(second) / "etc/motd").read_text() == "two\n"
    assert store.secrets_archive(second).is_file()
    assert oct(store.secrets.stat().st_mode & 0o777) == "0o700"
    named = {line.split(" ", 1)[0] for line in exposure(placements(inv, Path("/")))}
    assert not named & {str(store.roots), str(store.secrets)}


def test_validate_refuses_what_apply_refuses(cli: Cli) -> None:
    """validate looks at the live file systems as apply does: with nfs-ganesha, exported
    directories that share a file system (here: on this machine's /, or not there yet) are
    refused with the same lines and hint, exit 2; allowed, they are WARNINGs and the inventory
    is valid. The kernel server needs no such check."""
    data = ganesha_data()
    write_inventory(cli.config, data)
    result = cli("validate")
    assert result.code == 2, result.err
    lines = result.err.splitlines()
    assert lines[0].startswith("clustcontrol: error: cluster.nfs_server: 'ganesha' would export ")
    assert lines[-1].startswith("clustcontrol: hint: mount a file")
    write_inventory(cli.config, ganesha_data(ganesha_shared_file_systems=True))
    result = cli("validate")
    assert result.code == 0, result.err
    assert result.err.startswith("clustcontrol: WARNING: nfs-ganesha exports "), result.err
    write_inventory(cli.config, {**data, "cluster": {**data["cluster"], "nfs_server": "kernel"}})
    result = cli("validate")
    assert result.code == 0 and not result.err, result.err
