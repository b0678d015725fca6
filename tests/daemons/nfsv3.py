"""A minimal NFSv3 and MOUNT v3 client that sends whatever file handle it is given.

Kernel and library clients only send handles the server gave them; to show what a server does
with a forged one, the tests speak the protocol themselves: ONC RPC over TCP with record
marking and AUTH_SYS credentials (RFC 5531 sections 9 and 11, appendix A), MOUNT's MNT and
NFSv3's GETATTR, LOOKUP, READ, WRITE, CREATE and READDIR (RFC 1813, XDR per RFC 4506). The
socket is made in a network namespace (setns(2) for the calling thread only, then back) and
bound to a given source address and, as the kernel's client does for root, a reserved port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
MOUNT_PROGRAM, MOUNT_VERSION, MOUNTD_PORT = 100005, 3, 20048
NFS_PROGRAM, NFS_VERSION, NFS_PORT = 100003, 3, 2049
# RFC 1813 procedure numbers.
GETATTR, LOOKUP, READ, WRITE, CREATE, READDIR = 1, 3, 6, 7, 8, 16
MNT = 1
# nfsstat3 values the tests look for (RFC 1813 section 2.6).
NFS3_OK, NFS3ERR_ACCES, NFS3ERR_STALE = 0, 13, 70
FILE_SYNC = 2  # stable_how
UNCHECKED = 0  # createmode3
NF3DIR = 2  # ftype3


class RpcError(Exception):
    """The server refused the call at the RPC level (MSG_DENIED, or not SUCCESS)."""


@contextlib.contextmanager
def _in_netns(netns: str) -> Iterator[None]:
    """The calling thread in network namespace `netns` (/run/netns/NAME) for the block."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(original)


class _Packer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def uint(self, value: int) -> _Packer:
        self.parts.append(struct.pack(">I", value))
        return self

    def hyper(self, value: int) -> _Packer:
        self.parts.append(struct.pack(">Q", value))
        return self

    def opaque(self, data: bytes) -> _Packer:
        self.uint(len(data))
        self.parts.append(data + b"\0" * (-len(data) % 4))
        return self

    def fixed(self, data: bytes) -> _Packer:
        self.parts.append(data)
        return self

    def data(self) -> bytes:
        return b"".join(self.parts)


class _Unpacker:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def fixed(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def uint(self) -> int:
        value: int = struct.unpack(">I", self.fixed(4))[0]
        return value

    def hyper(self) -> int:
        value: int = struct.unpack(">Q", self.fixed(8))[0]
        return value

    def opaque(self) -> bytes:
        size = self.uint()
        value = self.fixed(size)
        self.fixed(-size % 4)
        return value


@dataclass(frozen=True)
class Attributes:
    """The fattr3 fields the tests use: type (ftype3), mode, file system id, file id."""

    type: int
    mode: int
    fsid: int
    fileid: int


def _fattr3(u: _Unpacker) -> Attributes:
    kind, mode = u.uint(), u.uint()
    u.fixed(4 * 3 + 8 * 2 + 8)  # nlink, uid, gid, size, used, rdev
    fsid, fileid = u.hyper(), u.hyper()
    u.fixed(8 * 3)  # atime, mtime, ctime
    return Attributes(kind, mode, fsid, fileid)


def _skip_post_op_attr(u: _Unpacker) -> None:
    if u.uint():
        _fattr3(u)


def _skip_wcc_data(u: _Unpacker) -> None:
    if u.uint():  # pre_op_attr: size, mtime, ctime
        u.fixed(8 + 8 + 8)
    _skip_post_op_attr(u)


class RpcClient:
    """One TCP connection to an RPC program, from `source` (an address of namespace `netns`)
    and a reserved port, with AUTH_SYS credentials for uid and gid 0."""

    def __init__(self, netns: str, source: str, server: str, port: int, program: int) -> None:
        with _in_netns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for reserved in range(1023, 600, -1):
            try:
                self.sock.bind((source, reserved))
                break
            except OSError:
                continue
        else:
            raise OSError(f"no reserved port free on {source}")
        self.sock.settimeout(20)
        self.sock.connect((server, port))
        self.program = program

    def close(self) -> None:
        self.sock.close()

    def _receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the server closed the connection")
            data += chunk
        return data

    def call(self, procedure: int, arguments: bytes) -> _Unpacker:
        """Call `procedure` of the program's version 3; the unpacker is at the results."""
        xid = secrets.randbits(32)
        credential = _Packer().uint(0).opaque(b"test").uint(0).uint(0).uint(0).data()
        message = (
            _Packer()
            .uint(xid)
            .uint(0)  # CALL
            .uint(2)  # RPC version
            .uint(self.program)
            .uint(3)
            .uint(procedure)
            .uint(1)  # AUTH_SYS
            .opaque(credential)
            .uint(0)  # verifier AUTH_NONE
            .opaque(b"")
            .fixed(arguments)
            .data()
        )
        self.sock.sendall(struct.pack(">I", 0x80000000 | len(message)) + message)
        reply = b""
        while True:
            (mark,) = struct.unpack(">I", self._receive(4))
            reply += self._receive(mark & 0x7FFFFFFF)
            if mark & 0x80000000:
                break
        u = _Unpacker(reply)
        if u.uint() != xid or u.uint() != 1:
            raise RpcError("not the reply to this call")
        if u.uint() != 0:
            raise RpcError("MSG_DENIED")
        u.uint()  # verifier flavor
        u.opaque()
        if (accepted := u.uint()) != 0:
            raise RpcError(f"accept_stat {accepted}")
        return u


def mount(netns: str, source: str, server: str, path: str) -> tuple[int, bytes]:
    """MOUNT v3 MNT of `path`: (mountstat3, the export's root file handle or b"")."""
    client = RpcClient(netns, source, server, MOUNTD_PORT, MOUNT_PROGRAM)
    try:
        u = client.call(MNT, _Packer().opaque(path.encode()).data())
        status = u.uint()
        return status, (u.opaque() if status == 0 else b"")
    finally:
        client.close()


class Nfs3:
    """NFSv3 calls on one connection; each returns (nfsstat3, result or None)."""

    def __init__(self, netns: str, source: str, server: str) -> None:
        self.rpc = RpcClient(netns, source, server, NFS_PORT, NFS_PROGRAM)

    def close(self) -> None:
        self.rpc.close()

    def getattr(self, handle: bytes) -> tuple[int, Attributes | None]:
        u = self.rpc.call(GETATTR, _Packer().opaque(handle).data())
        status = u.uint()
        return status, (_fattr3(u) if status == NFS3_OK else None)

    def lookup(self, directory: bytes, name: str) -> tuple[int, bytes | None]:
        u = self.rpc.call(LOOKUP, _Packer().opaque(directory).opaque(name.encode()).data())
        status = u.uint()
        return status, (u.opaque() if status == NFS3_OK else None)

    def walk(self, directory: bytes, path: str) -> tuple[int, bytes | None]:
        """LOOKUP each component of the relative `path` in turn."""
        handle: bytes | None = directory
        for name in path.split("/"):
            assert handle is not None
            status, handle = self.lookup(handle, name)
            if status != NFS3_OK:
                return status, None
        return NFS3_OK, handle

    def read(self, handle: bytes, count: int = 1 << 20) -> tuple[int, bytes | None]:
        """READ from offset 0, at most `count` bytes (one call: the tests' files are small)."""
        u = self.rpc.call(READ, _Packer().opaque(handle).hyper(0).uint(count).data())
        status = u.uint()
        if status != NFS3_OK:
            return status, None
        _skip_post_op_attr(u)
        u.uint()  # count
        u.uint()  # eof
        return status, u.opaque()

    def readdir(self, directory: bytes) -> tuple[int, list[str] | None]:
        """Every name in the directory ('.' and '..' included)."""
        names: list[str] = []
        cookie, verifier = 0, b"\0" * 8
        while True:
            arguments = _Packer().opaque(directory).hyper(cookie).fixed(verifier).uint(8192)
            u = self.rpc.call(READDIR, arguments.data())
            status = u.uint()
            if status != NFS3_OK:
                return status, None
            _skip_post_op_attr(u)
            verifier = u.fixed(8)
            while u.uint():
                u.hyper()  # fileid
                names.append(u.opaque().decode())
                cookie = u.hyper()
            if u.uint():  # eof
                return NFS3_OK, names

    def create(self, directory: bytes, name: str) -> tuple[int, bytes | None]:
        """CREATE `name` (UNCHECKED, mode 0644): its handle."""
        # sattr3: mode set to 0644; uid, gid, size, atime, mtime left alone.
        attributes = _Packer().uint(1).uint(0o644).uint(0).uint(0).uint(0).uint(0).uint(0)
        arguments = _Packer().opaque(directory).opaque(name.encode()).uint(UNCHECKED)
        u = self.rpc.call(CREATE, arguments.fixed(attributes.data()).data())
        status = u.uint()
        if status != NFS3_OK:
            return status, None
        return status, (u.opaque() if u.uint() else None)

    def write(self, handle: bytes, data: bytes) -> int:
        """WRITE `data` at offset 0, FILE_SYNC: the nfsstat3."""
        arguments = _Packer().opaque(handle).hyper(0).uint(len(data)).uint(FILE_SYNC)
        u = self.rpc.call(WRITE, arguments.opaque(data).data())
        status = u.uint()
        _skip_wcc_data(u)
        return status


def forge(handle: bytes, fileid: int, inode: int, generation: int) -> bytes:
    """`handle` with the object it names replaced: the Linux file handle inside it, of type
    FILEID_INO32_GEN (1: a 32-bit inode number and generation, little-endian, as ext4 encodes
    a file, include/linux/exportfs.h), found by the type byte and `fileid` (the object's inode
    number, from GETATTR), now names `inode` with `generation`."""
    at = handle.index(bytes([1]) + struct.pack("<I", fileid))
    return handle[: at + 1] + struct.pack("<II", inode, generation) + handle[at + 9 :]


def with_export_of(export_handle: bytes, handle: bytes) -> bytes:
    """`handle` presented as if of the export `export_handle` belongs to: nfs-ganesha's NFSv3
    handle starts with its version, flags and the export's id (two bytes, big-endian, bytes
    2 and 3; nfs-ganesha src/include/nfs_file_handle.h, file_handle_v3), then the back end's
    handle of the object (for VFS: the file system's id and the Linux file handle)."""
    return export_handle[:4] + handle[4:]
