"""A fake upstream DNS server on loopback (UDP, port 0) for the tests:
answers A/AAAA from a table, NXDOMAIN otherwise, and records every name it
was asked, so a test can assert what left the machine."""
import socket
import struct
import threading


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split(".") if name else []:
        out += bytes([len(label)]) + label.encode("latin-1")
    return out + b"\0"


def build_query(name, qtype=1, qid=0x4242, raw_name=None):
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + (raw_name or encode_name(name)) + struct.pack(">HH", qtype, 1)


def parse_answer(data):
    """(rcode, [address text, ...]) of a response to a query we built."""
    rcode = data[3] & 0x0F
    if data[4:6] == b"\0\0":   # header-only answer (FORMERR to a malformed query)
        return rcode, []
    ancount = struct.unpack(">H", data[6:8])[0]
    pos = 12
    while data[pos]:
        pos += data[pos] + 1
    pos += 5
    addresses = []
    for _ in range(ancount):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        rdata = data[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return rcode, addresses


class FakeUpstream:
    def __init__(self, table):
        self.table = {k.lower(): v for k, v in table.items()}
        self.asked = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                self.sock.sendto(self._answer(data), peer)
            except Exception:  # a malformed query gets no answer
                continue

    def _answer(self, data):
        qid = data[:2]
        pos = 12
        labels = []
        while data[pos]:
            labels.append(data[pos + 1:pos + 1 + data[pos]].decode("latin-1"))
            pos += data[pos] + 1
        qtype = struct.unpack(">H", data[pos + 1:pos + 3])[0]
        question = data[12:pos + 5]
        name = ".".join(labels).lower()
        self.asked.append((name, qtype))
        records = b""
        count = 0
        rcode = 3
        if name in self.table:
            rcode = 0
            for addr in self.table[name]:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                rtype = 28 if family == socket.AF_INET6 else 1
                if rtype != qtype:
                    continue
                raw = socket.inet_pton(family, addr)
                records += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 30, len(raw)) + raw
                count += 1
        return qid + struct.pack(">HHHHH", 0x8180 | rcode, 1, count, 0, 0) + question + records

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()
