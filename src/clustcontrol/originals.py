"""The files apply took over from the distribution, kept so that apply can put them back.

Debian's packages ship their own /etc/kea/kea-dhcp4.conf, /etc/dhcp/dhcpd.conf,
/etc/default/isc-dhcp-server, /etc/ganesha/ganesha.conf ... (dpkg conffiles). The first apply
that replaces such a file (one not in its manifest) keeps it here first; when the file is no
longer rendered (dhcp_server switched from kea to isc), apply writes it back instead of
removing it, so dpkg and the administrator find the distribution's file as it was.

One saved original is two files in the store directory (0700, beside apply's manifest), named
by the SHA-256 of the target path (KEY, 64 hex digits):

    KEY        the original bytes (0600)
    KEY.json   {"path", "mode" (octal string), "uid", "gid", "sha256" of the bytes} (0600)

The JSON file is written last and removed first: an original is saved exactly when its JSON
file exists, and then its bytes are whole (their digest is checked on every load). A KEY file
without its JSON is left over from an interrupted save or drop and is removed by prune. Names of
any other shape are never touched.

Every file goes through rootdir.RootDir: inside the apply root, no symbolic link followed at a
target path, atomic replacement."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass

from clustcontrol.errors import ClustcontrolError
from clustcontrol.rootdir import RootDir, is_target_path

FILE_MODE = 0o600
#: Mode bits no configuration file has: a saved original recording one is refused (it would
#: make apply write a set-user-ID or world-writable file as root).
REFUSED_BITS = stat.S_ISUID | stat.S_IWOTH
_KEY = re.compile(r"[0-9a-f]{64}")

CORRUPT_HINT = (
    "the saved original is damaged or was written by someone else: remove KEY and KEY.json "
    "from the store (apply then treats the file as one it created and removes it when it is no "
    "longer rendered), or put the distribution's file back by hand (apt-get install "
    "--reinstall -o Dpkg::Options::=--force-confmiss PACKAGE)"
)


@dataclass(frozen=True)
class Original:
    """A file as it was before apply first replaced it: its target path, bytes, permission
    bits (st_mode & 0o7777), owner and group ids."""

    path: str
    data: bytes
    mode: int
    uid: int
    gid: int

    def matches(self, data: bytes | None, st: os.stat_result | None) -> bool:
        """Whether the live file (its bytes, its lstat result; None: missing) is this original
        with its mode and owner."""
        return (
            data == self.data
            and st is not None
            and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (self.mode, self.uid, self.gid)
        )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def key(path: str) -> str:
    """The store name of the original of target path `path`: SHA-256 of it, in hex."""
    return hashlib.sha256(path.encode()).hexdigest()


class OriginalStore:
    """The saved originals in `directory` (a target path, e.g. /var/lib/clustcontrol/originals)
    of `tree`; see the module docstring for the layout and its order of writes."""

    def __init__(self, tree: RootDir, directory: str) -> None:
        self.tree = tree
        self.directory = directory

    def _file(self, name: str) -> str:
        return posixpath.join(self.directory, name)

    def names(self) -> list[str]:
        """Every name in the store directory, sorted ([] when it is missing)."""
        return self.tree.listdir(self.directory) or []

    def load(self) -> dict[str, Original]:
        """Every saved original, by target path.

        Raises ClustcontrolError naming the file when a JSON file is not of the expected shape,
        names another path than its KEY says, or its bytes are missing or do not match its
        digest, records a set-user-ID or world-writable mode, or when the store or one of
        its files belongs to another user than the one running apply; UnsafePathError when a
        store file is a symbolic link or not a regular file."""
        found: dict[str, Original] = {}
        self._check_owner(self.directory)
        for name in self.names():
            stem = name.removesuffix(".json")
            if stem != name and _KEY.fullmatch(stem):
                original = self._load(stem)
                found[original.path] = original
        return found

    def _check_owner(self, path: str) -> None:
        """Raise ClustcontrolError when what target path `path` names belongs to another user
        than the one running apply: its bytes would become a file of the master's."""
        st = self.tree.stat(path)
        if st is not None and st.st_uid != os.geteuid():
            raise ClustcontrolError(
                f"{self.tree.display(path)} belongs to uid {st.st_uid}, not to the user running "
                f"apply (uid {os.geteuid()}): apply writes what the store holds into the "
                "master's files",
                hint=CORRUPT_HINT,
            )

    def _load(self, stem: str) -> Original:
        where = self.tree.display(self._file(f"{stem}.json"))
        self._check_owner(self._file(f"{stem}.json"))
        self._check_owner(self._file(stem))
        try:
            meta = json.loads(self.tree.read(self._file(f"{stem}.json")) or b"")
            path, mode, uid, gid, digest = (
                meta[field] for field in ("path", "mode", "uid", "gid", "sha256")
            )
            if not (
                isinstance(path, str)
                and is_target_path(path)
                and isinstance(mode, str)
                and re.fullmatch(r"[0-7]{4}", mode)
                and _is_id(uid)
                and _is_id(gid)
                and isinstance(digest, str)
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ClustcontrolError(f"{where} is corrupt", hint=CORRUPT_HINT) from None
        if int(mode, 8) & REFUSED_BITS:
            raise ClustcontrolError(
                f"{where}: mode {mode} (set-user-ID or world-writable) is no configuration file's",
                hint=CORRUPT_HINT,
            )
        if key(path) != stem:
            raise ClustcontrolError(
                f"{where}: names {path!r}, which is not the path its name stands for",
                hint=CORRUPT_HINT,
            )
        data = self.tree.read(self._file(stem))
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            state = "missing" if data is None else "not the bytes it recorded"
            raise ClustcontrolError(
                f"{where}: the original of {path} is {state}", hint=CORRUPT_HINT
            )
        return Original(path, data, int(mode, 8), uid, gid)

    def save(self, path: str) -> Original | None:
        """Keep the live file at target path `path` (its bytes, mode, owner and group), replacing
        what the store had for it: the JSON file removed, the bytes written, then the new JSON
        file (each atomically, flushed). Returns what was kept, None when the file is missing
        (nothing to keep). Raises UnsafePathError when it is a symbolic link or not a regular
        file, OSError when a write fails."""
        st = self.tree.stat(path)
        data = self.tree.read(path)
        if st is None or data is None:
            return None
        original = Original(path, data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        stem = key(path)
        self.tree.private_dir(self.directory)
        self.tree.remove(self._file(f"{stem}.json"))
        self.tree.write(self._file(stem), data, mode=FILE_MODE, keep_mode=False)
        meta = {
            "path": path,
            "mode": f"{original.mode:04o}",
            "uid": original.uid,
            "gid": original.gid,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        text = json.dumps(meta, indent=0, sort_keys=True).encode() + b"\n"
        self.tree.write(self._file(f"{stem}.json"), text, mode=FILE_MODE, keep_mode=False)
        return original

    def prune(self, keep: Collection[str]) -> list[str]:
        """Drop every saved original whose path is not in `keep` (the paths of apply's new
        manifest: the others were put back, or never replaced), its JSON file first, and every
        KEY file left without its JSON. Returns the paths dropped, sorted. Raises as load,
        OSError when a removal fails."""
        if self.tree.stat(self.directory) is None:
            return []
        self.tree.private_dir(self.directory)  # an existing store is fixed at every apply
        dropped = [path for path in self.load() if path not in keep]
        for path in dropped:
            self.tree.remove(self._file(f"{key(path)}.json"))
        names = set(self.names())
        for name in sorted(names):
            if _KEY.fullmatch(name) and f"{name}.json" not in names:
                self.tree.remove(self._file(name))
        return sorted(dropped)
