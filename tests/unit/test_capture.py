"""Packet capture on plain data: pcap → pcapng as a stream (read back by a pcapng parser written here from
the format's definition), the filter's allow-list and the capture's argv. No LXD, no tcpdump."""

import io
import struct

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.lab import capture as plan
from lxdkvm.outputs import pcapng

FRAME = bytes(range(60))


def pcap(records, order="<", magic=0xA1B2C3D4, linktype=1):
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for seconds, fraction, data in records:
        out += struct.pack(order + "IIII", seconds, fraction, len(data), len(data) + 4) + data
    return out


def blocks(data: bytes):
    """(type, body) of each pcapng block, checking both of each block's lengths."""
    found, at = [], 0
    while at < len(data):
        kind, size = struct.unpack_from("<II", data, at)
        assert size % 4 == 0 and struct.unpack_from("<I", data, at + size - 4)[0] == size
        found.append((kind, data[at + 8:at + size - 4]))
        at += size
    return found


def converted(stream: bytes, chunk: int = 7):
    source, out = io.BytesIO(stream), io.BytesIO()
    count = pcapng.convert(lambda n: source.read(min(n, chunk)), out.write, "demo/lan", "a comment")
    return count, out.getvalue()


@pytest.mark.parametrize("order, magic, resolution", [("<", 0xA1B2C3D4, 6), (">", 0xA1B2C3D4, 6),
                                                      ("<", 0xA1B23C4D, 9)])
def test_pcap_becomes_pcapng_packet_for_packet(order, magic, resolution):
    count, out = converted(pcap([(1700000000, 123, FRAME), (1700000001, 5, FRAME[:13])], order, magic))
    assert count == 2
    found = blocks(out)
    assert [k for k, _ in found] == [0x0A0D0D0A, 1, 6, 6]
    assert struct.unpack_from("<I", found[0][1])[0] == 0x1A2B3C4D  # byte-order magic
    linktype, _, snaplen = struct.unpack_from("<HHI", found[1][1])
    assert (linktype, snaplen) == (1, 262144)
    assert b"demo/lan" in found[1][1] and bytes([9, 0, 1, 0, resolution]) in found[1][1]  # if_tsresol
    iface, high, low, captured, original = struct.unpack_from("<IIIII", found[2][1])
    assert (iface, captured, original) == (0, 60, 64)
    assert (high << 32 | low) == 1700000000 * 10**resolution + 123
    assert found[2][1][20:80] == FRAME and found[3][1][20:33] == FRAME[:13]


def test_an_empty_stream_writes_nothing_and_a_broken_one_is_an_error():
    assert converted(b"") == (0, b"")
    with pytest.raises(pcapng.NotPcap):
        converted(b"GET / HTTP/1.1\r\n" * 3)
    with pytest.raises(pcapng.NotPcap):
        converted(pcap([(1, 1, FRAME)])[:-5])
    huge = pcap([]) + struct.pack("<IIII", 1, 1, 10**9, 10**9)
    with pytest.raises(pcapng.NotPcap):
        converted(huge)


@pytest.mark.parametrize("bpf", ["icmp", "icmp and host 10.239.2.12", "tcp port 22 or (udp and not port 53)",
                                 "ether[0] & 1 != 0", "ip[2:2] > 576", "vlan 10"])
def test_filters_in_bpf_words_pass(bpf):
    assert plan.checked_filter(bpf) == bpf


@pytest.mark.parametrize("bpf", ["-w /etc/passwd", "icmp; reboot", "icmp $(id)", "host `id`", "'icmp'",
                                 "icmp\nreboot", "a" * 501, "", "icmp > /tmp/x\x00"])
def test_anything_else_is_refused(bpf):
    with pytest.raises(LxdkvmError):
        plan.checked_filter(bpf)


def test_the_filter_is_one_argument_after_the_options_and_a_host_is_entered_by_its_pid():
    on_machine = plan.argv(plan.Target("demo", "lan", "demo-lan"), "icmp and host 10.0.0.5", 10)
    assert on_machine[:5] == ["tcpdump", "-i", "demo-lan", "-w", "-"]
    assert on_machine[-4:] == ["-c", "10", "--", "icmp and host 10.0.0.5"]
    assert "-Z" in on_machine and "-U" in on_machine
    inside = plan.argv(plan.Target("demo", "lan", "br-lan", "kvm-1", 4242), None, None)
    assert inside[:3] == ["nsenter", "--net=/proc/4242/ns/net", "--"] and inside[3] == "tcpdump"
    assert "--" not in inside[4:] and "-c" not in inside
    assert plan.Target("demo", "lan", "br-lan", "kvm-1", 4242).name == "demo/kvm-1/lan"


def test_counts_are_bounded():
    assert plan.checked_count(5) == 5 and plan.checked_count(None) is None
    for bad in (0, -1, 10**9):
        with pytest.raises(LxdkvmError):
            plan.checked_count(bad)
