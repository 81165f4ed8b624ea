"""A streaming reader for WADO-RS answers (multipart/related, RFC 2046) that trusts only whole parts.

A part is handed out only once the boundary after it has arrived, and a stream that ends before
its closing boundary raises ``Truncated``: a connection cut mid-instance can never yield half a
DICOM file (dicomweb-client hands out whatever it has when the stream ends).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class Truncated(Exception):
    """The stream ended before the closing boundary."""


def boundary_of(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"').encode()
    return None


def _body(part: bytes | bytearray) -> bytes:
    """A part without its headers."""
    if part.startswith(b"\r\n"):  # no headers at all
        return bytes(part[2:])
    end = part.find(b"\r\n\r\n")
    return bytes(part[end + 4:]) if end >= 0 else bytes(part)


def iter_parts(chunks: Iterable[bytes], boundary: bytes) -> Iterator[bytes]:
    """Bodies of the parts of a multipart stream read in ``chunks``."""
    first, delim = b"--" + boundary, b"\r\n--" + boundary
    buf = bytearray()
    start = -1  # where the current part begins in buf (-1: before the first boundary)
    scan = 0
    for chunk in chunks:
        buf += chunk
        while True:
            if start < 0:
                at = buf.find(first)
                if at < 0 or len(buf) < at + len(first) + 2:
                    break
                if buf[at + len(first):at + len(first) + 2] == b"--":
                    return  # an empty multipart
                start = scan = at + len(first) + 2  # past "--boundary\r\n"
                continue
            at = buf.find(delim, max(start, scan))
            if at < 0 or len(buf) < at + len(delim) + 2:
                scan = max(start, len(buf) - len(delim) - 2)
                break
            yield _body(buf[start:at])
            tail = buf[at + len(delim):at + len(delim) + 2]
            del buf[:at + len(delim) + 2]
            if tail == b"--":
                return
            start = scan = 0
    raise Truncated("the multipart stream ended before its closing boundary")
