#!/usr/bin/env python3
"""A tiny authoritative DNS server (UDP and TCP, standard library only) for comparing name
resolvers: scripts/compare-resolvers.sh starts it on 127.0.0.153:53 and points a private
/etc/resolv.conf at it.

Zone `pq.test` (every address is on the loopback network):
  plain.pq.test    A 127.0.0.1
  v6.pq.test       AAAA ::1
  alias.pq.test    CNAME plain.pq.test
  big.pq.test      40 A records 127.0.1.1 .. 127.0.1.40: 658 bytes, more than the 512 a UDP
                   answer without EDNS may hold, so over UDP it answers with the TC flag and no
                   records (as BIND and Unbound do when a whole RRset does not fit) and the
                   client has to ask again over TCP.
Anything else is NXDOMAIN.

    dns-test-server.py ADDRESS PORT
"""

import socket
import struct
import sys
import threading

ZONE = {
    "plain.pq.test": [(1, socket.inet_aton("127.0.0.1"))],
    "v6.pq.test": [(28, socket.inet_pton(socket.AF_INET6, "::1"))],
    "alias.pq.test": [(5, "plain.pq.test")],
    "big.pq.test": [(1, bytes([127, 0, 1, i])) for i in range(1, 41)],
}
UDP_LIMIT = 512


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(msg):
    """(id, flags, lower-case name, qtype, end of question) of a query, or None."""
    if len(msg) < 12:
        return None
    qid, flags = struct.unpack(">HH", msg[:4])
    pos, labels = 12, []
    while pos < len(msg) and msg[pos] != 0:
        n = msg[pos]
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    if pos + 5 > len(msg):
        return None
    qtype = struct.unpack(">H", msg[pos + 1 : pos + 3])[0]
    return qid, flags, ".".join(labels), qtype, pos + 5


def answer(msg, over_udp):
    parsed = parse_question(msg)
    if parsed is None:
        return None
    qid, qflags, name, qtype, qend = parsed
    records, rcode, current = [], 0, name
    for _ in range(8):
        rrs = ZONE.get(current)
        if rrs is None:
            rcode = 0 if records else 3
            break
        cname = next((d for t, d in rrs if t == 5), None)
        for t, data in rrs:
            if t == qtype or t == 5:
                rdata = encode_name(data) if t == 5 else data
                records.append(encode_name(current) + struct.pack(">HHIH", t, 1, 60, len(rdata)) + rdata)
        if cname is None:
            break
        current = cname
    flags = 0x8000 | 0x0400 | (qflags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
    question = msg[12:qend]
    body = b"".join(records)
    if over_udp and 12 + len(question) + len(body) > UDP_LIMIT:
        flags |= 0x0200  # TC, no records
        records, body = [], b""
    return struct.pack(">HHHHHH", qid, flags, 1, len(records), 0, 0) + question + body


def serve_udp(sock):
    while True:
        msg, peer = sock.recvfrom(4096)
        reply = answer(msg, over_udp=True)
        if reply is not None:
            sock.sendto(reply, peer)


def serve_tcp_client(conn):
    with conn:
        while True:
            head = conn.recv(2)
            if len(head) < 2:
                return
            n = struct.unpack(">H", head)[0]
            msg = b""
            while len(msg) < n:
                chunk = conn.recv(n - len(msg))
                if not chunk:
                    return
                msg += chunk
            reply = answer(msg, over_udp=False)
            if reply is None:
                return
            conn.sendall(struct.pack(">H", len(reply)) + reply)


def serve_tcp(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(conn,), daemon=True).start()


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((addr, port))
    tcp.listen(16)
    threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
    print("ready", flush=True)
    serve_udp(udp)


if __name__ == "__main__":
    main()
