"""A real Debian root for the slow test, built once with debootstrap and cached.

The cache lives under $CLUSTCONTROL_CACHE or <repo>/cache (gitignored), keyed on every input of
the build (suite, variant, packages, architecture, mirror), and is reused while it exists. The
mirror is read from this machine's apt sources at run time and never written to a tracked file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
# libcap2-bin and acl: the e2e nodes show their file capabilities and ACLs (getcap, getfacl).
PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "rsync",
    "busybox",
    "e2fsprogs",
    "fdisk",
    "libcap2-bin",
    "acl",
)
REPO = Path(__file__).resolve().parents[2]
STAMP = ".clustcontrol-debootstrap-complete"


def cache_dir() -> Path:
    return Path(os.environ.get("CLUSTCONTROL_CACHE") or REPO / "cache")


def apt_mirror(suite: str = SUITE) -> str | None:
    """The first URI of this machine's apt sources serving `suite` (deb822 or one-line format)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822(stanza)
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
            ):
                return fields["uris"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    return None


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[0].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def cached_root(mirror: str) -> Path:
    """The cached debootstrap root for these inputs; built (about 1-3 minutes) when absent."""
    arch = architecture()
    key = hashlib.sha256(
        "\n".join([SUITE, VARIANT, ",".join(PACKAGES), arch, mirror]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"debootstrap-{SUITE}-{arch}-{key}"
    if (target / STAMP).is_file():
        return target
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--arch={arch}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(building),
            mirror,
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    (building / STAMP).write_text(f"{SUITE} {VARIANT} {','.join(PACKAGES)} {arch}\n")
    building.rename(target)
    return target
