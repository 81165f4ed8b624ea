"""A private network namespace holding only loopback, entered by the calling thread (Linux, root).

Orthanc has no option to listen on 127.0.0.1 alone, so the PACS tests run it, and their own
client side, in a network namespace of their own: nothing they open is reachable from outside
and nothing outside is reachable from them.  Namespaces belong to threads: ``enter`` moves the
calling thread (and every thread or process it starts afterwards) into a new namespace, and
``leave`` moves that thread back; threads started inside stay inside.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} failed: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, bytes(14))
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, bytes(14)))


def current() -> str:
    """The calling thread's network namespace, e.g. 'net:[4026532177]'."""
    return os.readlink("/proc/thread-self/ns/net")


def enter() -> int:
    """Move the calling thread into a new network namespace with loopback up.

    Returns a file descriptor of the namespace it was in, for ``leave``.  Needs CAP_SYS_ADMIN.
    """
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _loopback_up()
    except BaseException:
        os.close(old)
        raise
    return old


def leave(old_fd: int) -> None:
    """Move the calling thread back into the namespace ``old_fd`` refers to."""
    try:
        _check(_libc.setns(old_fd, CLONE_NEWNET), "setns")
    finally:
        os.close(old_fd)
