"""Inventory checks that keep the master and the nodes in agreement: where the control directory
may be, which kernel arguments are clustcontrol's own, which devices can be named."""

from __future__ import annotations

import pytest

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.store import parse_inventory
from tests.conftest import BASE, inventory_data


def problems(**overrides: object) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        parse_inventory(inventory_data(**overrides))
    return info.value.problems


def cluster(**kw: object) -> dict[str, object]:
    return {**BASE["cluster"], **kw}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/etc/default",
        "/etc/dhcp",
        "/var/lib/tftpboot/cluster_node/pxelinux.cfg",
        "/clustcontrol",
        "/proc/clustcontrol",
        "/tmp/clustcontrol",
        "/var/lib/clustcontrol",
        "/srv/nfs4/clusternoderoot",
        "/srv/nfs4/clusternoderoot/etc/clustcontrol",
        "/var/lib/tftpboot/clustcontrol",
    ],
)
def test_control_dir_that_would_hide_or_overlap_is_refused(path: str) -> None:
    lines = problems(cluster=cluster(control_dir=path))
    assert lines, path
    assert all(line.startswith(f"cluster.control_dir: {path!r}") for line in lines), lines


def test_control_dir_containing_an_image_root_is_refused() -> None:
    lines = problems(
        cluster=cluster(control_dir="/srv/clustcontrol"),
        images={"default": {"root": "/srv/clustcontrol/root"}},
    )
    assert lines == [
        "cluster.control_dir: '/srv/clustcontrol' overlaps the root of image 'default'"
    ]


@pytest.mark.parametrize(
    ("state_dir", "expected"),
    [
        ("/srv/nfs4", "overlaps the root of image 'default'"),
        ("/srv/nfs4/clusternoderoot/var/state", "overlaps the root of image 'default'"),
        ("/var/lib/tftpboot/state", "overlaps the TFTP root"),
        ("/proc/state", "overlaps /proc"),
        ("/state", "must be a directory of its own"),
    ],
)
def test_state_dir_overlapping_what_it_copies_or_serves_is_refused(
    state_dir: str, expected: str
) -> None:
    """A generation store inside a working tree would copy itself into each generation."""
    lines = problems(cluster=cluster(state_dir=state_dir))
    assert lines and all(line.startswith(f"cluster.state_dir: {state_dir!r}") for line in lines)
    assert any(expected in line for line in lines), lines


def test_control_dir_inside_the_state_dir_is_refused() -> None:
    lines = problems(cluster=cluster(control_dir="/srv/state/clustcontrol", state_dir="/srv/state"))
    assert lines == [
        "cluster.control_dir: '/srv/state/clustcontrol' overlaps cluster.state_dir '/srv/state'"
    ]


@pytest.mark.parametrize(
    "path",
    ["/etc/clustcontrol", "/srv/clustcontrol.d", "/etc/clustcontrol@v2", "/srv/a/clustcontrol"],
)
def test_control_dir_of_its_own_is_accepted(path: str) -> None:
    inv = parse_inventory(inventory_data(cluster=cluster(control_dir=path)))
    assert inv.cluster.control_dir == path


@pytest.mark.parametrize(
    "arg",
    [
        "clustcontrol.control=/x",
        "clustcontrol.server=10.0.0.9",
        "clustcontrol.imageroot=/srv/x",
        "root=/dev/sdb2",
        "ip=none",
        "BOOTIF=01-52-54-00-00-00-09",
        "initrd=x",
    ],
)
def test_kernel_args_must_not_set_what_clustcontrol_renders(arg: str) -> None:
    name = arg.split("=", 1)[0]
    lines = problems(images={"default": {"root": "/srv/x", "kernel_args": ["quiet", arg]}})
    assert lines == [
        f"images.default.kernel_args: {arg!r} sets {name}=, which clustcontrol renders itself"
    ]
    node = {**BASE["nodes"][0], "kernel_args": [arg]}
    lines = problems(nodes=[node])
    assert lines == [
        f"nodes.node01.kernel_args: {arg!r} sets {name}=, which clustcontrol renders itself"
    ]


@pytest.mark.parametrize(
    "arg", ["clustcontrol.sync=full", "clustcontrol.verify=1", "clustcontrol.retries=9", "quiet"]
)
def test_kernel_args_may_set_the_other_switches(arg: str) -> None:
    inv = parse_inventory(
        inventory_data(images={"default": {"root": "/srv/x", "kernel_args": [arg]}})
    )
    assert inv.images["default"].kernel_args == [arg]


@pytest.mark.parametrize(
    "device",
    ["/dev/sda", "/dev/nvme0n1", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "/dev/md0"],
)
def test_device_paths_accepted(device: str) -> None:
    inv = parse_inventory(inventory_data(disk_layouts={"default": {"device": device}}))
    assert inv.disk_layouts["default"].device == device


@pytest.mark.parametrize(
    "device", ["/dev/sda/", "/dev/disk/by-id/", "/dev//sda", "/dev", "/dev/../sda"]
)
def test_device_paths_refused(device: str) -> None:
    lines = problems(disk_layouts={"default": {"device": device}})
    assert lines == [f"disk_layouts.default.device: {device!r} is not a device path under /dev"]
