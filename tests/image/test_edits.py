"""The pure text edits behind image prepare, and Debian version ordering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustcontrol.apply import BLOCK_BEGIN, BLOCK_END
from clustcontrol.errors import InvalidInputError
from clustcontrol.image import edits
from clustcontrol.image.debversion import compare_versions, version_key


def test_set_shell_vars_is_idempotent_and_keeps_export_and_indent() -> None:
    text = "  export MODULES=dep\n#BOOT=nfs\n"
    once, done = edits.set_shell_vars(text, {"MODULES": "most", "BOOT": "local"})
    assert once == "  export MODULES=most\n#BOOT=nfs\nBOOT=local\n"
    assert done == ["MODULES=most (was 'dep')", "BOOT=local (added)"]
    assert edits.set_shell_vars(once, {"MODULES": "most", "BOOT": "local"}) == (once, [])


def test_comment_root_mount_only_touches_the_root_line() -> None:
    text = (
        "#/dev/sda2 / ext4 defaults 0 1\n"
        "/dev/sda2\t/\text4 defaults 0 1\n"
        "/dev/sda1 /boot ext4 d 0 2\n"
    )
    new, commented = edits.comment_root_mount(text)
    assert new.splitlines() == [
        "#/dev/sda2 / ext4 defaults 0 1",
        "# clustcontrol: /dev/sda2\t/\text4 defaults 0 1",
        "/dev/sda1 /boot ext4 d 0 2",
    ]
    assert commented == ["/dev/sda2\t/\text4 defaults 0 1"]
    assert edits.comment_root_mount(new) == (new, [])


# fstab lines of any bytes: root mounts among them, CR line ends, form feeds, Latin-1.
FSTAB_LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [b"UUID=x / ext4 defaults 0 1", b"/dev/sda2 /\text4 d 0 1\r", b"a\x0c/ b", b"\xfc / x"]
    ),
)


@given(st.lists(FSTAB_LINE, max_size=8), st.booleans())
def test_comment_root_mount_keeps_every_other_byte(lines: list[bytes], final: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final and lines else b"")
    new = edits.encode(edits.comment_root_mount(edits.decode(data))[0])
    old_lines, new_lines = data.split(b"\n"), new.split(b"\n")
    if len(new_lines) == len(old_lines) + 1:  # a commented last line got its newline
        assert (
            new_lines.pop() == b"" and new_lines[-1] == edits.FSTAB_PREFIX.encode() + old_lines[-1]
        )
    assert len(new_lines) == len(old_lines)
    for old, line in zip(old_lines, new_lines, strict=True):
        assert line in (old, edits.FSTAB_PREFIX.encode() + old)
    assert edits.comment_root_mount(edits.decode(new))[0] == edits.decode(new)  # idempotent


def test_rc_local_with_a_stray_marker_is_refused() -> None:
    text = f"#!/bin/sh\n{BLOCK_BEGIN}\nmy own line\nexit 0\n"
    with pytest.raises(InvalidInputError) as info:
        edits.rc_local_with_block(text, "x\n", "/srv/std/etc/rc.local")
    assert info.value.problems == [
        "/srv/std/etc/rc.local: line 2: a begin marker without an end marker after it"
    ]


def test_disable_net_generator_prepends_once() -> None:
    once = edits.disable_net_generator('LABEL="persistent_net_generator_end"\n')
    assert once.splitlines()[:2] == [edits.UDEV_COMMENT, edits.UDEV_GOTO]
    assert edits.disable_net_generator(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iface eth0 inet dhcp\n  hostname x\n", "iface eth0 inet manual\n  hostname x\n"),
        ("iface eth0 inet manual\n", "iface eth0 inet manual\n"),
        ("iface eth0 inet6 dhcp\n", "iface eth0 inet6 dhcp\n\niface eth0 inet manual\n"),
        ("", "iface eth0 inet manual\n"),
        (
            "iface eth0 inet static\n address 1.2.3.4\nallow-hotplug eth1\n",
            "iface eth0 inet manual\nallow-hotplug eth1\n",
        ),
        ("iface eth0 inet static # trailing\n\taddress 1.2.3.4\n", "iface eth0 inet manual\n"),
    ],
)
def test_manual_iface(text: str, expected: str) -> None:
    new, _notes = edits.manual_iface(text, "eth0")
    assert new == expected
    assert edits.manual_iface(new, "eth0")[0] == new


def test_manual_iface_leaves_other_methods_alone_with_a_note() -> None:
    new, notes = edits.manual_iface("iface eth0 inet ppp\n  provider x\n", "eth0")
    assert new == "iface eth0 inet ppp\n  provider x\n"
    assert notes == ["iface eth0 inet ppp: left alone (not dhcp or static)"]


def test_rc_local_block_is_replaced_in_place() -> None:
    first = edits.rc_local_with_block("#!/bin/sh\nexit 0\n", "echo one\n")
    second = edits.rc_local_with_block(first, "echo two\n")
    assert second == f"#!/bin/sh\n{BLOCK_BEGIN}\necho two\n{BLOCK_END}\nexit 0\n"
    assert edits.rc_local_with_block(second, "echo two\n") == second


def test_rc_local_without_exit_gets_the_block_appended() -> None:
    assert edits.rc_local_with_block("#!/bin/sh\necho x\n", "b\n") == (
        f"#!/bin/sh\necho x\n{BLOCK_BEGIN}\nb\n{BLOCK_END}\n"
    )


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("6.1.0-9-amd64", "6.1.0-10-amd64"),
        ("5.10.0-28-amd64", "6.1.0-9-amd64"),
        ("6.1.0-10-amd64", "6.1.0-10-rt-amd64"),
        ("6.1~rc1", "6.1"),
        ("6.1", "6.1.1"),
        ("9:1.0", "10:0.1"),
        ("6.1.0-10", "6.1.0-10+b1"),
    ],
)
def test_debian_version_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) < 0
    assert compare_versions(newer, older) > 0
    assert compare_versions(newer, newer) == 0


def test_version_key_sorts_kernels() -> None:
    versions = ["6.1.0-10-amd64", "6.1.0-9-amd64", "6.1.0-11-amd64", "5.10.0-30-amd64"]
    assert sorted(versions, key=version_key) == [
        "5.10.0-30-amd64",
        "6.1.0-9-amd64",
        "6.1.0-10-amd64",
        "6.1.0-11-amd64",
    ]


def test_comment_root_mount_splits_fields_as_libmount_does(tmp_path: Path) -> None:
    """fstab(5) fields are separated by spaces and tabs only: a form feed, a vertical tab or a
    no-break space is part of a field (str.split() split on them and commented out lines that
    mount something else). The real findmnt reads the same file as the oracle."""
    text = "a\x0c/ b\nUUID=x\u00a0/ ext4 d 0 1\nc\x0b/ d\n  \t/dev/sdb1 \t / ext4 d 0 1\n"
    fstab = tmp_path / "fstab"
    fstab.write_text(text)
    listed = subprocess.run(
        ["findmnt", "--fstab", "--tab-file", str(fstab), "-o", "TARGET", "-r", "-n"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    assert listed.count("/") == 1
    new, commented = edits.comment_root_mount(text)
    assert commented == ["/dev/sdb1 \t / ext4 d 0 1"]
    assert new.count(edits.FSTAB_PREFIX) == 1


def test_comment_root_mount_reads_escapes_and_spellings_of_root() -> None:
    """`\\057` is `/` to libmount (findmnt lists it as /), and `//`, `/.` name the same
    directory to the kernel and to systemd's path_equal: each is the root line."""
    lines = [
        "UUID=a \\057 ext4 defaults 0 1",
        "UUID=b // ext4 d 0 1",
        "UUID=c /. ext4 d 0 1",
        "UUID=d /\\056/ ext4 d 0 1",
    ]
    text = "\n".join([*lines, "UUID=e /boot ext4 d 0 2", "UUID=f \\057boot ext4 d 0 2"]) + "\n"
    new, commented = edits.comment_root_mount(text)
    assert commented == lines
    assert new.count(edits.FSTAB_PREFIX) == 4
