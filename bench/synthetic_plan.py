"""The plan of a synthetic standard root: every name, size, link and time, from (preset, seed).

Everything is drawn from one seeded `random.Random`: the directory tree (merged /usr, deep
usr/lib/python3 and usr/lib/modules trees, wide usr/share/man and usr/bin), the file sizes (a
log-normal bulk per region: many small files under usr/share, a long tail of MB-sized files in
usr/lib, plus a few large files such as the initrd), hard links (1% of the names), symlinks
(~6%: .so chains, alternatives, merged-/usr top-level links), empty mount-point directories.
No device files, no paths the node-side filter excludes (machine-id, hostname, fstab, SSH host
keys, etc/clustcontrol). Nothing is written here: `bench.synthetic` writes a plan to disk.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field

GEN_VERSION = 3  # 3: write_extras (attributes, sparse files)
MIB = 1024 * 1024
GIB = 1024 * MIB
POOL_SIZE = 8 * MIB
BASE_MTIME = 1_700_000_000  # 2023-11-14: every mtime is BASE + a seeded offset


@dataclass(frozen=True)
class Preset:
    """The size of a synthetic standard.

    name: the preset's name (part of the cache key and of the seeded generator's seed).
    files: regular-file names, hard links included; symlinks come on top (~6%).
    total_bytes: the regular files' sizes summed in bytes, each inode counted once.
    """

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
    """What the generator writes, in order (paths relative to the root).

    dirs: every directory, parents first. files: (path, size in bytes, offset in bytes into the
    random pool, mode, mtime in seconds since the epoch). hardlinks: (new name, existing file).
    symlinks: (path, target).
    """

    dirs: list[str] = field(default_factory=list)
    # (path, size, pool offset, mode, mtime)
    files: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    hardlinks: list[tuple[str, str]] = field(default_factory=list)  # (new name, existing file)
    symlinks: list[tuple[str, str]] = field(default_factory=list)  # (path, target)


class Namer:
    """Pseudo-package names from the seeded generator, unique within one directory."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, lo: int = 2, hi: int = 4) -> str:
        """A pronounceable word of lo to hi syllables (not necessarily unique)."""
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(lo, hi)))

    def unique(self, directory: str, stem: str) -> str:
        """stem, or stem-2, stem-3, ...: the first name not yet used in directory (recorded as
        used now)."""
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
    """Everything the tree of preset holds, from the seed alone (the same plan every time).

    The regular files' sizes sum to about preset.total_bytes (bytes); there are preset.files
    regular-file names (1% of them hard links) and ~6% more names as symlinks.
    """
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
