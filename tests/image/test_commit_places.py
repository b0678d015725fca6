"""`image commit` keeps its places apart where they lead: cluster.state_dir, tftp_root,
control_dir and the image roots compared with symbolic links followed inside --root, the
generation store found there too (an absolute link under a prefix stays in it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, inventory_data
from tests.image.conftest import IMAGE_ROOT, snapshot

HINT = (
    "clustcontrol: hint: change the link, or the inventory's path, so that neither holds the "
    "other\n"
)


def setup(cli: Cli, prefix: Path, links: dict[str, str], **cluster: str) -> None:
    data = inventory_data()
    data["cluster"].update(cluster)  # type: ignore[attr-defined]
    cli.config.write_text(json.dumps(data))
    (prefix / "var/lib/tftpboot/store").mkdir(parents=True)
    for link, target in links.items():
        (prefix / link).parent.mkdir(parents=True, exist_ok=True)
        (prefix / link).symlink_to(target)


@pytest.mark.parametrize(
    ("links", "cluster", "line"),
    [
        ({"var/lib/cc": "tftpboot/store"}, {"state_dir": "/var/lib/cc"},
         "cluster.state_dir: '/var/lib/cc' (leads to '/var/lib/tftpboot/store') overlaps the "
         "TFTP root '/var/lib/tftpboot'"),
        ({"var/lib/cc": "/var/lib/tftpboot/new"}, {"state_dir": "/var/lib/cc"},
         "cluster.state_dir: '/var/lib/cc' (leads to '/var/lib/tftpboot/new') overlaps the "
         "TFTP root '/var/lib/tftpboot'"),
        ({"var/lib/cc": f"../../{IMAGE_ROOT}/var/state"}, {"state_dir": "/var/lib/cc"},
         f"cluster.state_dir: '/var/lib/cc' (leads to '/{IMAGE_ROOT}/var/state') overlaps the "
         "root of image 'default'"),
        ({"srv/tftp": "/var/lib/clustcontrol/tftp"}, {"tftp_root": "/srv/tftp"},
         "cluster.state_dir: '/var/lib/clustcontrol' overlaps the TFTP root '/srv/tftp' "
         "(leads to '/var/lib/clustcontrol/tftp')"),
        ({"etc/cc-clustcontrol": "../var/lib/clustcontrol/ctl"},
         {"control_dir": "/etc/cc-clustcontrol"},
         "cluster.control_dir: '/etc/cc-clustcontrol' (leads to '/var/lib/clustcontrol/ctl') "
         "overlaps cluster.state_dir '/var/lib/clustcontrol'"),
    ],
)  # fmt: skip
def test_a_link_that_makes_places_overlap_is_refused(
    cli: Cli, prefix: Path, links: dict[str, str], cluster: dict[str, str], line: str
) -> None:
    """`validate` passes (the paths as written are apart); commit exits 2 with one line and
    writes nothing."""
    setup(cli, prefix, links, **cluster)
    assert cli("validate").code == 0
    before = snapshot(prefix)
    result = cli("image", "commit", "default", "--root", prefix)
    assert (result.code, result.err) == (
        2,
        f"clustcontrol: error: {line}, symbolic links followed under {prefix}\n{HINT}",
    )
    assert snapshot(prefix) == before


@pytest.mark.parametrize("target", ["/srv/store", "../../srv/store", "/srv/missing/../store"])
def test_a_linked_state_dir_is_followed_inside_the_prefix(
    cli: Cli, prefix: Path, target: str
) -> None:
    """An absolute link is taken from the prefix (it gave 'File exists', exit 1), a dangling
    one too; every command finds the store at the same place."""
    setup(cli, prefix, {"var/lib/cc": target}, state_dir="/var/lib/cc")
    outside = Path("/srv/store/images/default")
    existed = outside.exists()
    result = cli("image", "commit", "default", "--root", prefix)
    assert result.code == 0, result.err
    store = prefix / "srv/store/images/default"
    generation = (store / "roots/current").read_text().strip()
    assert (store / "roots" / generation / "usr/bin/tool").is_file()
    assert outside.exists() == existed  # nothing made outside the prefix
    shown = json.loads(cli("image", "show", "default", "--root", prefix, "--output", "json").out)
    assert shown["generation"] == generation
    status = cli("status", "--root", prefix, "--output", "json")
    assert status.code == 0 and json.loads(status.out)[0]["generation"] == generation
    again = cli("image", "commit", "default", "--root", prefix)
    assert again.code == 0 and "unchanged since generation" in again.out
