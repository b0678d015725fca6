"""The inventory lives where only the master reads it (issue 11, case 6).

Its default location is outside everything served; `init` makes it 0600 in a 0700 directory;
an inventory inside a served path (control directory, state directory, an image's working tree,
the TFTP root), also one reached through a symbolic link, is refused with one line and exit 2,
nothing written; an inventory left at the old default location is refused with the commands
that move it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustcontrol.contract import CONTROL_DIR
from clustcontrol.errors import InvalidInputError
from clustcontrol.inventory.store import (
    DEFAULT_CONFIG,
    OLD_DEFAULT_CONFIG,
    config_path,
    load_inventory,
    served_paths,
)
from tests.conftest import Cli

INIT = ("init", "--domain", "rostclust", "--network", "192.168.0.0/24")
MASTER = ("--master-ip", "192.168.0.1")


def test_default_location_is_outside_every_default_served_path(cli: Cli) -> None:
    assert cli("init", *INIT[1:], *MASTER).code == 0
    inv = load_inventory(cli.config)
    for field, served in served_paths(inv):
        assert not DEFAULT_CONFIG.is_relative_to(served), field
    assert OLD_DEFAULT_CONFIG.is_relative_to(inv.cluster.control_dir)
    assert inv.cluster.control_dir == CONTROL_DIR


def test_init_makes_a_private_directory_and_file_whatever_the_umask(tmp_path: Path) -> None:
    config = tmp_path / "a" / "b" / "master-only" / "cluster.yaml"
    argv = [sys.executable, "-m", "clustcontrol", "--config", str(config), *INIT, *MASTER]
    proc = subprocess.run(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", *argv], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    # The directories above it: 0755, not world-writable (a local user could rename
    # master-only away and put a directory of their own in its place).
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a/b").stat().st_mode) == 0o755
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # An edit keeps the mode (atomic replace with the old file's mode).
    edit = subprocess.run(
        [*argv[:5], "node", "add", "n1", "--mac", "52:54:00:00:00:01", "--ip", "192.168.0.11"],
        capture_output=True,
        text=True,
    )
    assert edit.returncode == 0, edit.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_init_leaves_an_existing_directory_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    cli = Cli(tmp_path / "cluster.yaml")
    assert cli(*INIT, *MASTER).code == 0
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600


def write_starter(config: Path, base: Path, control_dir: str = CONTROL_DIR) -> None:
    """A valid inventory at `config` whose state directory, TFTP root and image root lie under
    `base` (written directly: the CLI refuses to write it where it would be served)."""
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "cluster:\n"
        "  domain: rostclust\n"
        "  network: 192.168.0.0/24\n"
        "  master: {ip: 192.168.0.1}\n"
        f"  control_dir: {control_dir}\n"
        f"  state_dir: {base / 'state'}\n"
        f"  tftp_root: {base / 'tftpboot'}\n"
        "images:\n"
        f"  default: {{root: {base / 'standard'}}}\n"
    )


@pytest.fixture
def control_link(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A control directory the inventory checks accept (named for clustcontrol, not under
    /tmp): a symbolic link in /var/tmp to the test's own directory, removed afterwards.
    Yields (the control_dir setting, the real directory)."""
    real = tmp_path / "control"
    real.mkdir()
    link = Path(f"/var/tmp/clustcontrol-test-{os.getpid()}-{tmp_path.name}")
    link.symlink_to(real)
    try:
        yield str(link), real
    finally:
        link.unlink()


def refused(config: Path, served: str, field: str, *verb: str | Path) -> None:
    """`verb` on the inventory at `config` exits 2 with the one line naming `served`."""
    result = Cli(config)(*verb)
    assert result.code == 2, (verb, result.err)
    lines = [x for x in result.err.splitlines() if x.startswith("clustcontrol: error:")]
    assert lines == [
        f"clustcontrol: error: {config}: the inventory lies inside {served} ({field}), "
        "which the master serves to the nodes"
    ], verb
    assert "Traceback" not in result.err


VERBS: tuple[tuple[str, ...], ...] = (
    ("validate",),
    ("node", "list"),
    ("node", "add", "n1", "--mac", "52:54:00:00:00:01", "--ip", "192.168.0.11"),
    ("update-node", "show"),
)


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("cluster.state_dir", "state"),
        ("images.default.root", "standard/etc"),
        ("cluster.tftp_root", "tftpboot"),
    ],
)
def test_an_inventory_inside_a_served_path_is_refused(
    tmp_path: Path, field: str, where: str
) -> None:
    base = tmp_path / "served"
    config = base / where / "cluster.yaml"
    write_starter(config, base)
    before = config.read_bytes()
    served = str(base / where.split("/")[0])
    for verb in VERBS:
        refused(config, served, field, *verb)
    refused(config, served, field, "render", "--out", tmp_path / "out")
    assert config.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_an_inventory_inside_the_control_directory_is_refused(
    tmp_path: Path, control_link: tuple[str, Path]
) -> None:
    """Named through the control directory's own path or its real one, or through another link
    to it: the resolved paths decide."""
    control_dir, real = control_link
    (tmp_path / "private").symlink_to(real)
    for config in (
        real / "cluster.yaml",
        Path(control_dir) / "sub" / "cluster.yaml",
        tmp_path / "private" / "cluster.yaml",
    ):
        write_starter(config, tmp_path / "served", control_dir)
        before = config.read_bytes()
        for verb in VERBS:
            refused(config, control_dir, "cluster.control_dir", *verb)
        assert config.read_bytes() == before


def test_init_refuses_to_write_into_a_served_path(tmp_path: Path) -> None:
    standard = tmp_path / "standard"
    cli = Cli(standard / "etc" / "cluster.yaml")
    result = cli(*INIT, *MASTER, "--image-root", str(standard))
    assert result.code == 2
    assert f"the inventory lies inside {standard} (images.default.root)" in result.err
    assert not standard.exists()


def test_a_neighbour_of_a_served_path_is_fine(
    tmp_path: Path, control_link: tuple[str, Path]
) -> None:
    """/etc/clustcontrol-master is not inside /etc/clustcontrol: whole path components."""
    control_dir, real = control_link
    neighbour = Path(f"{real}-master") / "cluster.yaml"
    write_starter(neighbour, tmp_path / "served", control_dir)
    result = Cli(neighbour)("validate")
    assert result.code == 0, result.err


def test_config_path_refuses_the_old_default_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLUSTCONTROL_CONFIG", raising=False)
    default = tmp_path / "etc/clustcontrol-master/cluster.yaml"
    old = tmp_path / "etc/clustcontrol/cluster.yaml"
    assert config_path(None, default=default, old=old) == default  # neither exists
    old.parent.mkdir(parents=True)
    old.write_text("cluster: {}\n")
    with pytest.raises(InvalidInputError) as moved:
        config_path(None, default=default, old=old)
    assert moved.value.problems == [
        f"{old}: the inventory's old default location is inside the control directory "
        f"{old.parent}, which every node reads"
    ]
    assert moved.value.hint is not None
    assert moved.value.hint.startswith(
        f"move it (as root): install -d -m 0700 {default.parent} && mv {old} {default} "
        f"&& chmod 0600 {default};"
    )
    assert not default.exists() and old.exists()  # nothing moved behind the admin's back

    # The hint's commands, run, give a working default.
    for command in moved.value.hint.removeprefix("move it (as root): ").split(";")[0].split("&&"):
        subprocess.run(command.split(), check=True)
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert config_path(None, default=default, old=old) == default

    # Both: the old copy is still served; refused until it is removed.
    old.write_text("cluster: {}\n")
    with pytest.raises(InvalidInputError) as both:
        config_path(None, default=default, old=old)
    assert both.value.hint == f"remove the old copy: rm {old}"
    # --config and $CLUSTCONTROL_CONFIG name their file: no default, no migration check.
    assert config_path(old, default=default, old=old) == old
    monkeypatch.setenv("CLUSTCONTROL_CONFIG", str(default))
    assert config_path(None, default=default, old=old) == default


def test_verbs_without_an_inventory_never_look_for_it() -> None:
    """demo and --help work whatever lies at the default locations; --help names the default."""
    env = {k: v for k, v in os.environ.items() if k != "CLUSTCONTROL_CONFIG"}
    argv = [sys.executable, "-m", "clustcontrol", "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert str(DEFAULT_CONFIG) in "".join(proc.stdout.split())


def test_an_inventory_others_can_replace_is_warned_about(tmp_path: Path) -> None:
    """Under a world-writable directory (no sticky bit) or with a group/world-writable file, a
    local user can put another inventory in place and root applies it: a WARNING each."""
    place = tmp_path / "open"
    place.mkdir()
    cli = Cli(place / "cluster.yaml")
    assert cli(*INIT, *MASTER).code == 0
    assert cli("validate").err == ""
    place.chmod(0o777)
    (place / "cluster.yaml").chmod(0o666)
    result = cli("validate")
    assert result.code == 0
    assert result.err.splitlines() == [
        f"clustcontrol: WARNING: the inventory {place}/cluster.yaml is writable by others (mode "
        f"0666): whoever writes it decides what apply installs as root (chmod 0600 "
        f"{place}/cluster.yaml)",
        f"clustcontrol: WARNING: the directory of the inventory {place} is writable by others "
        f"(mode 0777): whoever writes it decides what apply installs as root (chmod go-w "
        f"{place})",
    ]
    place.chmod(0o1777)  # sticky, as /tmp: others cannot rename it away
    (place / "cluster.yaml").chmod(0o600)
    assert cli("validate").err == ""
    os.chown(place / "cluster.yaml", 1000, 1000)
    assert "belongs to uid 1000" in cli("validate").err
