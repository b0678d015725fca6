"""Which boot file a node's firmware gets, by its architecture: the facts the DHCP renderers
and the TFTP tree share.

A PXE client names its architecture in DHCP option 93, "Client System Architecture Type"
(RFC 4578 section 2.1), with a value from IANA's "Processor Architecture Types" registry
(https://www.iana.org/assignments/dhcpv6-parameters, "Processor Architecture Types"):

    0   x86 BIOS                      -> pxelinux.0 (BIOS_BOOT_FILE)
    7   x64 UEFI                      -> the signed shim (SHIM)
    9   x64 UEFI as well              -> SHIM (IANA lists both 7 and 9 as x64 UEFI; RFC
                                          4578's own table named 7 "EFI BC" and 9 "EFI
                                          x86-64", and firmware sends either)
    16  x64 UEFI HTTP boot            -> not served yet: such a client gets BIOS_BOOT_FILE, as
                                          every other value does (as every client did before)

A node's `boot` (inventory Node.boot) overrides the choice: "bios" or "uefi" whatever the
client sends, "auto" by option 93."""

from __future__ import annotations

#: The BIOS network boot program (syslinux's PXELINUX), in the boot directory.
BIOS_BOOT_FILE = "pxelinux.0"
#: The first UEFI stage: Debian's shim (shim-signed), signed by Microsoft's UEFI CA, so stock
#: firmware keys verify it. Its name in the boot directory.
SHIM = "shimx64.efi"
#: What shim loads next, from the directory it was itself loaded from: shim's DEFAULT_LOADER
#: "\\grubx64.efi" (the string is in /usr/lib/shim/shimx64.efi.signed: `strings -el`); here
#: Debian's signed network GRUB (grubnetx64.efi.signed, grub-efi-amd64-signed) under that name.
GRUB = "grubx64.efi"

#: Option 93 values of x86-64 UEFI PXE clients (see the module docstring).
UEFI_X64_ARCHES: tuple[int, ...] = (7, 9)


def arch_octets(arch: int) -> str:
    """An option 93 value as the two octets a client sends, written as ISC dhcpd compares
    data: 7 -> "00:07" (network byte order, RFC 4578 section 2.1)."""
    return f"{arch >> 8:02x}:{arch & 0xFF:02x}"


def arch_hex(arch: int) -> str:
    """An option 93 value as Kea's expression language writes a binary string: 7 ->
    "0x0007" (Kea ARM, "Using Expressions in Classification", option[code].hex)."""
    return f"0x{arch:04x}"
