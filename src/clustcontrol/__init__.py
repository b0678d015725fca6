"""clustcontrol: keep cluster nodes identical to a standard root, synced at every boot."""

__version__ = "0.1.0"
