"""Connects a TCP socket with io_uring's IORING_OP_CONNECT through raw
syscalls (ctypes), then speaks plain HTTP on it. Used by the identity
red-team tests: the connect runs in io_uring's context (with --sqpoll in the
iou-sqp kernel thread), and must still be attributed to this executable.

usage: iouring_connect.py [--sqpoll] HOST PORT PATH
Prints the HTTP status line's code, or "ERR <errno>" when the connect fails.
"""
import ctypes
import mmap
import socket
import struct
import sys
import time

SYS_io_uring_setup = 425
SYS_io_uring_enter = 426
IORING_SETUP_SQPOLL = 1 << 1
IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_SQ_WAKEUP = 1 << 1
IORING_SQ_NEED_WAKEUP = 1 << 0
IORING_OP_CONNECT = 16
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class SqOffsets(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array", "resv1")] + \
               [("user_addr", ctypes.c_uint64)]


class CqOffsets(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags", "resv1")] + \
               [("user_addr", ctypes.c_uint64)]


class Params(ctypes.Structure):
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("sq_thread_cpu", ctypes.c_uint32), ("sq_thread_idle", ctypes.c_uint32),
                ("features", ctypes.c_uint32), ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", SqOffsets), ("cq_off", CqOffsets)]


def u32(buf, off):
    return struct.unpack_from("I", buf, off)[0]


def uring_connect(sock, host, port, sqpoll):
    params = Params()
    if sqpoll:
        params.flags = IORING_SETUP_SQPOLL
        params.sq_thread_idle = 1000
    fd = libc.syscall(SYS_io_uring_setup, 4, ctypes.byref(params))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    sq_size = params.sq_off.array + params.sq_entries * 4
    cq_size = params.cq_off.cqes + params.cq_entries * 16
    sq = mmap.mmap(fd, sq_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=IORING_OFF_SQ_RING)
    cq = mmap.mmap(fd, cq_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=IORING_OFF_CQ_RING)
    sqes = mmap.mmap(fd, params.sq_entries * 64, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                     offset=IORING_OFF_SQES)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # sa_family in host order, the rest in network order.
    if family == socket.AF_INET:
        addr = struct.pack("=H", family) + struct.pack("!H4s8x", port, socket.inet_pton(family, host))
    else:
        addr = struct.pack("=H", family) + struct.pack("!HI16sI", port, 0, socket.inet_pton(family, host), 0)
    addr_buf = ctypes.create_string_buffer(addr, len(addr))

    # One SQE: opcode, flags, ioprio, fd, off (= addrlen for connect), addr.
    sqe = struct.pack("BBHiQQIIQHHiQQ", IORING_OP_CONNECT, 0, 0, sock.fileno(), len(addr),
                      ctypes.addressof(addr_buf), 0, 0, 0x1234, 0, 0, 0, 0, 0)
    sqes[0:64] = sqe
    tail = u32(sq, params.sq_off.tail)
    mask = u32(sq, params.sq_off.ring_mask)
    struct.pack_into("I", sq, params.sq_off.array + (tail & mask) * 4, 0)
    struct.pack_into("I", sq, params.sq_off.tail, tail + 1)
    if sqpoll:
        if u32(sq, params.sq_off.flags) & IORING_SQ_NEED_WAKEUP:
            libc.syscall(SYS_io_uring_enter, fd, 0, 0, IORING_ENTER_SQ_WAKEUP, None, 0)
        submitted = 0
    else:
        submitted = 1
    deadline = time.monotonic() + 10
    while True:
        rc = libc.syscall(SYS_io_uring_enter, fd, submitted, 1, IORING_ENTER_GETEVENTS, None, 0)
        if rc < 0:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        submitted = 0
        head = u32(cq, params.cq_off.head)
        if head != u32(cq, params.cq_off.tail):
            cqe_off = params.cq_off.cqes + (head & u32(cq, params.cq_off.ring_mask)) * 16
            user_data, res, _flags = struct.unpack_from("QiI", cq, cqe_off)
            struct.pack_into("I", cq, params.cq_off.head, head + 1)
            assert user_data == 0x1234
            return res
        if time.monotonic() > deadline:
            raise TimeoutError("no io_uring completion within 10 s")


def main():
    args = sys.argv[1:]
    sqpoll = "--sqpoll" in args
    args = [a for a in args if a != "--sqpoll"]
    host, port, path = args[0], int(args[1]), args[2]
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    res = uring_connect(sock, host, port, sqpoll)
    if res < 0:
        print(f"ERR {-res}")
        return
    sock.settimeout(10)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.split(b"\r\n")[0].split()[1].decode() if data else "EOF")


if __name__ == "__main__":
    main()
