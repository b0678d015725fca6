"""Kernel command lines are bounded: PXELINUX passes at most MAX_COMMAND_LINE characters of
"BOOT_IMAGE=KERNEL APPEND initrd=INITRD BOOTIF=01-MAC" to the kernel and drops the rest, so an
inventory whose labels would be longer is refused, field and length named. The oracle reads the
rendered pxelinux files as PXELINUX does, independently of the renderer's own Label."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.model import Inventory
from clustcontrol.inventory.store import parse_inventory
from clustcontrol.render import RenderContext, render_all
from clustcontrol.render.pxe import MAX_COMMAND_LINE
from tests.conftest import BASE, inventory_data

LABEL = re.compile(
    r"^LABEL (\S+)\n\s+KERNEL (\S+)\n\s+INITRD (\S+)\n\s+APPEND ([^\n]*)\n\s+IPAPPEND 2$", re.M
)
# A GRUB menu entry (render/grub.py): its name, kernel and words; BOOTIF is appended.
GRUB_ENTRY = re.compile(r"^menuentry '([^']+)' .*\n\s+linux (\S+) ([^\n]*) BOOTIF=\$bootif$", re.M)


def syslinux_lines(data: dict[str, object]) -> dict[str, int]:
    """Each rendered PXELINUX label's and GRUB entry's command line length as the kernel would
    get it whole,
    from an inventory validated field by field only (no cross-field checks: the oracle sees
    what would be rendered without the check under test)."""
    tree = render_all(RenderContext(Inventory.model_validate(data)))
    lengths = {}
    for output in tree:
        path = output.path
        content = (output.content or b"").decode()
        if path.endswith("/pxelinux-common") or "/pxelinux.cfg/" in path:
            for name, kernel, initrd, append in LABEL.findall(content):
                line = f"BOOT_IMAGE={kernel} {append} initrd={initrd} BOOTIF=01-52-54-00-00-00-01"
                lengths[f"{path}:{name}"] = len(line)
        elif "/grub/" in path:
            for name, kernel, append in GRUB_ENTRY.findall(content):
                lengths[f"{path}:{name}"] = len(
                    f"BOOT_IMAGE={kernel} {append} BOOTIF=01-52-54-00-00-00-01"
                )
    return lengths


def words(total: int) -> list[str]:
    """Kernel words (x=aaa...) of `total` characters with their separating spaces."""
    out = []
    while total > 0:
        size = min(total - 1, 200)
        if size < 3:
            out.append("q" * max(total - 1, 1))
            break
        out.append("x=" + "a" * (size - 2))
        total -= size + 1
    return out


def test_the_issues_2105_character_line_is_refused() -> None:
    data = inventory_data(
        images={"default": {"root": "/srv/nfs4/clusternoderoot", "kernel_args": words(1900)}}
    )
    with pytest.raises(InvalidInputError) as info:
        parse_inventory(data)
    (line,) = info.value.problems
    assert line.startswith("images.default.kernel_args: the kernel command line of PXELINUX")
    assert f"PXELINUX passes {MAX_COMMAND_LINE} to the kernel" in line


def test_a_node_s_own_arguments_are_counted_with_its_image_s() -> None:
    image = {"root": "/srv/nfs4/clusternoderoot", "kernel_args": words(900)}
    nodes = [dict(BASE["nodes"][0], kernel_args=words(1000)), BASE["nodes"][1]]
    with pytest.raises(InvalidInputError) as info:
        parse_inventory(inventory_data(images={"default": image}, nodes=nodes))
    assert [p.split(":")[0] for p in info.value.problems] == ["nodes.node01.kernel_args"]


@settings(max_examples=40, deadline=None)
@given(
    image_args=st.integers(0, 2100),
    node_args=st.integers(0, 600),
    update=st.booleans(),
)
def test_refused_exactly_when_a_rendered_label_is_too_long(
    image_args: int, node_args: int, update: bool
) -> None:
    image = {"root": "/srv/nfs4/clusternoderoot", "kernel_args": words(image_args)}
    nodes = [dict(BASE["nodes"][0], kernel_args=words(node_args)), BASE["nodes"][1]]
    data = inventory_data(
        images={"default": image},
        nodes=nodes if node_args else BASE["nodes"],
        update_node={"node": "node02"} if update else {},
    )
    longest = max(syslinux_lines(data).values())
    try:
        parse_inventory(data)
    except InvalidInputError as exc:
        assert all("kernel command line" in p for p in exc.problems), exc.problems
        assert longest > MAX_COMMAND_LINE, (longest, exc.problems)
    else:
        assert longest <= MAX_COMMAND_LINE


def test_a_long_boot_directory_can_make_the_grub_line_alone_too_long() -> None:
    """GRUB's BOOT_IMAGE= holds the boot directory's path (PXELINUX's is relative to it) and has
    no initrd=: with a 200-character boot_dir a line PXELINUX passes whole is too long under
    GRUB, and the problem names the GRUB entry."""
    boot_dir = "b" * 200
    image = {"root": "/srv/nfs4/clusternoderoot", "kernel_args": words(1750)}
    data = inventory_data(
        cluster={**BASE["cluster"], "boot_dir": boot_dir}, images={"default": image}
    )
    lengths = syslinux_lines(data)
    pxe = max(v for k, v in lengths.items() if "/grub/" not in k)
    grub = max(v for k, v in lengths.items() if "/grub/" in k)
    assert pxe <= MAX_COMMAND_LINE < grub
    with pytest.raises(InvalidInputError) as info:
        parse_inventory(data)
    assert all("of GRUB entry" in p for p in info.value.problems), info.value.problems
