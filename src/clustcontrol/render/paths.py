"""The paths a renderer can write, for any inventory: the only files apply may ever remove.

apply records the files it installs in its manifest and removes those no longer rendered. The
manifest is a file on the master; whatever an entry names, apply removes only a path of one of
these shapes (could_render), so a manifest written by anyone else cannot make apply delete
/etc/passwd. The shapes follow the renderers:

    fixed paths        FIXED_PATHS: each service's own files (/etc/dhcp/dhcpd.conf ...)
    zone files         ZONE_DIR/db.ZONE (render/dns.py)
    PXELINUX files     TFTP_ROOT/BOOT_DIR/{pxelinux.0, ldlinux.c32, pxelinux-common,
                       pxelinux.cfg/default, pxelinux.cfg/HEXIP} (render/pxe.py), never
                       inside the master's program trees (/usr/lib/PXELINUX/pxelinux.0 is
                       where apply copies from): the TFTP root may not lie there
    UEFI files         TFTP_ROOT/BOOT_DIR/{shimx64.efi, grubx64.efi, grub/common.cfg,
                       grub/default.cfg, grub/HEXIP.cfg} and TFTP_ROOT/grub/grub.cfg
                       (render/grub.py), under the same rule: the master's own
                       /boot/grub/grub.cfg has that shape but lies in /boot
    control files      CONTROL_DIR/{default, images/NAME, layouts/NAME, sfdisk-NAME,
                       nodes/NAME, nodes.by-mac} (render/control.py); the control directory's
                       last component holds "clustcontrol" (inventory/checks.py)

No variable path lies inside an image root (apply passes them as `foreign`): a standard's own
boot/pxelinux.cfg/default is not apply's.
The files with a managed block (/etc/fstab, named.conf.local) are never in the manifest and
never removed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from clustcontrol.inventory.checks import MASTER_TREES
from clustcontrol.render.dhcp.dnsmasq import DNSMASQ_CONF
from clustcontrol.render.dhcp.isc import DEFAULTS, DHCPD_CONF
from clustcontrol.render.dhcp.kea import KEA_CONF
from clustcontrol.render.dns import OPTIONS, SNIPPET, ZONE_DIR
from clustcontrol.render.firewall import RULESET, UNIT_FILE, WANTS
from clustcontrol.render.grub import GRUB_CONFIG, SIGNED_FILES
from clustcontrol.render.nfs import EXPORTS, GANESHA_CONF, NFSD_CONF
from clustcontrol.render.pxe import BOOT_FILES, TFTPD_DEFAULTS
from clustcontrol.render.rsyncd import RSYNCD_CONF

#: The files a renderer writes at the same path whatever the inventory.
FIXED_PATHS: frozenset[str] = frozenset(
    {
        DHCPD_CONF,
        DEFAULTS,
        KEA_CONF,
        DNSMASQ_CONF,
        OPTIONS,
        SNIPPET,
        TFTPD_DEFAULTS,
        EXPORTS,
        GANESHA_CONF,
        NFSD_CONF,
        RSYNCD_CONF,
        RULESET,
        UNIT_FILE,
        WANTS,
    }
)

#: Where no PXELINUX file of a valid inventory lies: the TFTP root may not lie inside the
#: master's program trees (inventory/checks.py MASTER_TREES), so a manifest entry such as
#: /usr/lib/PXELINUX/pxelinux.0 (the file apply copies from) is no file apply installed.
_NO_TFTP_TREES = MASTER_TREES

_COMPONENT = r"/[^/]+"
_NAME = r"[a-z0-9][a-z0-9_-]{0,62}"  # an image or layout name (inventory/types.py, Name)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"  # a node's host name, lower-cased
_COPIED = (*BOOT_FILES, *(name for name, _, _ in SIGNED_FILES))
_PXELINUX = re.compile(
    rf"(?:{_COMPONENT})+/(?:{'|'.join(map(re.escape, _COPIED))}|pxelinux-common"
    r"|pxelinux\.cfg/(?:default|[0-9A-F]{8}))"
    rf"|{GRUB_CONFIG.pattern}"
)
_VARIABLE = re.compile(
    "|".join(
        [
            rf"{re.escape(ZONE_DIR)}/db\.[a-z0-9.-]+",
            rf"(?:{_COMPONENT})*/[^/]*clustcontrol[^/]*/(?:default|nodes\.by-mac"
            rf"|(?:images|layouts)/{_NAME}|sfdisk-{_NAME}|nodes/{_LABEL})",
        ]
    )
)


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def could_render(path: str, foreign: Iterable[str] = ()) -> bool:
    """Whether `path` (absolute, normalized) has the shape of a file some renderer writes for
    some inventory (see the module docstring): one of FIXED_PATHS, or a zone, PXELINUX, UEFI
    or control file. A PXELINUX or UEFI file never lies inside the master's program trees
    (_NO_TFTP_TREES), and no variable path inside one of `foreign` (absolute, normalized
    directories no renderer writes into: the image roots, the working trees a standard's own
    boot/pxelinux.cfg lies in)."""
    if path in FIXED_PATHS:
        return True
    if any(_inside(path, d) for d in foreign):
        return False
    if _PXELINUX.fullmatch(path):
        return not any(_inside(path, t) for t in _NO_TFTP_TREES)
    return _VARIABLE.fullmatch(path) is not None
