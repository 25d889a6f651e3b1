"""Run inside a lab host by the integration tests (`python3 - ARGS` with this file on stdin): the kvm-host
image has python3 but neither ping nor iperf. Prints one JSON line.

  ping ADDRESS COUNT INTERVAL   ICMP echo requests (raw socket), how many were answered
  sink PORT                     accept one TCP connection, count its bytes, time first to last byte
  send ADDRESS PORT BYTES       send BYTES zero bytes to ADDRESS:PORT
"""

import json
import os
import select
import socket
import struct
import sys
import time


def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address, count, interval):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, answered = os.getpid() & 0xFFFF, set()

    def drain(until):
        while True:
            left = until - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                return
            packet, source = sock.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4:]
            kind, _code, _sum, got_id, seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and got_id == ident and source[0] == address:
                answered.add(seq)

    for seq in range(count):
        body = struct.pack("!d", time.time()) + b"lxdkvm-impair" * 3
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        sock.sendto(struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, seq) + body, (address, 0))
        drain(time.monotonic() + interval)
    drain(time.monotonic() + 2)
    return {"sent": count, "received": len(answered)}


def sink(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    print(json.dumps({"listening": port}), flush=True)
    conn, _ = server.accept()
    total, first, last = 0, None, None
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        now = time.monotonic()
        first = first or now
        total, last = total + len(chunk), now
    return {"bytes": total, "seconds": (last - first) if first else 0.0}


def send(address, port, size):
    start = time.monotonic()
    with socket.create_connection((address, port), timeout=120) as conn:
        block = b"\0" * 65536
        left = size
        while left > 0:
            conn.sendall(block[:left])
            left -= min(left, len(block))
    return {"sent": size, "seconds": time.monotonic() - start}


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "ping":
        result = ping(args[0], int(args[1]), float(args[2]))
    elif what == "sink":
        result = sink(int(args[0]))
    else:
        result = send(args[0], int(args[1]), int(args[2]))
    print(json.dumps(result), flush=True)
