"""Raw syscalls the container-mode red-team tests try from inside a job
(and that the privileged test helper uses): bpf(), pidfd_getfd, ptrace.
Each returns (result, errno name or None); nothing raises."""
import ctypes
import errno
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS_BPF = 321
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
SYS_PTRACE = 101

BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_LOAD = 5
BPF_PROG_DETACH = 9
BPF_MAP_GET_NEXT_ID = 12
BPF_MAP_GET_FD_BY_ID = 14
BPF_NOEXIST = 1
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_CONNECT = 10
PTRACE_ATTACH = 16

# enum pf_exempt_mark (bpf/include/pinfold_abi.h)
PF_EXEMPT_CONNECT = 1
PF_EXEMPT_REPLY = 2


def _name(e):
    return errno.errorcode.get(e, str(e))


def _syscall(*args):
    r = _libc.syscall(*args)
    return (r, None) if r >= 0 else (r, _name(ctypes.get_errno()))


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr.ljust(144, b"\0"), 144)
    return _syscall(SYS_BPF, cmd, buf, 144)


def map_next_id(start=0):
    buf = ctypes.create_string_buffer(struct.pack("<II", start, 0).ljust(144, b"\0"), 144)
    r = _syscall(SYS_BPF, BPF_MAP_GET_NEXT_ID, buf, 144)
    return (struct.unpack_from("<I", buf.raw, 4)[0] if r[0] == 0 else r[0]), r[1]


def map_fd_by_id(map_id):
    return bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("<I", map_id))


def mark_socket(map_fd, sock_fd, mark):
    """BPF_MAP_UPDATE_ELEM on a socket-storage map, key = the socket's fd."""
    key = ctypes.c_int(sock_fd)
    value = ctypes.c_uint64(mark)
    attr = struct.pack("<I4xQQQ", map_fd, ctypes.addressof(key), ctypes.addressof(value), BPF_NOEXIST)
    return bpf(BPF_MAP_UPDATE_ELEM, attr)


def load_connect4_program():
    """A cgroup/connect4 program (r0 = 1; exit): what a job with CAP_BPF
    could attach after pinfold's to undo its rewrite."""
    insns = (struct.pack("<BBhi", 0xb7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0))
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, 2, ctypes.addressof(code),
                       ctypes.addressof(license_), 0, 0, 0, 0, 0)
    # expected_attach_type sits at offset 68 of union bpf_attr (prog load).
    attr = attr.ljust(68, b"\0") + struct.pack("<I", BPF_CGROUP_INET4_CONNECT)
    return bpf(BPF_PROG_LOAD, attr)


def prog_detach(cgroup_fd, attach_type, prog_fd=0):
    """BPF_PROG_DETACH: what a job would try on the cgroup's link-less
    attachments (multi-attached programs need the program's fd)."""
    return bpf(BPF_PROG_DETACH, struct.pack("<IIII", cgroup_fd, prog_fd, attach_type, 0))


def pidfd_open(pid):
    return _syscall(SYS_PIDFD_OPEN, pid, 0)


def pidfd_getfd(pidfd, target_fd):
    return _syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)


def ptrace_attach(pid):
    return _syscall(SYS_PTRACE, PTRACE_ATTACH, pid, None, None)


def disconnect(sock):
    """connect(AF_UNSPEC): a TCP socket drops its peer and may connect again."""
    addr = ctypes.create_string_buffer(16)
    return _syscall(42, sock.fileno(), addr, 16)  # SYS_connect
