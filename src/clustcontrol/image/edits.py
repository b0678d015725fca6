"""Pure text edits of an image's configuration files: each takes the current text and returns the
new text (identical when nothing needs to change) plus what it did, so every edit is idempotent
and unit-testable without a root tree.

The text is the file's bytes as `decode` gives them: bytes that are not UTF-8 become lone
surrogates and `encode` gives them back, and lines end at "\n" only, so a line the edit does
not touch keeps every byte (a CR, a form feed, Latin-1) and the file its missing final newline."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from clustcontrol.apply import BLOCK_BEGIN, BLOCK_END, merge_block

FSTAB_PREFIX = "# clustcontrol: "
UDEV_GOTO = 'GOTO="persistent_net_generator_end"'
UDEV_LABEL = 'LABEL="persistent_net_generator_end"'
UDEV_COMMENT = "# clustcontrol: every node runs the same image; keep kernel interface names"

# ifupdown's stanza keywords (interfaces(5)); any other non-comment line is an option line.
_STANZAS = {
    "iface",
    "mapping",
    "auto",
    "source",
    "source-directory",
    "source-dir",
    "rename",
    "no-auto-down",
    "no-scripts",
    "template",
}


def decode(data: bytes) -> str:
    """A file's bytes as text for the edits: UTF-8, other bytes as lone surrogates (PEP 383)."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    """The bytes of text made by decode and the edits: exactly the file's where unchanged."""
    return text.encode("utf-8", "surrogateescape")


def _lines(text: str) -> list[str]:
    """The lines of text, split at "\n" only (str.splitlines also splits at CR, form feeds and
    other separators that are part of a line for the programs reading these files)."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _join(lines: list[str], original: str | None = None) -> str:
    """lines joined, each ending with "\n" but the original's last line when `original` (the
    text they were split from) lacks its final newline and the edit kept that line last."""
    if not lines:
        return ""
    text = "\n".join(lines)
    if original and not original.endswith("\n") and lines[-1] == _lines(original)[-1]:
        return text
    return text + "\n"


def set_shell_vars(text: str, values: Mapping[str, str]) -> tuple[str, list[str]]:
    """Set KEY=value assignments in a shell-style config: in place where KEY= is assigned
    (every such line), appended where it is not (commented-out examples stay as they are).

    `values` maps KEY to the value text as written (quote it yourself if it needs quoting);
    `export KEY=` lines keep their `export`. Returns (new text, one note per change)."""
    lines = _lines(text)
    done: list[str] = []
    for key, value in values.items():
        pattern = re.compile(rf"^(\s*)(export\s+)?{re.escape(key)}=(.*)$")
        found = False
        for index, line in enumerate(lines):
            match = pattern.match(line)
            if match is None:
                continue
            found = True
            wanted = f"{match.group(1)}{match.group(2) or ''}{key}={value}"
            if line != wanted:
                lines[index] = wanted
                done.append(f"{key}={value} (was {match.group(3)!r})")
        if not found:
            lines.append(f"{key}={value}")
            done.append(f"{key}={value} (added)")
    return _join(lines, text), done


_FSTAB_BLANKS = re.compile(r"[ \t]+")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _is_root(fs_file: str) -> bool:
    """Whether an fstab fs_file field names `/`: its octal escapes decoded (fstab(5): a
    backslash and three octal digits, 040 for a space; libmount decodes any), then `//` and
    `/.` read as `/`, as libmount and systemd compare mount points."""
    decoded = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fs_file)
    return decoded.startswith("/") and posixpath.normpath("/" + decoded.lstrip("/")) == "/"


def comment_root_mount(text: str) -> tuple[str, list[str]]:
    """Comment out fstab lines mounting `/`: a node's root comes from root= on its command line.

    A line whose second field (fs_file, fstab(5)) is `/` gets the FSTAB_PREFIX comment. Fields
    are separated by spaces and tabs only, as fstab(5) says and libmount reads them (other
    white space, such as a no-break space, is part of a field). Returns (new text, the lines
    commented out, stripped)."""
    lines = _lines(text)
    commented: list[str] = []
    for index, line in enumerate(lines):
        fields = _FSTAB_BLANKS.split(line.strip(" \t\r"))
        if len(fields) >= 2 and not fields[0].startswith("#") and _is_root(fields[1]):
            lines[index] = FSTAB_PREFIX + line
            commented.append(line.strip())
    return _join(lines, text), commented


def disable_net_generator(text: str) -> str:
    """Make udev's persistent-net generator rule skip itself: a GOTO to its end label, first.

    `text` is the rules file (75-persistent-net-generator.rules); returns it unchanged when the
    GOTO line is already there."""
    if any(line.strip() == UDEV_GOTO for line in _lines(text)):
        return text
    return _join([UDEV_COMMENT, UDEV_GOTO, *_lines(text)], text)


def _stanza_start(words: list[str]) -> bool:
    return bool(words) and (words[0] in _STANZAS or words[0].startswith("allow-"))


def manual_iface(text: str, ifname: str) -> tuple[str, list[str]]:
    """Make `iface IFNAME inet ...` use the manual method (the kernel configured the interface
    with ip=dhcp before the root was mounted; ifupdown must leave it alone).

    dhcp and static stanzas switch to manual (a static one loses its option lines); a missing
    stanza is appended; other methods are reported and left alone.

    Stanza keywords follow interfaces(5). Returns (new text, one note per change)."""
    out: list[str] = []
    notes: list[str] = []
    found = dropping = False
    for line in _lines(text):
        words = line.split("#", 1)[0].split()
        if _stanza_start(words):
            dropping = False
            if words[0] == "iface" and len(words) >= 4 and words[1:3] == [ifname, "inet"]:
                found = True
                method = words[3]
                if method in ("dhcp", "static"):
                    indent = line[: len(line) - len(line.lstrip())]
                    line = f"{indent}iface {ifname} inet manual"
                    dropping = method == "static"
                    notes.append(f"iface {ifname}: inet {method} -> inet manual")
                elif method != "manual":
                    notes.append(f"iface {ifname} inet {method}: left alone (not dhcp or static)")
        elif dropping and words:
            notes.append(f"iface {ifname}: dropped option {line.strip()!r}")
            continue
        out.append(line)
    if not found:
        if out and out[-1].strip():
            out.append("")
        out.append(f"iface {ifname} inet manual")
        notes.append(f"iface {ifname} inet manual (added)")
    return _join(out, text), notes


def configured_interfaces(text: str) -> list[tuple[str, str]]:
    """The (interface, method) of each `iface NAME inet METHOD` stanza of an interfaces(5)
    file, in order."""
    found = []
    for line in _lines(text):
        words = line.split("#", 1)[0].split()
        if _stanza_start(words) and words[0] == "iface" and len(words) >= 4 and words[2] == "inet":
            found.append((words[1], words[3]))
    return found


def default_interfaces(ifname: str) -> str:
    """A complete /etc/network/interfaces (interfaces(5)): loopback and `ifname` with the
    manual method, plus the Debian default `source /etc/network/interfaces.d/*`."""
    return _join(
        [
            "# interfaces(5) file used by ifup(8) and ifdown(8)",
            "# written by clustcontrol: the boot interface is configured by the kernel (ip=dhcp)",
            "source /etc/network/interfaces.d/*",
            "",
            "auto lo",
            "iface lo inet loopback",
            "",
            f"iface {ifname} inet manual",
        ]
    )


RC_LOCAL_HEAD = [
    "#!/bin/sh -e",
    "# rc.local: run at the end of boot by systemd's rc-local.service when it is executable.",
]


def rc_local_with_block(text: str | None, block: str, where: str = "rc.local") -> str:
    """rc.local with clustcontrol's managed block: replaced in place when present, otherwise
    inserted before the final `exit 0` (or appended); a new rc.local when there is none.

    `text` is the current /etc/rc.local or None, `block` the block's lines without markers,
    `where` names the file in messages. rc.local runs only when executable
    (systemd-rc-local-generator(8)); setting the mode is the caller's job. Raises
    InvalidInputError when its marker lines make no single block (apply.merge_block)."""
    if text is None:
        return _join([*RC_LOCAL_HEAD, BLOCK_BEGIN, *_lines(block), BLOCK_END, "exit 0"])
    lines = _lines(text)
    has_markers = BLOCK_BEGIN in lines or BLOCK_END in lines
    exits = [i for i, line in enumerate(lines) if line.strip() == "exit 0"]
    if has_markers or not exits:
        return decode(merge_block(encode(text), encode(block), where))
    at = exits[-1]
    return _join([*lines[:at], BLOCK_BEGIN, *_lines(block), BLOCK_END, *lines[at:]], text)
