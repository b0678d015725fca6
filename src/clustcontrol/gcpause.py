"""Pause the cyclic garbage collector while building a large structure.

Loading and rendering a 10,000-node inventory allocates hundreds of thousands of objects and no
garbage cycles; the collector would rescan all of them, again and again, while they are built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
