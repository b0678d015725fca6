"""The oracle of the exact-sync promise (issue 10): a differential, property-based test that
drives the real node engine (busybox sh, a loop-device disk, the real commit code) through
random sequences and, after every completed boot, compares the node's root with the generation
its sync record names.

A hypothesis state machine (OracleMachine) holds one node and one standard. Its steps:
  - change the working tree (oracle_edits: every file kind and attribute, renames, type
    changes, the persistent paths' parents removed or replaced);
  - commit it (the generation's tree is compared with the working tree: exact but for the
    manifest's exclusions; a commit that finds nothing to do must be right about it);
  - boot the node, over NFS (an NFSv3-like view without xattrs and ACLs) or the rsync daemon,
    sometimes with clustcontrol.verify=N, clustcontrol.sync=full, CC_FIRST_COPY=rsync or
    CC_DELTA_SYNC=no, after one, several or no commits;
  - boot and interrupt it: SIGKILL of the engine and its children, SIGKILL of the copy tool
    alone (rsync or tar; the engine goes on), or a power cut;
  - write persistent data on the node, and tamper with synced files (the next boot compares
    the whole tree: clustcontrol.verify=1, which must repair everything).

A power cut: the disk image file behind the loop device is made immutable (chattr +i), so
from that instant nothing more reaches the "disk": the loop driver's writes to it fail. Then
the engine is killed, the root unmounted (its unwritten pages fail to write and are lost, as
in a node's RAM), the loop device detached, the image made writable again and attached to a new
loop device. What the disk holds is exactly what was written before the cut, journal included,
as after a real power loss with a disk that honours flushes.

After every completed boot (oracle_trees.NodeRules): exit status 0; the record names the
current generation and no marker is left; the node's root equals that generation on type,
mode, owner, size, mtime, content, symlink target, every xattr (ACLs and capabilities
included), device numbers and hard-link groups, holes not filled, no immutable or append-only
flag; the exceptions are the contract's exclusions, the node files, the persistent paths the
node owns (compared with the node's own copy instead: byte-identical after every boot, killed
or not) and the directories holding node-owned files (their mtime; where the generation has
no directory there, nothing but being one). Nothing may appear outside the node's root (the
absolute symlink targets of the generator lead to paths checked to stay absent), and the root
file system is never re-made once the node held a complete sync.

Budget: `make test` runs a few examples with derandomize (the same sequences each run, about
two minutes); `make soak` sets CC_SOAK_EXAMPLES (random sequences, many more examples, longer
sequences). CC_ORACLE_SHRINK=1 lets hypothesis shrink a failure (slow: every step is real)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import pytest
from hypothesis import HealthCheck, Phase, __version__, event, note, reproduce_failure, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from tests.node import conftest
from tests.node.conftest import Node, RsyncDaemon, rsync_daemon_serving, write_control
from tests.node.oracle_edits import (
    CHANGE,
    CREATE,
    ESCAPE_ROOTS,
    NODE_FILES,
    Standard,
    apply,
    skeleton,
)
from tests.node.oracle_trees import (
    NodeRules,
    Tree,
    check_generation,
    describe,
    describe_path,
    subtree,
    under,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("setcap", "setfacl", "chattr")),
        reason="needs libcap2-bin, acl and e2fsprogs",
    ),
]

SOAK = int(os.environ.get("CC_SOAK_EXAMPLES", "0") or 0)
EXAMPLES = 20  # make test: about two minutes on two cores
STATE = "var/lib/clustcontrol-node"
PERSISTENT = tuple(p.lstrip("/") for p in conftest.PERSISTENT)  # the test inventory's
DISK_MIB = 160
# Swap, a root large enough for a few dense copies of the generator's sparse files, data.
SFDISK = "label: dos\nunit: sectors\n\n,4MiB,S\n,120MiB,L,*\n,,L\n"
RULES = NodeRules.of(conftest.PERSISTENT, ["/scratch"])
# What a completed boot did, for --hypothesis-show-statistics: pattern -> event.
EVENTS = (
    (r"syncing image \S+ from \S+ \((\w+), (\w+)\)", "copy: {1} ({0})"),
    (r"no transfer", "copy: none (skip)"),
    (r"the standard has no directory", "kept a directory the standard replaced"),
    (r"persistent \S+ kept", "kept a persistent path the standard removed"),
    (r"made separate files", "separated seeded persistent files"),
    (r"extended attributes restored", "attributes restored from the archive"),
    (r"dense files allocated", "dense files allocated again"),
)


class Session:
    """What all examples of one test run share: the scratch directory, the busybox applets,
    the rsync daemon (serving RIG/state/images/default/roots, rebuilt by every example) and the
    control directory rendered once per transport."""

    def __init__(self, tmp: Path, bbdir: Path, daemon: RsyncDaemon) -> None:
        self.tmp = tmp
        self.bbdir = bbdir
        self.daemon = daemon
        self.stats: Counter[str] = Counter()
        self.controls = {}
        for transport in ("nfs", "rsync"):
            dest = tmp / f"control-{transport}"
            write_control(dest, sfdisk=SFDISK, transport=transport, rsync_port=daemon.port)
            self.controls[transport] = dest

    @property
    def rig(self) -> Path:
        return self.tmp / "rig"


SESSION: Session | None = None


def log_tail(root: Path, size: int = 6000) -> str:
    """The last `size` characters of the node's boot log (rsync's itemized changes included)."""
    log = root / "var/log/clustcontrol/boot-sync.log"
    return log.read_text(errors="replace")[-size:] if log.is_file() else "(no log)"


def record(root: Path) -> dict[str, str]:
    path = root / STATE / "last-sync"
    if not path.is_file():
        return {}
    return dict(re.findall(r"^(CC_SYNC_\w+)='(.*)'$", path.read_text(), re.M))


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the processes of session sid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            found.append((int(entry), comm))
    return found


def busy_report(node: Node) -> str:
    """Who holds the node's disk (for a failure message)."""
    lines = [line for line in Path("/proc/mounts").read_text().splitlines() if "loop" in line]
    part = Path(node.part(2)).name
    holders = Path(f"/sys/block/{Path(node.disk).name}/{part}/holders")
    lines.append(f"holders of {part}: {sorted(os.listdir(holders)) if holders.exists() else '?'}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                    if target.startswith(node.disk) or str(node.tmp) in target:
                        comm = Path(f"/proc/{entry}/comm").read_text().strip()
                        lines.append(f"pid {entry} ({comm}) fd {fd} -> {target}")
    return "\n".join(lines)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """The output of a boot left to run; a boot that hangs fails, naming what hangs."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hanging = [
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            for pid, _comm in session_processes(proc.pid)
        ]
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the boot hangs: {hanging}\n{out}") from None
    settle(proc.pid)
    return out


def settle(sid: int) -> None:
    """End what is left of session sid, as the reboot after a boot would, and wait until it is
    gone (killed processes still close files). A copy tool killed alone can orphan the others
    of its run (rsync's generator, a tar at the other end of the pipe)."""
    deadline = time.monotonic() + 30
    while left := session_processes(sid):
        for pid, _comm in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert time.monotonic() < deadline, f"processes left: {left}"
        time.sleep(0.02)


def unmount_all(top: Path) -> None:
    """Unmount everything below top, deepest first, for real (a lazy unmount would leave the
    file system busy for the next boot's e2fsck)."""
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{top}/")), key=len, reverse=True):
        for _ in range(100):
            if subprocess.run(["umount", point], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        else:
            subprocess.run(["umount", "-l", point], check=False)
            raise AssertionError(f"{point} stays busy")


def attach(image: Path) -> str:
    """The disk image on a new loop device, its partitions (if any) known to the kernel: this
    machine's kernel may lack the DOS partition parser (CONFIG_MSDOS_PARTITION), so partx
    adds them as the kernel would at a node's boot."""
    disk = subprocess.run(
        ["losetup", "-f", "--show", "-P", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    rescan(disk)
    return disk


def rescan(disk: str) -> None:
    """The partitions of disk known to the kernel as after a reboot (partx: see attach)."""
    subprocess.run(["partx", "-a", disk], check=False, capture_output=True)
    subprocess.run(["partx", "-u", disk], check=False, capture_output=True)


def detach(disk: str) -> None:
    subprocess.run(["losetup", "-d", disk], check=False, capture_output=True)
    backing = Path(f"/sys/block/{Path(disk).name}/loop/backing_file")
    deadline = time.monotonic() + 20
    while backing.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def thaw_all(root: Path) -> None:
    if root.is_dir():
        subprocess.run(["chattr", "-R", "-f", "-i", "-a", str(root)], check=False)


def escaped() -> list[str]:
    """Paths the generator's absolute symlinks name on this machine: a node that followed one
    wrote outside its root."""
    found = [p for p in ESCAPE_ROOTS if os.path.lexists(p)]
    for p in found:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    return found


Step = TypeVar("Step", bound=Callable[..., None])


def logged(step: Step) -> Step:
    """Append a failing step's error and the example's log to SESSION/failures.log."""

    @functools.wraps(step)
    def run(self: OracleMachine, *args: object, **kwargs: object) -> None:
        try:
            step(self, *args, **kwargs)
        except Exception:
            with open(self.session.tmp / "failures.log", "a") as f:
                f.write("=" * 78 + "\n" + "\n".join(self.log) + "\n")
                f.write(traceback.format_exc() + "\n")
            raise

    return cast(Step, run)


@dataclass(frozen=True)
class NodeWrites:
    """What the node does between boots (OracleMachine.node_writes)."""

    persistent: str
    name: str
    body: bytes
    host_key: bytes  # b"": none
    tamper: tuple[int, str] | None


NODE_WRITES = st.builds(
    NodeWrites,
    st.sampled_from(PERSISTENT),
    st.sampled_from(["results", "node state", "-x", "new\nline"]),
    st.binary(max_size=2000),
    st.one_of(st.just(b""), st.binary(min_size=1, max_size=64)),
    st.none()
    | st.tuples(
        st.integers(0, 10**6), st.sampled_from(["flip", "chmod", "junk", "remove", "xattr"])
    ),
)


class OracleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert SESSION is not None
        self.session = SESSION
        rig = SESSION.rig
        thaw_all(rig / "standard")
        if rig.exists():
            shutil.rmtree(rig)
        rig.mkdir()
        image = rig / "disk.img"
        with open(image, "wb") as f:
            f.truncate(DISK_MIB * 1024 * 1024)
        self.image = image
        self.node = Node(rig, rig / "standard", attach(image), SESSION.bbdir)
        self.node.cmdline = (
            "root=/dev/sda2 ip=dhcp clustcontrol.server=127.0.0.1 clustcontrol.image=default "
            "BOOTIF=01-52-54-00-00-00-01"
        )
        self.std = Standard(self.node.std)
        skeleton(self.node.std)
        self.snapshots: dict[str, Tree] = {}  # generation -> its tree, described at commit
        self.kept: dict[str, Tree] = {}  # persistent path the node owns -> its own copy
        self.ever_complete = False  # the node held a complete sync once
        self.repair_due = False  # tampered with: the next completed boot compares everything
        self.boots = 0
        self.machine_id = ""
        self.log: list[str] = []

    def note(self, what: str) -> None:
        """A step for the failure report: hypothesis's, and the example's own log, written to
        SESSION/failures.log when a step fails (a failure that depends on timing may not
        happen again when hypothesis replays the example)."""
        note(what)
        self.log.append(what)

    def count(self, what: str) -> None:
        """An event for the statistics: hypothesis's, and the run's summary (printed)."""
        event(what)
        self.session.stats[what] += 1

    def teardown(self) -> None:
        self.node.cleanup_mounts()
        detach(self.node.disk)
        self.std.thaw()

    # --- steps ----------------------------------------------------------------------------
    @initialize(data=st.data())
    def build(self, data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(3, 20), label="creations")):
            self.log.append(apply(self.std, data, CREATE))

    @rule(data=st.data())
    @logged
    def change(self, data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(1, 4), label="changes")):
            self.log.append(apply(self.std, data, CHANGE))

    @rule()
    @logged
    def commit(self) -> None:
        generation = self.node.commit()
        tree = describe(self.node.tree(generation))
        problems = check_generation(describe(self.std.root), tree)
        assert not problems, f"generation {generation}:\n" + "\n".join(problems)
        if generation in self.snapshots:
            assert self.snapshots[generation] == tree, f"generation {generation} changed"
        self.snapshots[generation] = tree
        self.note(f"commit: generation {generation}")

    @rule(data=st.data())
    @logged
    def boot(self, data: st.DataObject) -> None:
        """A boot, one in two interrupted: the engine and its children killed, the copy tool
        alone killed (the engine goes on), or a power cut; at the start or once the sync
        marker is there, after a delay."""
        env = self.prepare_boot(data)
        how = data.draw(
            st.sampled_from(["none", "none", "none", "kill", "kill-copy", "power-cut"]),
            label="interrupt",
        )
        when = data.draw(st.sampled_from(["start", "copy"]), label="when")
        delay = data.draw(st.integers(0, 600), label="delay ms") / 1000
        if how == "none":
            self.count("boot")
            result = self.node.sh("cc_run", **env)
            self.after_boot(result.rc, result.out)
            return
        self.count(f"interrupted: {how}")
        proc = self.node.popen("cc_run", **env)
        marker = self.node.target / STATE / "sync-in-progress"
        deadline = time.monotonic() + 60
        while when == "copy" and not marker.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no sync marker"
            time.sleep(0.005)
        time.sleep(delay)
        if how == "kill-copy":
            for pid, comm in session_processes(proc.pid):
                if comm in ("rsync", "tar"):
                    self.note(f"killing {comm} ({pid})")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    break
            out = finish(proc)
            self.after_boot(proc.returncode, out)
            return
        if proc.poll() is not None:
            self.note("the boot ended before the interruption")
            out, _ = proc.communicate()
            self.after_boot(proc.returncode, out)
            return
        if how == "power-cut":
            subprocess.run(["chattr", "+i", str(self.image)], check=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        settle(proc.pid)
        self.note(f"{how} after {delay:.3f} s ({when}); output:\n{out[-3000:]}")
        unmount_all(self.node.tmp)
        if how == "power-cut":
            detach(self.node.disk)
            subprocess.run(["chattr", "-i", str(self.image)], check=True)
            self.node.disk = attach(self.image)
        self.after_interruption()

    @rule(choice=NODE_WRITES)
    @logged
    def node_writes(self, choice: NodeWrites) -> None:
        """The node's own data in its persistent paths and its own SSH host key; sometimes
        tampering with synced files too (the next completed boot must repair them). Every
        choice is drawn before anything is looked at: what the node holds depends on when the
        interruptions struck, and hypothesis needs the same draws for the same choices."""
        with self.mounted_root() as root:
            if root is None or not record(root) or (root / STATE / "sync-in-progress").exists():
                self.note("node: no complete sync to write into")
                return
            rel = choice.persistent
            if any(not _real_dir(root / d) for d in _parents(rel)):
                self.note(f"node: {rel} has no directory to be written in")
            else:
                _write_node_data(root / rel, choice.name, choice.body)
                self.kept[rel] = _describe_at(root, rel)
                self.note(f"node: wrote its data into {rel}")
            keys = root / "etc/ssh"
            if choice.host_key and _real_dir(root / "etc") and _real_dir(keys):
                # The node's own SSH host key (an exclusion): kept by every sync.
                (keys / "ssh_host_oracle_key").write_bytes(choice.host_key)
                self.kept["etc/ssh/ssh_host_oracle_key"] = _describe_at(
                    root, "etc/ssh/ssh_host_oracle_key"
                )
                self.note("node: made its own SSH host key")
            # The node's writes reach its other own paths too where they share an inode (the
            # standard may hard-link two persistent files): what it holds now is what it owns.
            for own in self.kept:
                self.kept[own] = _describe_at(root, own)
            if choice.tamper is not None:
                self.note(_tamper(root, choice.tamper, self.kept))
                self.repair_due = True

    # --- boots ----------------------------------------------------------------------------
    def prepare_boot(self, data: st.DataObject) -> dict[str, str]:
        """Commit (often), choose the transport and the boot's switches; the environment."""
        for _ in range(data.draw(st.integers(0, 3), label="changes first")):
            self.log.append(apply(self.std, data, CHANGE))
        if not self.snapshots or data.draw(st.integers(0, 3), label="commit first") > 0:
            self.commit()
        transport = data.draw(st.sampled_from(["nfs", "rsync"]), label="transport")
        variant = data.draw(
            st.sampled_from(
                [
                    "plain",
                    "plain",
                    "plain",
                    "verify=1",
                    "verify=3",
                    "sync=full",
                    "first-rsync",
                    "no-delta",
                ]
            ),
            label="variant",
        )
        if self.repair_due:
            variant = "verify=1"
        control = self.node.control
        if control.exists():
            shutil.rmtree(control)
        shutil.copytree(self.session.controls[transport], control)
        base = self.node.cmdline.split(" clustcontrol.transport=")[0]
        cmdline = f"{base} clustcontrol.transport={transport}"
        env: dict[str, str] = {}
        if variant.startswith(("verify=", "sync=")):
            cmdline += f" clustcontrol.{variant}"
        elif variant == "first-rsync":
            env["CC_FIRST_COPY"] = "rsync"
        elif variant == "no-delta":
            env["CC_DELTA_SYNC"] = "no"
        if transport == "nfs":
            env["CC_TEST_NFS3_VIEW"] = str(self.node.tmp / "nfs3-view")
        else:
            env["CC_NFS_MOUNT"] = "false"
        self.node.cmdline = cmdline
        rescan(self.node.disk)  # a reboot: the kernel reads the partition table again
        self.boots += 1
        self.note(f"boot {self.boots}: {transport}, {variant}, generation {self.node.generation}")
        return env

    def after_boot(self, rc: int, out: str) -> None:
        """A completed boot: the oracle."""
        outside = escaped()
        assert not outside, f"the node wrote outside its root: {outside}\n{out}"
        assert rc == 0, f"the boot failed (exit status {rc}):\n{out}\n{busy_report(self.node)}"
        if self.ever_complete:
            assert f"making ext4 on {self.node.part(2)}" not in out, (
                f"the root was re-made: the node's persistent data is lost\n{out}"
            )
        for pattern, what in EVENTS:
            if found := re.search(pattern, out):
                self.count(what.format(*found.groups()))
        with self.node.mounted(2) as root:
            tree = describe(root)
            rec = record(root)
            machine_id = (root / "etc/machine-id").read_text()
            assert machine_id == (self.machine_id or machine_id), "the machine-id changed"
            self.machine_id = machine_id
            generation = rec.get("CC_SYNC_GENERATION", "")
            assert generation == self.node.generation, (
                f"recorded {generation!r}, current {self.node.generation}\n{out}"
            )
            assert not (root / STATE / "sync-in-progress").exists(), out
            problems = RULES.check(self.snapshots[generation], tree, self.kept)
            assert not problems, (
                f"the node differs from generation {generation}:\n"
                + "\n".join(problems[:60])
                + f"\n--- boot output:\n{out}"
                + f"\n--- the end of the node's log:\n{log_tail(root)}"
            )
            for p in PERSISTENT:  # recorded seeded: the node's own from now on
                if p not in self.kept and os.path.lexists(root / p):
                    self.kept[p] = subtree(tree, p)
        self.ever_complete = True
        self.repair_due = False

    def after_interruption(self) -> None:
        """A killed boot or a power cut: the persistent data the node owns is intact; what is
        on the disk says whether a complete sync is there."""
        outside = escaped()
        assert not outside, f"the node wrote outside its root: {outside}"
        with self.mounted_root() as root:
            if root is None:
                return
            for p, mine in self.kept.items():
                now = _describe_at(root, p)
                assert now == mine, f"persistent {p} changed by an interrupted boot"
            if record(root) and not (root / STATE / "sync-in-progress").exists():
                # The sync completed (its record reached the disk) before the boot was cut:
                # the persistent paths it left are the node's own from now on.
                for p in PERSISTENT:
                    if p not in self.kept and os.path.lexists(root / p):
                        self.kept[p] = _describe_at(root, p)
                self.ever_complete = True

    @contextlib.contextmanager
    def mounted_root(self) -> Iterator[Path | None]:
        """The node's root mounted, or None when it holds no file system (yet)."""
        mnt = self.node.tmp / "inspect2"
        mnt.mkdir(exist_ok=True)
        if subprocess.run(["mount", self.node.part(2), str(mnt)], capture_output=True).returncode:
            yield None
            return
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _describe_at(root: Path, rel: str) -> Tree:
    """The subtree at rel, keys relative to root (empty when rel does not exist)."""
    path = root / rel
    if not os.path.lexists(path):
        return {}
    if _real_dir(path):
        return {f"{rel}/{r}" if r else rel: item for r, item in describe(path).items()}
    return {rel: describe_path(str(path))}


def _write_node_data(path: Path, name: str, body: bytes) -> None:
    if _real_dir(path) or (not os.path.lexists(path) and path.name == "keep"):
        path.mkdir(exist_ok=True)
        target = path / name
        if _real_dir(target):
            target = target / "inner"
        if target.is_symlink():
            target.unlink()
        target.write_bytes(body)
    else:
        if path.is_symlink() or path.is_dir():
            return
        path.write_bytes(body)


def _tamper(root: Path, tamper: tuple[int, str], kept: dict[str, Tree]) -> str:
    """Change something synced on the node behind the engine's back: tamper is (which path,
    a number taken modulo the candidates, how)."""
    candidates = []
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(dirs + files):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if RULES.exclusions.excluded(rel) or rel in RULES.node_written or rel in NODE_FILES:
                continue
            # Not the node's own data, nor a directory above it.
            own = [*kept, STATE, "var/log/clustcontrol", "lost+found", "etc/machine-id"]
            if any(under(rel, p) or under(p, rel) for p in own):
                continue
            candidates.append(rel)
    candidates.sort()
    if not candidates:
        return "node: nothing to tamper with"
    rel = candidates[tamper[0] % len(candidates)]
    path = root / rel
    how = tamper[1]
    st_ = os.lstat(path)
    if how == "flip" and path.is_file() and not path.is_symlink() and st_.st_size:
        with open(path, "r+b") as f:
            f.seek(0)
            byte = f.read(1)
            f.seek(0)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns))
        return f"node: flipped the first byte of {rel!r}, size and mtime kept"
    if how == "chmod" and not path.is_symlink():
        os.chmod(path, 0o707)
        return f"node: chmod 707 {rel!r}"
    if how == "xattr" and not path.is_symlink() and (path.is_file() or path.is_dir()):
        os.setxattr(path, "user.node-junk", b"junk")
        return f"node: xattr on {rel!r}"
    if how == "remove":
        if _real_dir(path):
            shutil.rmtree(path)
        else:
            path.unlink()
        return f"node: removed {rel!r}"
    parent = path if _real_dir(path) else path.parent
    if parent.is_symlink():
        return "node: nothing tampered"
    (parent / "node-junk").write_bytes(b"junk\n")
    return f"node: junk file in {os.path.relpath(parent, root)!r}"


@pytest.fixture
def oracle_session(tmp_path: Path, bbdir: Path) -> Iterator[Session]:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")
    served = tmp_path / "rig/state/images/default/roots"  # Node.served of every example's rig
    with rsync_daemon_serving(served, tmp_path) as daemon:
        yield Session(tmp_path, bbdir, daemon)


def test_oracle(oracle_session: Session) -> None:
    global SESSION
    SESSION = oracle_session
    machine: type[OracleMachine] = OracleMachine
    if blob := os.environ.get("CC_ORACLE_REPRODUCE"):  # the blob a failure prints
        machine = reproduce_failure(__version__, blob.encode())(OracleMachine)
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=SOAK or EXAMPLES,
                stateful_step_count=40 if SOAK else 30,
                deadline=None,
                derandomize=not SOAK,
                database=None,
                print_blob=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate]
                + ([Phase.shrink] if os.environ.get("CC_ORACLE_SHRINK") else []),
            ),
        )
    finally:
        SESSION = None
        print("oracle: what the completed boots did (pytest -s shows it)")
        for what, n in sorted(oracle_session.stats.items()):
            print(f"  {n:5d}  {what}")
