"""A reproducible synthetic standard root, shaped like a Debian root file system.

Everything is drawn from one seeded `random.Random`: the directory tree (merged /usr, deep
usr/lib/python3 and usr/lib/modules trees, wide usr/share/man and usr/bin), the file sizes (a
log-normal bulk per region: many small files under usr/share, a long tail of MB-sized files in
usr/lib, plus a few large files such as the initrd), hard links (1% of the names), symlinks
(~6%: .so chains, alternatives, merged-/usr top-level links), empty mount-point directories.
No device files, no paths the node-side filter excludes (machine-id, hostname, fstab, SSH host
keys, etc/clustcontrol), so a faithful copy is byte-for-byte comparable with the source.

File contents are slices of one random pool written with os.write (no per-byte randomness), so
2 GB are written in seconds. Generated trees are cached under cache/bench/ keyed on
(seed, preset, generator version); `ensure_tree` builds a tree once and reuses it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clustcontrol.contract import DELTAS_DIR, GENERATION_FILE

GEN_VERSION = 2
MIB = 1024 * 1024
GIB = 1024 * MIB
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "cache" / "bench"
POOL_SIZE = 8 * MIB
CHANGES_VERSION = 3  # of the changed standard (incompressible change bytes, the master's delta)
BASE_MTIME = 1_700_000_000  # 2023-11-14: every mtime is BASE + a seeded offset
EDIT_MTIME_SHIFT = 86_400  # an edited file's mtime moves one day forward
# `clustcontrol image commit` writes SEQ-HASH here; nodes holding it skip the transfer.


def generation_id(seed: int, preset: str, sequence: int) -> str:
    digest = hashlib.sha256(f"{seed}:{preset}:{sequence}:{GEN_VERSION}".encode()).hexdigest()
    return f"{sequence}-{digest[:12]}"


@dataclass(frozen=True)
class Preset:
    name: str
    files: int  # regular-file names (hard links included); symlinks come on top (~6%)
    total_bytes: int  # sum of the regular files' sizes (each inode counted once)


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", 20_000, 200 * MIB),
    "full": Preset("full", 100_000, 2 * GIB),
    "storm-quick": Preset("storm-quick", 2_000, 16 * MIB),
    "storm-full": Preset("storm-full", 4_000, 32 * MIB),
    "tiny": Preset("tiny", 400, 4 * MIB),
}


# Regions of a Debian root: (name, share of the file names, median size in bytes, files per
# directory, executable). Sizes are log-normal around the median (sigma 1.4).
REGIONS: tuple[tuple[str, float, int, int, bool], ...] = (
    ("doc", 0.14, 1_500, 3, False),
    ("man", 0.08, 2_500, 150, False),
    ("locale", 0.08, 9_000, 12, False),
    ("share", 0.16, 3_000, 20, False),
    ("python", 0.15, 5_000, 8, False),
    ("modules", 0.10, 25_000, 10, False),
    ("libs", 0.08, 90_000, 60, False),
    ("bin", 0.04, 60_000, 400, True),
    ("include", 0.07, 6_000, 15, False),
    ("etc", 0.03, 800, 5, False),
    ("dpkg", 0.05, 1_500, 2_000, False),
)
SIGMA = 1.4
BULK_CAP = 8 * MIB
BULK_SHARE = 0.65  # the bulk gets 65% of the bytes, the few large files the rest
LARGE_PLACES = (
    "boot/vmlinuz-6.1.0-18-amd64",
    "boot/initrd.img-6.1.0-18-amd64",
    "usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
    "usr/lib/locale/locale-archive",
    "usr/lib/firmware/iwlwifi-ty-a0-gf-a0-77.ucode",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "usr/lib/jvm/java-17-openjdk-amd64/lib/modules",
    "usr/lib/x86_64-linux-gnu/libicudata.so.72.1",
    "usr/lib/gcc/x86_64-linux-gnu/12/cc1",
    "usr/lib/gcc/x86_64-linux-gnu/12/cc1plus",
    "usr/share/qt5/translations/qtwebengine_locales.pak",
    "usr/lib/x86_64-linux-gnu/dri/radeonsi_dri.so",
    "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
)
EMPTY_DIRS = ("proc", "sys", "dev", "run", "tmp", "mnt", "media", "home", "root", "srv", "opt")
SYLLABLES = [c + v for c in "bcdfgklmnprstvz" for v in "aeiou"] + ["an", "el", "in", "or", "us"]
LANGS = ("ar", "ca", "cs", "de", "es", "fi", "fr", "it", "ja", "nl", "pl", "pt_BR", "ru", "sv")


@dataclass
class Plan:
    """What the generator writes, in order."""

    dirs: list[str] = field(default_factory=list)
    # (path, size, pool offset, mode, mtime)
    files: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    hardlinks: list[tuple[str, str]] = field(default_factory=list)  # (new name, existing file)
    symlinks: list[tuple[str, str]] = field(default_factory=list)  # (path, target)


@dataclass(frozen=True)
class Tree:
    """A generated tree and its manifest (paths relative to root)."""

    root: Path
    preset: Preset
    seed: int
    manifest: dict[str, list[list[Any]]]

    @property
    def single_files(self) -> list[tuple[str, int]]:
        """Regular files with one name (candidates for edits and deletions)."""
        return [(str(e[0]), int(e[1])) for e in self.manifest["single"]]

    @property
    def total_bytes(self) -> int:
        """Bytes of the regular files, each inode once."""
        return sum(int(e[1]) for e in self.manifest["single"] + self.manifest["linked"])

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.manifest.items()}


class Namer:
    """Pseudo-package names from the seeded generator, unique within one directory."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, lo: int = 2, hi: int = 4) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(lo, hi)))

    def unique(self, directory: str, stem: str) -> str:
        name = stem
        n = 1
        while f"{directory}/{name}" in self.used:
            n += 1
            name = f"{stem}-{n}"
        self.used.add(f"{directory}/{name}")
        return name


def _region_dir(region: str, nm: Namer) -> str:
    r = nm.rng
    if region == "doc":
        return f"usr/share/doc/{nm.word()}"
    if region == "man":
        if r.random() < 0.2:
            return f"usr/share/man/{r.choice(LANGS)}/man{r.choice('158')}"
        return f"usr/share/man/man{r.choice('1113578')}"
    if region == "locale":
        return f"usr/share/locale/{r.choice(LANGS)}/LC_MESSAGES"
    if region == "share":
        kind = r.randrange(5)
        if kind == 0:
            return f"usr/share/zoneinfo/{nm.word(2, 3).capitalize()}"
        if kind == 1:
            return f"usr/share/perl/5.36/{nm.word().capitalize()}/{nm.word().capitalize()}"
        if kind == 2:
            size = r.choice(("16x16", "22x22", "32x32", "48x48", "scalable"))
            return f"usr/share/icons/hicolor/{size}/{r.choice(('apps', 'actions', 'mimetypes'))}"
        if kind == 3:
            return f"usr/share/{nm.word()}/{nm.word()}"
        return f"usr/share/i18n/{r.choice(('locales', 'charmaps'))}"
    if region == "python":
        depth = r.randint(0, 3)
        parts = [nm.word() for _ in range(depth)]
        return "/".join(["usr/lib/python3/dist-packages", nm.word(), *parts])
    if region == "modules":
        top = r.choice(("drivers", "drivers", "drivers", "fs", "net", "sound", "crypto", "lib"))
        parts = [nm.word(2, 3) for _ in range(r.randint(1, 3))]
        return "/".join(["usr/lib/modules/6.1.0-18-amd64/kernel", top, *parts])
    if region == "libs":
        if r.random() < 0.6:
            return "usr/lib/x86_64-linux-gnu"
        return f"usr/lib/x86_64-linux-gnu/{nm.word()}"
    if region == "bin":
        return r.choice(("usr/bin", "usr/bin", "usr/bin", "usr/sbin", "usr/libexec/" + nm.word()))
    if region == "include":
        return "/".join(["usr/include", nm.word(), *[nm.word() for _ in range(r.randint(0, 2))]])
    if region == "etc":
        return "/".join(["etc", nm.word(), *[nm.word() for _ in range(r.randint(0, 1))]])
    return "var/lib/dpkg/info"


def _file_name(region: str, nm: Namer) -> str:
    r = nm.rng
    w = nm.word()
    if region == "doc":
        return r.choice(
            ("copyright", "changelog.Debian.gz", "changelog.gz", "README", "NEWS.gz", w)
        )
    if region == "man":
        return f"{w}.{r.randint(1, 8)}.gz"
    if region == "locale":
        return f"{w}.mo"
    if region == "python":
        return f"{w}.py" if r.random() < 0.85 else f"{w}.cpython-311-x86_64-linux-gnu.so"
    if region == "modules":
        return f"{w}.ko"
    if region == "libs":
        return f"lib{w}.so.{r.randint(0, 9)}.{r.randint(0, 40)}.{r.randint(0, 9)}"
    if region == "include":
        return f"{w}.h"
    if region == "etc":
        return r.choice((f"{w}.conf", w, f"{w}.d.conf"))
    if region == "dpkg":
        return f"{w}.{r.choice(('list', 'md5sums', 'postinst', 'conffiles', 'triggers'))}"
    return w


def _bulk_size(r: random.Random, median: int) -> int:
    if r.random() < 0.01:
        return 0
    return min(BULK_CAP, max(1, int(r.lognormvariate(math.log(median), SIGMA))))


def plan_tree(preset: Preset, seed: int) -> Plan:
    """Everything the tree holds, from the seed alone."""
    r = random.Random(f"{seed}:{preset.name}:{GEN_VERSION}")
    nm = Namer(r)
    plan = Plan()
    dirs: set[str] = {"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc/alternatives", "boot"}
    dirs.update(EMPTY_DIRS)
    dirs.update(("var/tmp", "var/log", "var/cache", "var/lib"))
    n_links = preset.files // 100
    n_regular = preset.files - n_links
    n_large = min(len(LARGE_PLACES), max(3, preset.files // 4000))
    n_bulk = n_regular - n_large
    weight = sum(w for _n, w, _m, _p, _x in REGIONS)
    raw: list[tuple[str, str, int, bool]] = []  # (region, path, size, executable)
    for name, share, median, per_dir, executable in REGIONS:
        count = round(n_bulk * share / weight)
        n_dirs = max(1, count // per_dir)
        region_dirs = [_region_dir(name, nm) for _ in range(n_dirs)]
        for i in range(count):
            d = region_dirs[i % n_dirs] if i < n_dirs else r.choice(region_dirs)
            fname = nm.unique(d, _file_name(name, nm))
            raw.append((name, f"{d}/{fname}", _bulk_size(r, median), executable))
    raw = raw[:n_bulk]
    while len(raw) < n_bulk:  # rounding: top up with docs
        d = _region_dir("doc", nm)
        raw.append(("doc", f"{d}/{nm.unique(d, nm.word())}", _bulk_size(r, 1500), False))
    # Scale the bulk to its share of the bytes, keeping the shape of the distribution.
    bulk_sum = sum(s for _r, _p, s, _x in raw) or 1
    k = preset.total_bytes * BULK_SHARE / bulk_sum
    sizes = [min(BULK_CAP, int(s * k)) for _r, _p, s, _x in raw]
    large_budget = max(0, preset.total_bytes - sum(sizes))
    weights = [r.paretovariate(1.2) for _ in range(n_large)]
    large = [int(large_budget * w / sum(weights)) for w in weights]
    entries: list[tuple[str, int, int]] = []  # (path, size, mode)
    for (_region, path, _s, executable), size in zip(raw, sizes, strict=True):
        entries.append((path, size, 0o755 if executable else 0o644))
    for place, size in zip(LARGE_PLACES[:n_large], large, strict=False):
        entries.append((place, size, 0o644))
        nm.used.add(place)
    r.shuffle(entries)  # the write order is not grouped by region
    for path, size, mode in entries:
        dirs.add(path.rsplit("/", 1)[0])
        offset = r.randrange(POOL_SIZE)
        mtime = BASE_MTIME - r.randrange(3 * 365 * 86_400)
        plan.files.append((path, size, offset, mode, mtime))
    # Hard links: extra names of existing small/medium files, mostly in bin and libs.
    regular = [f[0] for f in plan.files if f[1] < BULK_CAP]
    binlike = [p for p in regular if p.startswith(("usr/bin/", "usr/sbin/", "usr/lib/x86"))]
    for _ in range(n_links):
        src = r.choice(binlike if binlike and r.random() < 0.7 else regular)
        d = src.rsplit("/", 1)[0]
        plan.hardlinks.append((f"{d}/{nm.unique(d, nm.word() + '-hl')}", src))
    # Symlinks (~6% of the names): .so chains, alternatives, relative and absolute links.
    plan.symlinks += [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")]
    plan.symlinks.append(("lib64", "usr/lib64"))
    plan.symlinks.append(("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld.so"))
    n_sym = preset.files * 6 // 100
    libs = [f[0] for f in plan.files if ".so." in f[0]]
    bins = [f[0] for f in plan.files if f[0].startswith("usr/bin/")]
    while len(plan.symlinks) < n_sym:
        kind = r.random()
        if kind < 0.5 and libs:
            target = r.choice(libs)
            d, base = target.rsplit("/", 1)
            link = base.split(".so.")[0] + f".so.{r.randint(0, 99)}"
            plan.symlinks.append((f"{d}/{nm.unique(d, link)}", base))
        elif kind < 0.75 and bins:
            target = r.choice(bins)
            alt = nm.unique("etc/alternatives", nm.word())
            plan.symlinks.append((f"etc/alternatives/{alt}", f"/{target}"))
            plan.symlinks.append(
                (f"usr/bin/{nm.unique('usr/bin', alt)}", f"/etc/alternatives/{alt}")
            )
        else:
            target = r.choice(regular)
            d = target.rsplit("/", 1)[0]
            rel = os.path.relpath(target, d)
            plan.symlinks.append((f"{d}/{nm.unique(d, nm.word() + '-ln')}", rel))
    for path, _t in plan.symlinks:
        if "/" in path:
            dirs.add(path.rsplit("/", 1)[0])
    every: set[str] = set()
    for d in dirs:
        parts = d.split("/")
        every.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    plan.dirs = sorted(every)

    # A random name may equal a directory's: such entries get a suffix.
    def fix(p: str) -> str:
        return p + "-f" if p in every else p

    plan.files = [(fix(p), s, o, m, t) for p, s, o, m, t in plan.files]
    plan.hardlinks = [(fix(n), fix(e)) for n, e in plan.hardlinks]
    plan.symlinks = [(fix(p), t) if "/" in p else (p, t) for p, t in plan.symlinks]
    return plan


def random_pool(seed: int | str, size: int = POOL_SIZE) -> bytes:
    return random.Random(f"pool:{seed}").randbytes(size)


def write_span(fd: int, pool: memoryview, offset: int, size: int) -> None:
    """Write size bytes of the pool starting at offset (wrapping around)."""
    n = len(pool)
    while size > 0:
        chunk = min(size, n - offset, 4 * MIB)
        done = os.write(fd, pool[offset : offset + chunk])
        size -= done
        offset = (offset + done) % n


def write_plan(plan: Plan, root: Path, seed: int) -> None:
    pool = memoryview(random_pool(seed))
    root.mkdir(parents=True)
    for d in plan.dirs:
        (root / d).mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for path, size, offset, mode, mtime in plan.files:
        fd = os.open(root / path, flags, mode)
        try:
            write_span(fd, pool, offset, size)
            os.fchmod(fd, mode)  # the umask does not apply
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
    for new, existing in plan.hardlinks:
        os.link(root / existing, root / new)
    for path, target in plan.symlinks:
        os.symlink(target, root / path)
        os.utime(root / path, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    for d in reversed(plan.dirs):  # deepest first: a directory's time is set after its entries
        os.utime(root / d, (BASE_MTIME, BASE_MTIME))
    os.utime(root, (BASE_MTIME, BASE_MTIME))


def write_generation(root: Path, generation: str, mtime: int = BASE_MTIME) -> None:
    path = root / GENERATION_FILE
    path.write_text(generation + "\n")
    os.utime(path, (mtime, mtime))


def scan_manifest(root: Path) -> dict[str, list[list[Any]]]:
    """single: [path, size] of regular files with one name; linked: [path, size, nlink];
    symlinks: [path, target]; dirs: [path]."""
    single: list[list[Any]] = []
    linked: list[list[Any]] = []
    symlinks: list[list[Any]] = []
    dirs: list[list[Any]] = []
    seen: set[int] = set()
    for rel, st in walk(root):
        if stat.S_ISDIR(st.st_mode):
            dirs.append([rel])
        elif stat.S_ISLNK(st.st_mode):
            symlinks.append([rel, os.readlink(root / rel)])
        elif st.st_nlink == 1:
            single.append([rel, st.st_size])
        elif st.st_ino not in seen:  # one entry per inode: sizes count once
            seen.add(st.st_ino)
            linked.append([rel, st.st_size, st.st_nlink])
    return {"single": single, "linked": linked, "symlinks": symlinks, "dirs": dirs}


def walk(root: Path, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry below root, sorted, without following links."""
    with os.scandir(root / prefix if prefix else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        rel = f"{prefix}{e.name}"
        st = e.stat(follow_symlinks=False)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, rel + "/")


def cache_dir() -> Path:
    return Path(os.environ.get("CC_BENCH_CACHE", str(CACHE)))


def tree_key(preset: Preset, seed: int) -> str:
    return f"std-{preset.name}-{preset.files}f-{preset.total_bytes}b-s{seed}-v{GEN_VERSION}"


def ensure_tree(preset: Preset, seed: int, cache: Path | None = None) -> Tree:
    """The generated tree for (seed, preset): from the cache, else generated into it."""
    cache = cache or cache_dir()
    key = tree_key(preset, seed)
    root = cache / key
    stamp = cache / f"{key}.json"
    if root.is_dir() and stamp.is_file():
        return Tree(root, preset, seed, json.loads(stamp.read_text()))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.tmp"
    for stale in (tmp, root):
        if stale.exists():
            shutil.rmtree(stale)
    write_plan(plan_tree(preset, seed), tmp, seed)
    write_generation(tmp, generation_id(seed, preset.name, 1))  # a committed standard
    os.utime(tmp / "etc", (BASE_MTIME, BASE_MTIME))
    tmp.rename(root)
    manifest = scan_manifest(root)
    stamp.write_text(json.dumps(manifest))
    return Tree(root, preset, seed, manifest)


# ---------------------------------------------------------------------------------------------
# The incremental change set: 1% of the files edited, added or deleted
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangeSet:
    edited: list[tuple[str, list[tuple[int, int]]]]  # path, merged (offset, length) ranges
    added: list[tuple[str, int]]
    deleted: list[str]

    @property
    def changed_bytes(self) -> int:
        """Bytes the node must get: added files + changed ranges (deletions are free)."""
        return sum(s for _p, s in self.added) + sum(
            n for _p, ranges in self.edited for _o, n in ranges
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "edited_files": len(self.edited),
            "added_files": len(self.added),
            "deleted_files": len(self.deleted),
            "added_bytes": sum(s for _p, s in self.added),
            "edited_bytes": self.changed_bytes - sum(s for _p, s in self.added),
            "changed_bytes": self.changed_bytes,
        }


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            last_off, last_n = out[-1]
            out[-1] = (last_off, max(last_off + last_n, off + n) - last_off)
        else:
            out.append((off, n))
    return out


def plan_changes(tree: Tree, fraction: float = 0.01) -> ChangeSet:
    """Deterministic from the tree's seed: half edits (mostly small ranges inside large files),
    a quarter added files, a quarter deleted files."""
    r = random.Random(f"changes:{tree.seed}:{tree.preset.name}:{GEN_VERSION}")
    files = sorted(f for f in tree.single_files if f[0] != GENERATION_FILE)
    n = max(4, round(len(files) * fraction))
    n_edit, n_add = n // 2, n // 4
    n_del = n - n_edit - n_add
    big = [f for f in files if f[1] >= 256 * 1024]
    small = [f for f in files if 0 < f[1] < 256 * 1024]
    picked: set[str] = set()
    edited: list[tuple[str, list[tuple[int, int]]]] = []
    while len(edited) < n_edit:
        path, size = r.choice(big if big and r.random() < 0.6 else small)
        if path in picked:
            continue
        picked.add(path)
        ranges = []
        for _ in range(r.randint(1, 4)):
            length = min(size, r.randint(16, 4096))
            ranges.append((r.randrange(size - length + 1), length))
        edited.append((path, _merge(ranges)))
    deleted: list[str] = []
    while len(deleted) < n_del:
        path, _size = r.choice(files)
        if path not in picked:
            picked.add(path)
            deleted.append(path)
    dirs = sorted({p.rsplit("/", 1)[0] for p, _s in files})
    added: list[tuple[str, int]] = []
    for i in range(n_add):
        d = r.choice(dirs)
        size = min(BULK_CAP, int(r.lognormvariate(math.log(6_000), SIGMA)))
        added.append((f"{d}/bench-added-{i:05d}", size))
    # The changed standard is committed again: a new generation the node must fetch.
    size = len(generation_id(tree.seed, tree.preset.name, 2)) + 1
    edited.append((GENERATION_FILE, [(0, size)]))
    return ChangeSet(sorted(edited), sorted(added), sorted(deleted))


def apply_changes(root: Path, changes: ChangeSet, seed: int, generation: str) -> None:
    """The change set's bytes are fresh random bytes, not slices of a pool: compression (the
    rsync daemon's -z) must find nothing to gain in them, as in real changed binaries."""
    r = random.Random(f"apply:{seed}")
    for path, ranges in changes.edited:
        if path == GENERATION_FILE:
            write_generation(root, generation, BASE_MTIME + EDIT_MTIME_SHIFT)
            continue
        p = root / path
        st = p.stat()
        fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC)
        try:
            for off, n in ranges:
                os.lseek(fd, off, os.SEEK_SET)
                os.write(fd, r.randbytes(n))
        finally:
            os.close(fd)
        shifted = int(st.st_mtime) + EDIT_MTIME_SHIFT
        os.utime(p, (shifted, shifted))
    for path, size in changes.added:
        fd = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, r.randbytes(size))
            os.utime(fd, (BASE_MTIME, BASE_MTIME))
        finally:
            os.close(fd)
    for path in changes.deleted:
        (root / path).unlink()


def publish_delta(old: Path, new: Path, store_dir: Path) -> None:
    """What `clustcontrol image commit` publishes in the standard `new` for nodes at the
    generation of `old`: new/etc/clustcontrol-deltas/OLD_GENERATION, by the master's own code
    (both trees scanned and hashed, the old manifest recorded in a generation store)."""
    from clustcontrol.image.deltas import write_deltas
    from clustcontrol.image.generation import GenerationStore, InodeGroups, scan

    store = GenerationStore(store_dir)
    store.record(read_generation(old), scan(old))
    links: InodeGroups = {}
    manifest = scan(new, links=links)
    target = read_generation(new)
    store.record(target, manifest)
    deltas = write_deltas(store, new / DELTAS_DIR, target, manifest, links)
    if not deltas or deltas[0].skipped:
        raise RuntimeError(f"no delta from {old} to {new}: {deltas}")


def read_generation(root: Path) -> str:
    return (root / GENERATION_FILE).read_text().strip()


def ensure_changed_tree(tree: Tree, cache: Path | None = None) -> tuple[Path, ChangeSet]:
    """A copy of tree with the 1% change set applied and committed: the next generation, with
    the master's delta from the tree's (cached next to the tree)."""
    cache = cache or cache_dir()
    changes = plan_changes(tree)
    key = tree_key(tree.preset, tree.seed) + f"-changed-v{CHANGES_VERSION}"
    root = cache / key
    stamp = cache / f"{key}.json"
    if root.is_dir() and stamp.is_file():
        return root, changes
    tmp = cache / f"{key}.tmp"
    for stale in (tmp, root):
        if stale.exists():
            shutil.rmtree(stale)
    subprocess.run(["cp", "-a", f"{tree.root}/.", f"{tmp}/"], check=True)
    apply_changes(tmp, changes, tree.seed, generation_id(tree.seed, tree.preset.name, 2))
    store = cache / f"{key}.store"
    if store.exists():
        shutil.rmtree(store)
    publish_delta(tree.root, tmp, store)
    shutil.rmtree(store)
    tmp.rename(root)
    stamp.write_text(json.dumps(changes.as_dict()))
    return root, changes


# ---------------------------------------------------------------------------------------------
# Faithful copies
# ---------------------------------------------------------------------------------------------
def signature(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, tuple[object, ...]]:
    """Per path: type, mode, size, mtime (files), nlink, symlink target, and the hard-link group
    (the first path of the inode), for comparing a copy with its source."""
    sig: dict[str, tuple[object, ...]] = {}
    first_of_inode: dict[int, str] = {}
    for rel, st in walk(root):
        if any(rel == i or rel.startswith(i + "/") for i in ignore):
            continue
        if stat.S_ISLNK(st.st_mode):
            sig[rel] = ("l", os.readlink(root / rel))
        elif stat.S_ISDIR(st.st_mode):
            sig[rel] = ("d", stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            group = first_of_inode.setdefault(st.st_ino, rel)
            sig[rel] = (
                "f",
                stat.S_IMODE(st.st_mode),
                st.st_size,
                int(st.st_mtime),
                st.st_nlink,
                group,
            )
        else:
            sig[rel] = ("?", st.st_mode)
    return sig


def compare_trees(source: Path, copy: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Differences between source and copy (empty: a faithful copy). `ignore` lists relative
    paths (and everything below them) compared on neither side, such as the engine's state on
    the copy or the master's deltas in the source."""
    a = signature(source, ignore)
    b = signature(copy, ignore)
    problems = [f"missing on the copy: {p}" for p in sorted(a.keys() - b.keys())]
    problems += [f"extra on the copy: {p}" for p in sorted(b.keys() - a.keys())]
    problems += [
        f"differs: {p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]
    ]
    return problems
