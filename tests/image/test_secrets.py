"""Secrets on the master: `image commit` never puts a secret's file or content under the served
roots (trees, deltas, batches, attribute archive), keeps it in the manifest and in the
generation's secrets archive with its metadata, and a change of a secret alone, or of which
paths are secret, is a generation."""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustcontrol.contract import SECRET_PATTERNS, SECRETS_LIST
from clustcontrol.errors import ClustcontrolError
from clustcontrol.image import secrets as secret
from clustcontrol.image.commit import commit_image, commit_tree, image_status
from clustcontrol.image.common import extraction_order
from clustcontrol.image.generation import GenerationStore, scan
from tests.conftest import Cli, inventory_data, make_inventory
from tests.image.conftest import IMAGE_ROOT


def served_bytes(store: GenerationStore | Path) -> bytes:
    """Every path under the served roots (a store's, or a directory) and every regular file's
    content, concatenated."""
    roots = store.roots if isinstance(store, GenerationStore) else store
    chunks = []
    for dirpath, dirs, names in os.walk(roots):
        for name in (*dirs, *names):
            path = Path(dirpath, name)
            chunks.append(os.fsencode(path.relative_to(roots)))
            if path.is_file() and not path.is_symlink():
                chunks.append(path.read_bytes())
    return b"\n".join(chunks)


def archive_members(store: GenerationStore, generation: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(store.secrets_archive(generation)) as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def add_secrets(root: Path) -> None:
    """The default secrets, with owners, modes, an attribute and a hard link."""
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    (root / "etc/munge").mkdir(parents=True, exist_ok=True)
    (root / "etc/shadow").write_text("root:$6$SHADOW-CONTENT-1:19000:0:99999:7:::\n")
    os.chown(root / "etc/shadow", 0, 42)
    (root / "etc/shadow").chmod(0o640)
    os.link(root / "etc/shadow", root / "etc/shadow-")
    (root / "etc/gshadow").write_text("root:*::GSHADOW-CONTENT\n")
    (root / "etc/gshadow").chmod(0o640)
    (root / "etc/munge/munge.key").write_bytes(b"MUNGE-KEY-CONTENT" * 64)
    os.chown(root / "etc/munge/munge.key", 999, 999)
    (root / "etc/munge/munge.key").chmod(0o400)
    os.setxattr(root / "etc/munge/munge.key", "user.origin", b"the standard")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("HOST-KEY-CONTENT\n")
    (root / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 PUBLIC\n")


CONTENTS = (b"SHADOW-CONTENT", b"GSHADOW-CONTENT", b"MUNGE-KEY-CONTENT", b"HOST-KEY-CONTENT")


def test_commit_serves_no_secret_and_archives_them_exactly(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    add_secrets(root)
    inv = make_inventory()
    result = commit_image(inv, "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    tree = store.tree(result.generation)
    served = served_bytes(store)
    assert not any(content in served for content in CONTENTS)
    for rel in ("etc/shadow", "etc/shadow-", "etc/gshadow", "etc/munge/munge.key"):
        assert not (tree / rel).exists()
    assert (tree / "etc/ssh/ssh_host_ed25519_key.pub").is_file()  # a public key is no secret
    assert (tree / "etc/munge").is_dir()  # the directories stay served
    listed = secret.read_list(tree / SECRETS_LIST)
    assert listed == frozenset(
        {
            "etc/shadow",
            "etc/shadow-",
            "etc/gshadow",
            "etc/munge/munge.key",
            "etc/ssh/ssh_host_ed25519_key",
        }
    )
    assert (result.secrets, result.secrets_archived) == (5, 4)
    # The manifest still has them: a change of one alone is a new generation.
    manifest = store.manifest(result.generation)
    assert manifest["etc/shadow"].gid == 42 and manifest["etc/shadow"].link == "etc/shadow"
    # The archive: 0600 in a 0700 directory, every secret but the host key (no node takes it),
    # with owner, mode, times, hard link and attribute; the directories they are in first.
    assert stat.S_IMODE(store.secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.secrets_archive(result.generation).stat().st_mode) == 0o600
    members = archive_members(store, result.generation)
    assert list(members)[:2] == [".", "etc"]
    assert list(members) == extraction_order(members)  # each directory with what it holds
    assert "etc/ssh/ssh_host_ed25519_key" not in members
    key = members["etc/munge/munge.key"]
    assert (key.uid, key.gid, key.mode) == (999, 999, 0o400)
    assert key.pax_headers.get("SCHILY.xattr.user.origin") == "the standard"
    assert float(key.pax_headers["mtime"]) == pytest.approx(
        (root / "etc/munge/munge.key").stat().st_mtime_ns / 1e9, abs=1e-6
    )
    linked = {members["etc/shadow"].islnk(), members["etc/shadow-"].islnk()}
    assert linked == {True, False}
    assert members["etc"].mode == stat.S_IMODE((root / "etc").stat().st_mode)


def test_stock_debian_password_stores_are_secret(prefix: Path) -> None:
    # pam_pwhistory (and pam_unix remember=) keep old hashes in /etc/security/opasswd; debconf
    # keeps the answers to its password questions, in plain text, in passwords.dat. Both are
    # root:root 0600 on a stock Debian; neither may be served.
    root = prefix / IMAGE_ROOT
    stores = {
        "etc/security/opasswd": b"alice:1000:2:$6$OLD-HASH-ONE,$6$OLD-HASH-TWO\n",
        "var/cache/debconf/passwords.dat": b"Name: mysql/root\nValue: PLAIN-TEXT-PASSWORD\n",
    }
    for rel, content in stores.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
        (root / rel).chmod(0o600)
    result = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    served = served_bytes(store)
    assert b"OLD-HASH" not in served and b"PLAIN-TEXT-PASSWORD" not in served
    listed = secret.read_list(store.tree(result.generation) / SECRETS_LIST)
    assert listed is not None and set(stores) <= listed
    members = archive_members(store, result.generation)
    for rel, content in stores.items():
        assert members[rel].mode == 0o600
        with tarfile.open(store.secrets_archive(result.generation)) as tar:
            extracted = tar.extractfile(f"./{rel}")
            assert extracted is not None and extracted.read() == content


def test_a_change_of_a_secret_alone_is_a_generation_and_not_in_the_delta(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    add_secrets(root)
    inv = make_inventory()
    first = commit_image(inv, "default", prefix)
    assert not commit_image(inv, "default", prefix).created
    (root / "etc/shadow").write_text("root:$6$SHADOW-CONTENT-2:19001:0:99999:7:::\n")
    status = image_status(inv, "default", prefix)
    assert status.uncommitted is not None and "etc/shadow" in status.uncommitted.changed
    second = commit_image(inv, "default", prefix)
    assert second.created and "etc/shadow" in second.difference.changed
    store = GenerationStore.for_image(prefix, "default")
    delta = (
        store.tree(second.generation) / "etc/clustcontrol-deltas" / first.generation
    ).read_text()
    assert "etc/shadow" not in delta.split("# removed")[0]
    assert b"SHADOW-CONTENT-2" not in served_bytes(store)
    members = archive_members(store, second.generation)
    shadow = store.secrets_archive(second.generation)
    with tarfile.open(shadow) as tar:
        member = tar.extractfile(members["etc/shadow"])
        assert member is not None and b"SHADOW-CONTENT-2" in member.read()
    assert image_status(inv, "default", prefix).warning is None


def test_a_new_pattern_makes_a_generation_and_removes_trees_that_served_it(
    prefix: Path,
) -> None:
    root = prefix / IMAGE_ROOT
    (root / "etc/site/private").mkdir(parents=True)
    (root / "etc/site/private/site.key").write_text("SITE-KEY-CONTENT\n")
    (root / "etc/site/private/sub").mkdir()
    (root / "etc/site/private/sub/other.pem").write_text("OTHER-KEY-CONTENT\n")
    first = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert b"SITE-KEY-CONTENT" in served_bytes(store)  # no pattern names it yet
    images = {"default": {"root": "/srv/nfs4/clusternoderoot", "secrets": ["/etc/site/private"]}}
    inv = make_inventory(images=images)
    status = image_status(inv, "default", prefix)
    assert status.warning is not None and "UNCOMMITTED" in status.warning
    assert status.uncommitted is not None
    assert set(status.uncommitted.changed) >= {
        "etc/site/private/site.key",
        "etc/site/private/sub/other.pem",
    }
    second = commit_image(inv, "default", prefix)
    assert second.created and second.generation != first.generation
    assert second.tainted == (first.generation,)  # it served the key
    assert store.trees() == [second.generation]
    served = served_bytes(store)
    assert b"SITE-KEY-CONTENT" not in served and b"OTHER-KEY-CONTENT" not in served
    assert (store.tree(second.generation) / "etc/site/private/sub").is_dir()
    assert not commit_image(inv, "default", prefix).created


def test_hard_link_partner_of_a_secret_is_secret(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    add_secrets(root)
    (root / "var/backups").mkdir(parents=True)
    os.link(root / "etc/gshadow", root / "var/backups/gshadow.bak")
    result = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert b"GSHADOW-CONTENT" not in served_bytes(store)
    assert "var/backups/gshadow.bak" in archive_members(store, result.generation)


# (links to make in the standard: path -> target, the secret patterns of the image, the file
# that holds the key): a secret's link leads to a file or a directory the nodes read as the
# secret, which must be kept out of the served tree as well.
LINKED_SECRETS = {
    "relative": ({"etc/munge/munge.key": "keys/2024.key"}, [], "etc/munge/keys/2024.key"),
    "absolute": (
        {"etc/munge/munge.key": "/etc/munge/keys/2024.key"},
        [],
        "etc/munge/keys/2024.key",
    ),
    "through ..": ({"etc/munge/munge.key": "../../srv/keys/m.key"}, [], "srv/keys/m.key"),
    "a link on the way": ({"etc/munge": "/srv/munge"}, [], "srv/munge/munge.key"),
    "a chain": (
        {"etc/munge/munge.key": "k1", "etc/munge/k1": "/opt/k2"},
        [],
        "opt/k2",
    ),
    "certbot's live directory": (
        {"etc/letsencrypt/live/site/privkey.pem": "../../archive/site/privkey1.pem"},
        ["/etc/letsencrypt/live"],
        "etc/letsencrypt/archive/site/privkey1.pem",
    ),
    "a secret directory that is a link": (
        {"etc/ssl/private": "/srv/ssl-private"},
        ["/etc/ssl/private"],
        "srv/ssl-private/site.key",
    ),
}


@pytest.mark.parametrize("case", LINKED_SECRETS)
def test_what_a_secret_link_leads_to_is_secret(cli: Cli, tmp_path: Path, case: str) -> None:
    # Before: only the link was kept apart; the key it leads to stayed in the served tree.
    links, patterns, key = LINKED_SECRETS[case]
    root = tmp_path / IMAGE_ROOT
    (root / key).parent.mkdir(parents=True)
    (root / key).write_bytes(b"THE-REAL-KEY " + case.encode())
    (root / key).chmod(0o400)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    images = {"default": {"root": f"/{IMAGE_ROOT}", "secrets": patterns}}
    cli.config.write_text(json.dumps(inventory_data(images=images)))
    result = cli("image", "commit", "default", "--root", tmp_path)
    assert result.code == 0, result.err
    store = GenerationStore.for_image(tmp_path, "default")
    generation = store.current()
    assert generation is not None
    assert b"THE-REAL-KEY" not in served_bytes(store)
    assert not (store.tree(generation) / key).exists()
    listed = secret.read_list(store.tree(generation) / SECRETS_LIST)
    assert listed is not None and key in listed
    members = archive_members(store, generation)
    assert members[key].isfile() and members[key].mode == 0o400
    with tarfile.open(store.secrets_archive(generation)) as tar:
        extracted = tar.extractfile(f"./{key}")
        assert extracted is not None and extracted.read().startswith(b"THE-REAL-KEY")
    # status agrees with the commit on which paths are secret: nothing to commit.
    status = cli("status", "--root", tmp_path)
    assert status.code == 0, status.err + status.out


def test_a_secret_link_that_leads_nowhere_in_the_tree_hides_nothing_else(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    (root / "etc/munge").mkdir(parents=True)
    (root / "etc/munge/munge.key").symlink_to("/../../../etc/shadow-of-the-master")
    (root / "etc/munge/loop").symlink_to("loop")
    (root / "etc/munge/munge.key.pub").write_text("public\n")
    result = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert result.secrets == 1  # the link alone
    assert (store.tree(result.generation) / "etc/munge/munge.key.pub").is_file()


def test_an_unlistable_secret_path_is_refused(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    (root / "etc/ssl").mkdir(parents=True)
    (root / "etc/ssl/we[ird].key").write_text("x\n")
    images = {"default": {"root": "/srv/nfs4/clusternoderoot", "secrets": ["/etc/ssl/*.key"]}}
    with pytest.raises(ClustcontrolError, match="wildcard"):
        commit_image(make_inventory(images=images), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert store.current() is None
    assert b"x\n" not in b"".join(
        p.read_bytes() for p in store.roots.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_batches_and_attribute_archive_leave_secrets_out(prefix: Path) -> None:
    root = prefix / IMAGE_ROOT
    add_secrets(root)
    subprocess.run(["setfacl", "-m", "u:1234:r", str(root / "etc/gshadow")], check=True)
    inv = make_inventory()
    first = commit_image(inv, "default", prefix)
    (root / "etc/gshadow").write_text("root:*::GSHADOW-CONTENT-2\n")
    (root / "etc/motd").write_text("changed\n")
    second = commit_image(inv, "default", prefix)
    assert second.batches == (first.generation,)
    store = GenerationStore.for_image(prefix, "default")
    deltas = store.tree(second.generation) / "etc/clustcontrol-deltas"
    listed = (deltas / f"{first.generation}.list").read_text().split("\n")
    assert "etc/motd" in listed and "etc/gshadow" not in listed
    assert "etc/gshadow" not in (deltas / f"{first.generation}.sums").read_text()
    tree = store.tree(second.generation)
    if (tree / "etc/clustcontrol-xattrs.tar").exists():
        with tarfile.open(tree / "etc/clustcontrol-xattrs.tar") as tar:
            assert not any("shadow" in n or "munge" in n for n in tar.getnames())
    assert b"GSHADOW-CONTENT" not in served_bytes(store)


def test_image_show_and_cli_name_the_secrets(cli: Cli, tmp_path: Path) -> None:
    data = inventory_data(
        images={"default": {"root": str(tmp_path / "std"), "secrets": ["/etc/ssl/private/*.key"]}}
    )
    cli.config.write_text(json.dumps(data))
    shown = cli("image", "show", "default", "--output", "json")
    assert shown.code == 0, shown.err
    facts = json.loads(shown.out)
    assert facts["secrets"] == [f"/{p}" for p in SECRET_PATTERNS] + ["/etc/ssl/private/*.key"]
    assert facts["secrets_served"].endswith("/images/default/secrets")


@pytest.mark.parametrize("bad", ["/", "/etc/../shadow", "/etc/sha dow", "/etc/x\n", "etc/x"])
def test_bad_secret_patterns_are_refused(cli: Cli, bad: str) -> None:
    data = inventory_data(images={"default": {"root": "/srv/x", "secrets": [bad]}})
    cli.config.write_text(json.dumps(data))
    result = cli("validate")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "images.default.secrets" in lines[0], result.err


# --- the property: nothing under the served roots holds a secret's path or content ----------
NAMES = st.sampled_from(["a", "b", "key", "key.pem", "shadow", "x.key", "sub", "data"])
PATHS = st.lists(st.lists(NAMES, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12)
PATTERN_PARTS = st.sampled_from(["a", "b", "key", "*.key", "*", "sub", "x*", "shadow"])
PATTERNS = st.lists(
    st.lists(PATTERN_PARTS, min_size=1, max_size=3).map("/".join), min_size=0, max_size=4
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(paths=PATHS, patterns=PATTERNS, links=st.booleans())
def test_no_secret_path_or_content_is_ever_served(
    tmp_path_factory: pytest.TempPathFactory, paths: list[str], patterns: list[str], links: bool
) -> None:
    """For random trees and secret patterns, over two commits (the second changes every file):
    no secret's path exists under the served roots and no secret's content (a unique token)
    appears in any served file; every secret is in the manifest and in the archive."""
    tmp = tmp_path_factory.mktemp("prop")
    root = tmp / "std"
    (root / "etc").mkdir(parents=True)
    # A path that is a directory of another is a directory; the others are files.
    files = sorted({p for p in paths if not any(q.startswith(p + "/") for q in paths)})
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    store = GenerationStore(tmp / "state")
    pats = tuple(patterns)
    for round_ in (1, 2):
        for index, rel in enumerate(files):
            (root / rel).unlink(missing_ok=True)
            (root / rel).write_bytes(f"TOKEN-{round_}-{index}-{rel}-END".encode())
        if links and len(files) > 1 and round_ == 1:
            os.link(root / files[0], root / f"{files[0]}-link")
            files.append(f"{files[0]}-link")
        result = commit_tree(
            "p", root, store, control_dir="/etc/clustcontrol", keep=3, secrets=pats
        )
        manifest = store.manifest(result.generation)
        hidden = secret.secret_paths(manifest, pats)
        served = served_bytes(store)
        tree = store.tree(result.generation)
        for rel in hidden:
            assert not (tree / rel).exists() and not (tree / rel).is_symlink()
            assert rel in manifest
            content = (root / rel).read_bytes()
            assert content not in served, rel
        for rel in set(files) - hidden:
            assert (tree / rel).read_bytes() == (root / rel).read_bytes()
        if hidden:
            members = archive_members(store, result.generation)
            assert hidden <= set(members)
        assert secret.read_list(tree / SECRETS_LIST) == hidden
    assert scan(root)  # the working tree is untouched


def files_reached(root: Path, pattern: str) -> set[Path]:
    """The oracle: the real files a node reads through a secret pattern, found with the file
    system itself (glob and realpath follow the links; the tests' links are relative and stay
    in the tree): each match, or every file below a matched directory, links followed."""
    found: set[Path] = set()
    seen: set[Path] = set()
    todo = [Path(os.path.realpath(m)) for m in glob.glob(glob.escape(str(root)) + "/" + pattern)]
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        if path.is_dir():
            todo += [Path(os.path.realpath(child)) for child in path.iterdir()]
        else:
            found.add(path)
    return found


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    paths=PATHS,
    patterns=PATTERNS,
    links=st.lists(st.tuples(st.integers(0, 20), NAMES, st.integers(0, 30)), max_size=6),
)
def test_no_file_a_secret_pattern_reaches_through_links_is_served(
    tmp_path_factory: pytest.TempPathFactory,
    paths: list[str],
    patterns: list[str],
    links: list[tuple[int, str, int]],
) -> None:
    """Random trees with random relative symbolic links (to files, to directories, dangling,
    in loops): no file a pattern reaches with the links followed (files_reached) has its
    content under the served roots; each is in the archive."""
    tmp = tmp_path_factory.mktemp("links")
    root = tmp / "std"
    (root / "etc").mkdir(parents=True)
    files = sorted({p for p in paths if not any(q.startswith(p + "/") for q in paths)})
    for index, rel in enumerate(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(f"TOKEN-{index}-{rel}-END".encode())
    dirs = sorted({str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()} | {"."})
    targets = [*files, *dirs, "missing"]
    for where, name, to in links:  # names the patterns match, where no entry is yet
        link = root / dirs[where % len(dirs)] / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(os.path.relpath(root / targets[to % len(targets)], link.parent))
    store = GenerationStore(tmp / "state")
    result = commit_tree(
        "p", root, store, control_dir="/etc/clustcontrol", keep=3, secrets=tuple(patterns)
    )
    served = served_bytes(store)
    members = set(archive_members(store, result.generation)) if result.secrets else set()
    for pattern in patterns:
        for path in files_reached(root, pattern):
            assert path.read_bytes() not in served, (pattern, path)
            assert str(path.relative_to(root)) in members


def test_a_standard_without_secrets(prefix: Path) -> None:
    """A standard without secrets: no archive, an empty list; nothing else changes."""
    result = commit_image(make_inventory(), "default", prefix)
    store = GenerationStore.for_image(prefix, "default")
    assert not store.secrets_archive(result.generation).exists()
    assert secret.read_list(store.tree(result.generation) / SECRETS_LIST) == frozenset()
    assert result.secrets == 0
