"""The master<->node contract (clustcontrol.contract) holds on both sides.

- The generated files (contract.sh, conf.d, the README table) are those the table gives.
- The node reads every key the master writes: each value of each control file, changed alone,
  changes what the real engine (busybox sh) computes from the control directory.
- The node reads nothing from outside that the contract does not declare.
- The kernel switches the master renders are the ones the node parses, with the same values.
- Partition naming and the exclusions agree between Python and the shell."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustcontrol import contract
from clustcontrol.contract import STATE_DIR, generation_roots
from clustcontrol.contract.generate import generated_files
from clustcontrol.inventory.model import Cluster, Image
from clustcontrol.rehearse import engine_command
from tests.node.conftest import BUSYBOX, ENGINE, pxe_append, write_control

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(p for p in ENGINE.glob("*.sh") if p.name != "contract.sh")


def busybox(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine_command(BUSYBOX, f"cc_defaults\n{body}"),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CC_ENGINE_DIR": str(ENGINE),
            "CC_LOG": "",
            **env,
        },
    )


def test_generated_files_are_current() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in generated_files(REPO).items()
        if path.read_text() != text
    ]
    assert not stale, f"stale, run `python -m clustcontrol.contract`: {stale}"


def test_keys_are_unique_per_file_and_typed() -> None:
    for source in ("cluster", "image", "layout", "node", "kernel", "conf.d", "engine"):
        keys = [p.key for p in contract.params(source)]
        assert len(keys) == len(set(keys)), source
    for p in contract.PARAMS:
        assert re.fullmatch(r"CC_[A-Z0-9_]+", p.key), p.key
        assert (p.value is not None) == (p.source in contract.CONTROL_FILES), p.key
        assert (p.switch is not None) == (p.source == "kernel"), p.key
        assert not p.choices or p.type == "enum", p.key
        if p.source in ("conf.d", "engine"):
            assert p.default is not None, p.key


def test_defaults_agree_with_the_inventory_model() -> None:
    """A key the master writes may have a shell default (used before the control directory
    arrives): it is the inventory model's own default."""
    fields = {
        "CC_RSYNC_PORT": Cluster.model_fields["rsync_port"].default,
        "CC_SYNC_RETRIES": Cluster.model_fields["sync_retries"].default,
        "CC_CONTROL_DIR": Cluster.model_fields["control_dir"].default,
        "CC_VERIFY_EVERY": Image.model_fields["verify_every"].default,
    }
    for p in contract.PARAMS:
        if p.source in contract.CONTROL_FILES and p.default is not None and p.key in fields:
            assert p.default == str(fields.pop(p.key)), p.key
    assert not fields, f"no default in the contract for {sorted(fields)}"
    assert contract.switch("CC_ARG_CONTROL") == "clustcontrol.control"


# --- the node reads every key the master writes -------------------------------------------------
SENTINEL = {
    "name": "zz9",
    "host": "zz9",
    "iface": "zz9",
    "uint": "97",
    "ip": "10.9.9.9",
    "path": "/zz9",
    "paths": "/zz9",
    "device": "/dev/zz9",
    "text": "1:swap:swap::0 4:root:ext3:/:0 5:data:ext4:/zz9:1",
}
FILES = {"cluster": "default", "image": "images/default", "layout": "layouts/default"}
FILES["node"] = "nodes/node02"

# What the engine computes from the control directory, through its own functions only: the
# early parameters (from the copy baked into the initramfs), the node found by its address,
# cc_load_params' results for a known and an unknown node, the filter, the node files.
PROBE = """
ctl="$1" root="$2"
CC_BAKED_CONTROL="${ctl}"
cc_parse_cmdline /dev/null
cc_early_params
echo "early: ${CC_SERVER}|${CC_IMAGE}|${CC_TRANSPORT}|${CC_RSYNC_PORT}|${CC_RETRIES}"
echo "image root: $(cc_image_root "${CC_IMAGE}")"
echo "by address: $(cc_find_node "${ctl}" '' '' 192.168.0.12)"
cc_load_params "${ctl}" node02 || echo "load failed"
echo "secrets: $(cc_secrets_export)"
echo "params: ${CC_SERVER}|${CC_IMAGE}|${CC_TRANSPORT}|${CC_RETRIES}|${CC_RSYNC_PORT}|${CC_DISK}"
echo "root: ${CC_ROOT_DEVICE}|${CC_ROOT_FS}|${CC_SFDISK}|$(cc_served rsync)|$(cc_verify_every)"
cc_write_filter "${root}" "${root}/filter" && cat "${root}/filter"
mkdir -p "${root}/etc/network"
printf 'auto eth0\\niface eth0 inet dhcp\\n' >"${root}/etc/network/interfaces"
rm -f "${root}/etc/hosts"
cc_write_hostname "${root}" && cc_write_hosts "${root}" && cc_write_interfaces "${root}" \\
	&& cc_write_fstab "${root}" "${CC_DISK}"
cat "${root}/etc/hostname" "${root}/etc/hosts" "${root}/etc/network/interfaces" "${root}/etc/fstab"
cc_load_params "${ctl}" "" || echo "load failed"
echo "unknown node: ${CC_IMAGE}|${CC_SFDISK}|${CC_ROOT_DEVICE}"
"""


def probe(ctl: Path, root: Path) -> str:
    proc = busybox(f'set -- "{ctl}" "{root}"\n{PROBE}', CC_WARN_PAUSE="0")
    return proc.stdout + proc.stderr


def mutate(text: str, key: str, value: str) -> str:
    new, count = re.subn(rf"^{key}=.*$", f"{key}='{value}'", text, flags=re.MULTILINE)
    assert count == 1, key
    return new


def changed_probe(tmp_path: Path, param: contract.Param) -> tuple[str, str]:
    """The probe's output before and after one value of one control file changed."""
    ctl = tmp_path / "ctl"
    write_control(ctl, transport="rsync", rsync_port=8873, control_dir="/srv/clustcontrol.d")
    for keep in ("/var/lib/keep", "/etc/local.conf"):  # persistent paths present on the node
        (tmp_path / "root" / keep.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "root" / keep.lstrip("/")).write_text("")
    record = tmp_path / "root/var/lib/clustcontrol-node/last-sync"  # a complete sync held them
    record.parent.mkdir(parents=True)
    record.write_text("CC_SYNC_SEEDED='/var/lib/keep /etc/local.conf /zz9'\n")
    before = probe(ctl, tmp_path / "root")
    assert "load failed" not in before and "ERROR" not in before, before
    path = ctl / FILES[param.source]
    if param.choices:
        current = re.search(rf"^{param.key}='?([^'\n]*)", path.read_text(), re.MULTILINE)
        assert current is not None
        value = next(c for c in param.choices if c != current.group(1))
    else:
        value = SENTINEL[param.type]
    path.write_text(mutate(path.read_text(), param.key, value))
    return before, probe(ctl, tmp_path / "root")


@pytest.mark.parametrize(
    "param",
    [p for p in contract.PARAMS if p.source in FILES and not p.legacy],
    ids=lambda p: f"{p.source}:{p.key}",
)
def test_the_node_reads_every_key_the_master_writes(tmp_path: Path, param: contract.Param) -> None:
    """Change one value of one control file: what the real engine computes changes."""
    before, after = changed_probe(tmp_path, param)
    assert after != before, f"the engine ignores {param.key} in {FILES[param.source]}"


@pytest.mark.parametrize(
    "param", [p for p in contract.PARAMS if p.legacy], ids=lambda p: f"{p.source}:{p.key}"
)
def test_legacy_keys_are_written_for_old_engines_only(
    tmp_path: Path, param: contract.Param
) -> None:
    """A legacy key is still written (initramfs images built before the split read it), and
    the current engine derives the same fact itself instead."""
    before, after = changed_probe(tmp_path, param)
    assert after == before, f"the engine reads the legacy key {param.key}"


def test_an_engine_of_another_contract_says_so(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    write_control(ctl)
    default = ctl / "default"
    assert f"CC_CONTRACT={contract.CONTRACT_VERSION}\n" in default.read_text()
    default.write_text(mutate(default.read_text(), "CC_CONTRACT", "1"))
    out = busybox(f"cc_parse_cmdline /dev/null\ncc_load_params '{ctl}' node01")
    assert out.returncode == 0
    assert f"control files are of contract 1, this initramfs of {contract.CONTRACT_VERSION}" in (
        out.stderr
    )


# --- the node reads nothing undeclared ----------------------------------------------------------
def shell_code(path: Path) -> str:
    """The module without comment lines."""
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def test_every_outside_value_the_engine_reads_is_in_the_contract() -> None:
    """A CC_* variable the modules read but never set comes from outside: the control files, the
    kernel command line, conf.d or the caller. Each one is a row of the contract."""
    code = "\n".join(shell_code(p) for p in MODULES)
    read = set(re.findall(r"\$\{?(CC_[A-Z0-9_]+)", code))
    read |= set(re.findall(r"cc_param_value [^\n]* (CC_[A-Z0-9_]+)\b", code))
    generated = shell_code(ENGINE / "contract.sh")  # its functions set CC_ARG_*, CC_PART_*
    assigned = set(re.findall(r"(?:^|[\s;({])(CC_[A-Z0-9_]+)=", code + generated, re.MULTILINE))
    record = {k for k in read if k.startswith(("CC_SYNC_", "CC_MARK_"))}  # the node's own files
    constants = set(re.findall(r"^(CC_[A-Z0-9_]+)=", (ENGINE / "contract.sh").read_text(), re.M))
    outside = read - assigned - record - constants
    declared = {p.key for p in contract.PARAMS}
    assert outside <= declared, f"read by the engine, not in the contract: {outside - declared}"
    # ... and every row but the test hooks is read somewhere.
    unread = {p.key for p in contract.PARAMS if p.source != "kernel" and not p.legacy} - read
    assert not unread, f"in the contract, never read by the engine: {unread}"


# --- kernel switches ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("control_dir", "transport", "port"),
    [("/etc/clustcontrol", "nfs", 873), ("/srv/clustcontrol-2", "rsync", 8873)],
)
def test_the_node_parses_the_switches_the_master_renders(
    tmp_path: Path, control_dir: str, transport: str, port: int
) -> None:
    lines = pxe_append(control_dir=control_dir, transport=transport, rsync_port=port)
    assert lines
    for line in lines:
        cmdline = tmp_path / "cmdline"
        cmdline.write_text(line + " BOOTIF=01-52-54-00-AB-CD-EF\n")
        keys = [p.key for p in contract.params("kernel")]
        out = busybox(
            f"cc_parse_cmdline '{cmdline}'\n"
            + "".join(f"printf '%s=%s\\n' {k} \"${{{k}}}\"\n" for k in keys)
        )
        assert out.returncode == 0 and "WARNING" not in out.stderr, out.stderr
        got = dict(line.split("=", 1) for line in out.stdout.splitlines())
        assert got["CC_ARG_SERVER"] == "192.168.0.1"
        assert got["CC_ARG_IMAGE"] == "default"
        assert got["CC_ARG_TRANSPORT"] == transport
        assert got["CC_ARG_CONTROL"] == control_dir
        assert got["CC_ARG_ROOT"] == "/dev/sda2"
        assert got["CC_ARG_BOOTIF"] == "52:54:00:ab:cd:ef"
        if transport == "nfs":
            # Nodes mount the image's generation roots, never its working tree.
            assert got["CC_ARG_IMAGEROOT"] == generation_roots(STATE_DIR, "default")
        else:
            assert got["CC_ARG_RSYNCPORT"] == str(port)
        # Every clustcontrol.* word the master renders is a switch of the contract.
        words = {w.split("=", 1)[0] for w in line.split() if w.startswith("clustcontrol.")}
        assert words <= {p.switch for p in contract.params("kernel")}
        # ... and every name=value word it renders is one kernel_args may not repeat.
        named = {w.split("=", 1)[0] for w in line.split() if "=" in w}
        assert named <= contract.rendered_words(), named - contract.rendered_words()


def test_bad_switch_values_are_warned_about_and_ignored(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "clustcontrol.control=../etc clustcontrol.imageroot=/srv/x;rm clustcontrol.rsyncport=8a "
        "clustcontrol.sync=bogus clustcontrol.transport=ftp clustcontrol.verify=-1\n"
    )
    out = busybox(
        f"cc_parse_cmdline '{cmdline}'\n"
        'echo "$CC_ARG_CONTROL|$CC_ARG_IMAGEROOT|$CC_ARG_RSYNCPORT|$CC_ARG_SYNC|$CC_ARG_TRANSPORT'
        '|$CC_ARG_VERIFY"'
    )
    assert out.stdout == f"{contract.CONTROL_DIR}|||normal||\n"
    assert out.stderr.count("clustcontrol: WARNING:") == 6, out.stderr


# --- partition naming and exclusions ------------------------------------------------------------
@pytest.mark.parametrize(
    ("disk", "number", "device"),
    [
        ("/dev/sda", 2, "/dev/sda2"),
        ("/dev/vdb", 1, "/dev/vdb1"),
        ("/dev/nvme0n1", 2, "/dev/nvme0n1p2"),
        ("/dev/mmcblk0", 2, "/dev/mmcblk0p2"),
        ("/dev/loop7", 1, "/dev/loop7p1"),
        (
            "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001",
            2,
            "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part2",
        ),
        (
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
            3,
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part3",
        ),
    ],
)
def test_partition_naming(disk: str, number: int, device: str) -> None:
    assert contract.partition_device(disk, number) == device
    out = busybox(f"cc_partition_device '{disk}' {number}")
    assert out.stdout == device + "\n"


DEVICE = st.one_of(
    st.from_regex(r"/dev/(sd|vd|xvd)[a-z]{1,2}", fullmatch=True),
    st.from_regex(r"/dev/(nvme[0-9]n[0-9]|mmcblk[0-9]|loop[0-9]{1,2}|md[0-9])", fullmatch=True),
    st.from_regex(r"/dev/disk/by-(id|path|uuid)/[A-Za-z0-9_.:-]{1,30}", fullmatch=True),
)


@settings(max_examples=60, deadline=None)
@given(disks=st.lists(DEVICE, min_size=1, max_size=8), number=st.integers(1, 128))
def test_partition_naming_agrees_between_python_and_the_shell(
    disks: list[str], number: int
) -> None:
    script = "".join(f"cc_partition_device '{d}' {number}\n" for d in disks)
    out = busybox(script)
    assert out.stdout.splitlines() == [contract.partition_device(d, number) for d in disks]


def test_exclusions_agree_between_python_and_the_shell() -> None:
    values = {
        "CC_CONTROL_DIR": "/srv/clustcontrol.d",
        "CC_STATE_DIR": "/var/lib/clustcontrol-node",
        "CC_LOG_DIR": "/var/log/clustcontrol",
    }
    out = busybox("cc_exclusions", **values)
    python = [
        f"{'contents' if contents else 'path'} {path}"
        for path, contents in contract.exclusions(values, sync=True)
    ]
    assert out.stdout.splitlines() == python
    assert "path srv/clustcontrol.d" in python and "path etc/clustcontrol-generation" not in python


def _tree(root: Path) -> dict[str, bytes]:
    """Every entry under root: a file's bytes, a link's target, b"/" for a directory."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = b"-> " + str(path.readlink()).encode()
        else:
            found[rel] = b"/" if path.is_dir() else path.read_bytes()
    return found


def test_the_node_writes_the_node_files_the_contract_declares(tmp_path: Path) -> None:
    """The real engine's cc_write_node_files on a synced root changes exactly the NODE_FILES
    (besides its state directory); the SSH host keys, which the booted system makes, are left
    out of the sync instead. `image show` lists NODE_FILES."""
    root = tmp_path / "root"
    for rel, text in {
        "etc/hostname": "standard\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\tstandard\n",
        "etc/machine-id": "uninitialized\n",
        "etc/network/interfaces": "auto eth0\niface eth0 inet dhcp\n",
        "etc/fstab": "# the standard's\n/dev/sda2 / ext4 defaults 0 1\nnfs:/home /home nfs 0 0\n",
        "etc/ssh/sshd_config": "",
        "var/lib/dbus/machine-id": "standard's own\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "uuid").write_text("0123abcd-0123-abcd-0123-0123456789ab\n")
    before = _tree(root)
    out = busybox(
        f'cc_write_node_files "{root}" /dev/null "{root}/etc/fstab"',
        CC_HOSTNAME="node01",
        CC_FQDN="node01.rostclust",
        CC_IP="192.168.0.11",
        CC_MASTER_IP="192.168.0.1",
        CC_MASTER_NAME="master",
        CC_DOMAIN="rostclust",
        CC_BOOT_INTERFACE="eth0",
        CC_PARTITIONS="",
        CC_UUID_SOURCE=str(tmp_path / "uuid"),
    )
    assert out.returncode == 0, out.stderr
    after = _tree(root)
    state = next(p.default for p in contract.PARAMS if p.key == "CC_STATE_DIR")
    assert state is not None and (root / state.lstrip("/") / "machine-id").is_file()
    changed = {
        rel
        for rel in set(before) | set(after)
        if before.get(rel) != after.get(rel) and not f"/{rel}/".startswith(f"{state}/")
    }
    declared = {f.path for f in contract.NODE_FILES}
    written = {p for p in declared if "*" not in p}
    assert changed == written, after
    assert {f.path for f in contract.NODE_FILES if not f.taken_from_standard} == {
        "etc/hostname", "etc/machine-id", "var/lib/dbus/machine-id", "etc/fstab",
        "etc/ssh/ssh_host_*",
    }  # fmt: skip


def test_the_docs_name_every_secret_of_the_contract() -> None:
    # One list (contract.SECRETS); the README and the threat model name each of its paths.
    for doc in ("README.md", "docs/security.md"):
        text = (REPO / doc).read_text()
        missing = [s.path for s in contract.SECRETS if f"/{s.path}" not in text]
        assert not missing, f"{doc} does not name {missing}"
