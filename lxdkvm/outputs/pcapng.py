"""pcap in, pcapng out, as a stream: tcpdump writes the classic pcap format, `lxdkvm capture` writes pcapng
(the format Wireshark and its `-k -i -` expect, with the interface named after the lab link it came from).
Pure: bytes from a reader, bytes to a writer, each packet as soon as it is whole.

pcap: a 24-byte header (magic, version, snap length, link type), then per packet a 16-byte record
(seconds, micro- or nanoseconds, captured and original length) and the packet. pcapng: a section header
block, one interface description block (link type, snap length, name, time resolution), then one enhanced
packet block per packet (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-03.html).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 6), b"\xa1\xb2\xc3\xd4": (">", 6),  # microseconds
          b"\x4d\x3c\xb2\xa1": ("<", 9), b"\xa1\xb2\x3c\x4d": (">", 9)}  # nanoseconds
MAX_PACKET = 262_144  # tcpdump's largest snap length: a longer record is not pcap


class NotPcap(ValueError):
    pass


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def header(linktype: int, snaplen: int, resolution: int, if_name: str, comment: str = "") -> bytes:
    """A section header block and the interface's description block."""
    shb_options = (_option(1, comment.encode()) if comment else b"") + _option(0, b"")
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_options)
    idb_options = _option(2, if_name.encode()[:64]) + _option(9, bytes([resolution])) + _option(0, b"")
    idb = _block(1, struct.pack("<HHI", linktype, 0, snaplen) + idb_options)
    return shb + idb


def packet(seconds: int, fraction: int, resolution: int, data: bytes, original: int) -> bytes:
    """An enhanced packet block of interface 0."""
    stamp = seconds * 10**resolution + fraction
    body = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(data), original) + _pad(data)
    return _block(6, body)


def _exactly(read: Callable[[int], bytes], size: int) -> bytes | None:
    """SIZE bytes from READ; None at the end of the stream before the first of them; NotPcap when it
    ends in the middle."""
    got = b""
    while len(got) < size:
        more = read(size - len(got))
        if not more:
            if got:
                raise NotPcap(f"the stream ended inside a record ({len(got)} of {size} bytes)")
            return None
        got += more
    return got


def convert(read: Callable[[int], bytes], write: Callable[[bytes], object], if_name: str,
            comment: str = "") -> int:
    """Copy the pcap stream READ gives to WRITE as pcapng, each packet as soon as it is read; the number
    of packets. An empty stream (tcpdump stopped before its header) writes nothing."""
    head = _exactly(read, 24)
    if head is None:
        return 0
    if head[:4] not in MAGICS:
        raise NotPcap("not a pcap stream (its magic number is unknown)")
    order, resolution = MAGICS[head[:4]]
    snaplen, linktype = struct.unpack(order + "II", head[16:24])
    write(header(linktype & 0xFFFF, snaplen, resolution, if_name, comment))
    count = 0
    while (record := _exactly(read, 16)) is not None:
        seconds, fraction, captured, original = struct.unpack(order + "IIII", record)
        if captured > MAX_PACKET:
            raise NotPcap(f"a record of {captured} bytes (at most {MAX_PACKET})")
        data = _exactly(read, captured) if captured else b""
        if data is None:
            raise NotPcap("the stream ended before a packet's data")
        write(packet(seconds, fraction, resolution, data, original))
        count += 1
    return count
