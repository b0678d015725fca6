"""Who can read a secret over the network: the real daemons with the configs `apply` renders.

The master's namespace runs rpcbind and nfs-ganesha (in a mount namespace of their own, /run
private) with the rendered ganesha.conf, and an rsync daemon with the rendered rsyncd.conf; the
image's generation is committed by the real `image commit`. A "node" namespace asks for the
secrets with libnfs (nfs-cat: as root it binds a reserved source port, as any other user it
cannot) and with rsync:

- root at an inventory address reads the generation's secrets archive;
- an unprivileged user there, claiming uid 0 (AUTH_SYS lets a client claim any uid), is refused
  because its source port is not reserved (ganesha logs "Non-reserved Port"): the check is the
  port, not the uid;
- an address that is not in the inventory gets nothing, as root;
- the rsync module serves no secret, even one planted into a tree (the daemon's excludes)."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from clustcontrol.image.commit import commit_image
from clustcontrol.image.generation import GenerationStore
from tests.daemons.conftest import (
    Daemons,
    Link,
    cluster,
    inventory,
    must,
    poll,
    render_into,
    run,
)

pytestmark = pytest.mark.daemon

NODE = "192.168.0.11/24"  # node01: in the inventory
FOREIGN = "192.168.0.77/24"  # in the cluster network, not in the inventory
NOBODY = "65534"


def listening(link: Link, port: int) -> bool:
    out = run(link.server("ss", "-ltn")).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines()[1:] if line)


def client_address(link: Link, cidr: str) -> None:
    must(["ip", "-n", link.client_ns, "addr", "flush", "dev", link.client_if])
    must(["ip", "-n", link.client_ns, "addr", "add", cidr, "dev", link.client_if])


def unprivileged(*argv: str) -> list[str]:
    """argv run as nobody (no capabilities: it cannot bind a reserved port)."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def as_nobody(link: Link, *argv: str) -> subprocess.CompletedProcess[str]:
    return run(link.client(*unprivileged(*argv)))


def nfs_cat(link: Link, url: str, out: Path, *, user: bool = False) -> int:
    """libnfs's nfs-cat of url in the node's namespace into out, as root or (user) nobody."""
    argv = unprivileged("nfs-cat", url) if user else ["nfs-cat", url]
    proc = run(["sh", "-c", 'exec "$@" >"$0"', str(out), *link.client(*argv)], timeout=60)
    return proc.returncode


@pytest.fixture
def master(tmp_path: Path, daemons: Daemons, link: Link) -> dict[str, object]:
    """A committed image with secrets, the rendered configs, ganesha and rsyncd running."""
    std = tmp_path / "std"
    (std / "etc/munge").mkdir(parents=True)
    (std / "etc/motd").write_text("served to every node\n")
    (std / "etc/shadow").write_text("root:$6$THE-SHADOW:19000:0:99999:7:::\n")
    (std / "etc/shadow").chmod(0o640)
    (std / "etc/munge/munge.key").write_bytes(b"THE-MUNGE-KEY" * 64)
    (std / "etc/munge/munge.key").chmod(0o400)
    state = tmp_path / "state"
    inv = inventory(
        cluster=cluster(nfs_server="ganesha", state_dir=str(state)),
        images={"default": {"root": str(std), "transport": "rsync"}},
    )
    generation = commit_image(inv, "default").generation
    store = GenerationStore.for_image(Path("/"), "default", str(state))
    # The store is root's alone on the master (0700): the daemons, as root, still serve it.
    assert stat.S_IMODE(store.base.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.base.stat().st_mode) == 0o700
    out = tmp_path / "rendered"
    render_into(inv, out)
    conf = out / "etc/ganesha/ganesha.conf"
    run_dir = tmp_path / "ganesha-run"
    run_dir.mkdir()
    # rpcbind and ganesha share a private /run (rpcbind's socket is /run/rpcbind.sock: another
    # rpcbind on this machine must not see ganesha's registrations) and recovery directory (the
    # e2e master's ganesha keeps its own); SIGTERM ends both.
    script = (
        "mkdir -p /var/lib/nfs/ganesha && mount -t tmpfs tmpfs /var/lib/nfs/ganesha"
        " && mount -t tmpfs tmpfs /run && mkdir -p /run/ganesha /run/rpcbind || exit 1\n"
        "rpcbind -f -w & r=$!\n"
        f"ganesha.nfsd -F -f {conf} -L {run_dir}/ganesha.log -p /run/ganesha/pid -N NIV_INFO"
        " & g=$!\n"
        'trap \'kill "$g" "$r"; wait\' TERM INT\n'
        'wait "$g"; kill "$r"\n'
    )
    daemons.start(
        "ganesha", link.server("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    )
    poll(lambda: listening(link, 2049), "ganesha on port 2049", timeout=60)
    daemons.start(
        "rsyncd",
        link.server(
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={out / 'etc/rsyncd.conf'}",
            "--address=192.168.0.1",
            f"--log-file={tmp_path / 'rsyncd.log'}",
        ),
    )
    poll(lambda: listening(link, 873), "rsyncd on port 873")
    return {
        "generation": generation,
        "store": store,
        "log": run_dir / "ganesha.log",
        "archive": f"nfs://192.168.0.1{store.secrets_archive(generation)}",
        "roots": f"nfs://192.168.0.1{store.tree(generation)}",
    }


def test_root_at_a_node_address_reads_the_secrets_over_a_privileged_port(
    master: dict[str, object], link: Link, tmp_path: Path
) -> None:
    client_address(link, NODE)
    got = tmp_path / "archive.tar"
    assert nfs_cat(link, str(master["archive"]), got) == 0, master
    with tarfile.open(got) as tar:
        member = tar.extractfile("./etc/shadow")
        assert member is not None and b"THE-SHADOW" in member.read()
        assert "./etc/munge/munge.key" in tar.getnames()
    # The served roots (to the whole cluster network) hold no secret.
    motd, shadow = tmp_path / "motd", tmp_path / "shadow"
    assert nfs_cat(link, f"{master['roots']}/etc/motd", motd) == 0
    assert motd.read_text() == "served to every node\n"
    assert nfs_cat(link, f"{master['roots']}/etc/shadow", shadow) != 0
    assert b"THE-SHADOW" not in shadow.read_bytes()


def test_an_unprivileged_user_at_a_node_address_is_refused_for_its_port(
    master: dict[str, object], link: Link, tmp_path: Path
) -> None:
    client_address(link, NODE)
    got = tmp_path / "stolen"
    # AUTH_SYS: the client says which uid it is; claiming root is the attack.
    assert nfs_cat(link, f"{master['archive']}?uid=0&gid=0", got, user=True) != 0
    assert b"THE-SHADOW" not in got.read_bytes()
    log = Path(str(master["log"])).read_text(errors="replace")
    assert "Non-reserved Port" in log and "192.168.0.11" in log, log[-2000:]
    # Nor through the roots: every export wants a reserved port.
    assert nfs_cat(link, f"{master['roots']}/etc/motd?uid=0&gid=0", got, user=True) != 0
    # The same user over rsync finds no secret in the module.
    listing = as_nobody(link, "rsync", f"rsync://192.168.0.1/default/{master['generation']}/etc/")
    assert listing.returncode == 0, listing.stderr
    assert "motd" in listing.stdout and "shadow" not in listing.stdout
    assert "munge" in listing.stdout  # the directory is served, not the key in it
    key = as_nobody(link, "rsync", f"rsync://192.168.0.1/default/{master['generation']}/etc/munge/")
    assert "munge.key" not in key.stdout


def test_an_address_not_in_the_inventory_gets_nothing(
    master: dict[str, object], link: Link, tmp_path: Path
) -> None:
    client_address(link, FOREIGN)
    got = tmp_path / "foreign"
    assert nfs_cat(link, str(master["archive"]), got) != 0  # as root, a reserved port
    assert got.read_bytes() == b""
    # A secret planted into a served tree (as a tree from before secrets were kept apart
    # held it) is refused by the rsync daemon itself.
    store = master["store"]
    assert isinstance(store, GenerationStore)
    planted = store.tree(str(master["generation"])) / "etc/shadow"
    planted.write_text("root:$6$PLANTED:19000::::::\n")
    try:
        url = f"rsync://192.168.0.1/default/{master['generation']}/etc/shadow"
        proc = run(link.client("rsync", url, str(tmp_path / "planted")))
        assert proc.returncode != 0 and not (tmp_path / "planted").exists()
    finally:
        os.unlink(planted)
