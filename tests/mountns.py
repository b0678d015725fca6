"""A mount namespace of the test process's own, for tests that mount file systems."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNS = 0x00020000


@contextlib.contextmanager
def private_mount_namespace() -> Iterator[None]:
    """Run the `with` block in a new mount namespace (unshare(2) CLONE_NEWNS), every mount
    private (nothing propagates out of it or into it), then return to the original one
    (setns(2)). Mounts made inside are gone with the namespace once no process is left in it
    (loop devices mounted with -o loop detach then). Needs root; raises OSError when unshare or
    setns fails."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        try:
            subprocess.run(["mount", "--make-rprivate", "/"], check=True)
            yield
        finally:
            if libc.setns(original, CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(original)
