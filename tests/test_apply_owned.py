"""apply removes only files of the kinds it renders, and no image root holds the master's own
directories (issue 11: with images.default.root /var/lib/clustcontrol the update node wrote
apply's manifest, and an entry /etc/passwd made the next apply delete the master's).

Oracle for render.paths.could_render: every path render_all writes for a random inventory (the
places, names and addresses that make up paths drawn at random) has a shape it accepts, so a
file an earlier apply installed is always removable; the master's own files are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clustcontrol.apply import LOCK, MANIFEST
from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.paths import could_render
from tests.conftest import Cli, inventory_data

NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
LABEL = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
COMPONENT = st.from_regex(r"[A-Za-z0-9._+@-]{1,10}", fullmatch=True).filter(
    lambda c: c not in (".", "..")
)
PLACE = st.lists(COMPONENT, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
CONTROL = st.tuples(PLACE, COMPONENT, COMPONENT).map(lambda t: f"{t[0]}/{t[1]}clustcontrol{t[2]}")


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, object]:
    images = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    layouts = draw(st.lists(NAME, min_size=1, max_size=2, unique=True))
    names = draw(st.lists(LABEL, min_size=0, max_size=4, unique_by=str.lower))
    nodes = [
        {
            "name": name,
            "mac": f"52:54:00:00:00:{i:02x}",
            "ip": f"10.{i}.0.{10 + i}",
            "image": draw(st.sampled_from(images)),
            "disk_layout": draw(st.sampled_from(layouts)),
            "kernel_args": draw(st.sampled_from([[], ["quiet"]])),
        }
        for i, name in enumerate(names)
    ]
    update: bool = draw(st.booleans())
    cluster = {
        "domain": draw(st.sampled_from(["rostclust", "a-b.example", "x.y.z"])),
        "network": "10.0.0.0/8",
        "master": {"name": "master", "ip": "10.255.0.1"},
        "tftp_root": draw(PLACE),
        "boot_dir": draw(COMPONENT.filter(lambda c: c[0].isalnum())),
        "control_dir": draw(CONTROL),
        "state_dir": draw(PLACE),
    }
    return {
        "cluster": cluster,
        "images": {
            name: {"root": f"/srv/images/{name}", "disk_layout": draw(st.sampled_from(layouts))}
            for name in images
        },
        "disk_layouts": {name: {} for name in layouts},
        "default_image": images[0],
        "nodes": nodes,
        "update_node": {"node": names[0]} if names and update else {},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories())
def test_every_path_a_renderer_writes_could_be_rendered(data: dict[str, object]) -> None:
    try:
        inv = parse_inventory(data)
    except InvalidInputError:
        assume(False)
        return
    roots = [i.root for i in inv.images.values()]
    for output in render_all(RenderContext(inv)):
        if not output.block:  # blocks are never in the manifest, never removed
            assert could_render(output.path, roots), output.path


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/sudoers",
        "/root/.ssh/authorized_keys",
        "/var/lib/dpkg/status",
        "/usr/bin/sudo",
        "/etc/fstab",  # a managed block: never removed
        "/etc/bind/named.conf.local",
        "/etc/clustcontrol-master/cluster.yaml",  # the inventory
        "/etc/clustcontrol/cluster.yaml",  # its old location
        "/etc/default/grub",
        "/etc/bind/clustcontrol/../../passwd",
        MANIFEST,
        LOCK,
        "/usr/lib/PXELINUX/pxelinux.0",  # what apply copies the boot files from
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "/etc/tftp/cluster_node/pxelinux.cfg/default",  # no TFTP root lies inside /etc
        "/boot/grub/grub.cfg",  # the master's own GRUB config: the UEFI tree's shape, in /boot
        "/boot/grub/x86_64-efi/grub.cfg",
        "/boot/efi/EFI/debian/grubx64.efi",
        "/usr/lib/shim/shimx64.efi.signed",  # what apply copies the UEFI files from
        "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
        "/usr/lib/grub/grub.cfg",
    ],
)
def test_the_masters_own_files_are_never_renderable(path: str) -> None:
    assert not could_render(path)


@pytest.mark.parametrize(
    "entry",
    [
        "/etc/passwd",
        "/usr/lib/PXELINUX/pxelinux.0",
        "/srv/nfs4/clusternoderoot/boot/pxelinux.cfg/default",  # inside the image root
        # inside a served generation (the state directory)
        "/var/lib/clustcontrol/images/default/roots/1-0123456789ab/boot/pxelinux.cfg/default",
    ],
)
def test_apply_refuses_a_manifest_entry_it_never_renders(
    cli: Cli, tmp_path: Path, entry: str
) -> None:
    cli.config.write_text(json.dumps(inventory_data()))
    prefix = tmp_path / "p"
    assert cli("apply", "--root", prefix, "--no-check").code == 0
    victim = prefix / entry.lstrip("/")
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    manifest = prefix / MANIFEST.lstrip("/")
    files = json.loads(manifest.read_text())["files"]
    manifest.write_text(json.dumps({"files": [*files, entry]}))
    before = manifest.read_bytes()
    for extra in (["--dry-run"], []):
        result = cli("apply", "--root", prefix, "--no-check", *extra)
        assert result.code == 1, result.err
        assert result.err.splitlines()[0] == (
            f"clustcontrol: error: {manifest}: entry {entry!r} is no file clustcontrol "
            "renders; apply never removes it"
        )
        assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
        assert manifest.read_bytes() == before


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/var/lib/clustcontrol", "is /var/lib/clustcontrol (where apply keeps its manifest"),
        ("/var", "is /var (a directory of the master's system)"),
        ("/", "is / (a directory of the master's system)"),
        ("/etc/ssh", "is /etc/ssh (a directory of the master's system)"),
        ("/etc/cron.d", "lies inside /etc, a directory of the master's system"),
        ("/var/lib/nfs/x", "lies inside /var/lib/nfs, a directory of the master's system"),
        ("/var/lib/dpkg/info", "lies inside /var/lib/dpkg, a directory of the master's system"),
        ("/var/lib/systemd/std", "lies inside /var/lib/systemd"),
        ("/var/lib/cloud/scripts", "lies inside /var/lib, where the master's programs keep"),
        ("/var/lib/dkms/std", "lies inside /var/lib, where the master's programs keep"),
        ("/var/lib/private/std", "lies inside /var/lib, where the master's programs keep"),
        (
            "/var/lib/clustcontrol/originals",  # the state directory is elsewhere: still refused
            "lies inside /var/lib/clustcontrol, where apply keeps its manifest and the",
        ),
        ("/home", "is /home (a directory of the master's system)"),
        ("/usr/local/bin", "lies inside /usr"),
        ("/boot", "is /boot"),
    ],
)
def test_an_image_root_that_holds_a_master_directory_is_refused(
    cli: Cli, tmp_path: Path, root: str, expected: str
) -> None:
    data = inventory_data(images={"default": {"root": root}})
    data["cluster"] = {**data["cluster"], "state_dir": "/srv/ccstate"}  # type: ignore[dict-item]
    cli.config.write_text(json.dumps(data))
    result = cli("validate")
    assert result.code == 2
    assert f"clustcontrol: error: images.default.root: {root!r} {expected}" in result.err
    assert result.err.count("images.default.root") == 1


@pytest.mark.parametrize(
    ("tftp_root", "expected"),
    [
        ("/etc", "is /etc (a directory of the master's system)"),
        ("/root", "is /root"),
        ("/usr/lib", "lies inside /usr, a directory of the master's system"),
        ("/etc/tftp", "lies inside /etc"),
        ("/var/lib/clustcontrol/originals", "lies inside /var/lib/clustcontrol, where apply"),
        ("/srv/tftp", None),
        ("/var/lib/tftpboot", None),
    ],
)
def test_a_tftp_root_on_a_master_directory_is_refused(
    cli: Cli, tftp_root: str, expected: str | None
) -> None:
    """in.tftpd serves the TFTP root to the whole cluster network without authentication:
    /etc as the TFTP root served every world-readable file of the master's /etc."""
    data = inventory_data()
    data["cluster"] = {
        **data["cluster"],  # type: ignore[dict-item]
        "tftp_root": tftp_root,
        "control_dir": "/srv/clustcontrol",
    }
    cli.config.write_text(json.dumps(data))
    result = cli("validate")
    if expected is None:
        assert result.code == 0, result.err
    else:
        assert result.code == 2
        assert f"clustcontrol: error: cluster.tftp_root: {tftp_root!r} {expected}" in result.err
        assert "in.tftpd serves it to the whole cluster network" in result.err


def test_image_roots_of_their_own_are_accepted(cli: Cli) -> None:
    roots = [
        "/srv/nfs4/a",
        "/var/lib/clustcontrol-images/b",
        "/export/c",
        "/home/std/d",
        "/var/lib/machines/e",
        "/var/lib/clustcontrol-std",
    ]
    images = {f"i{n}": {"root": root} for n, root in enumerate(roots)}
    cli.config.write_text(json.dumps(inventory_data(images=images, default_image="i0")))
    result = cli("validate")
    assert result.code == 0, result.err
