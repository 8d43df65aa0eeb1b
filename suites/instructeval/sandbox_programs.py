"""The two Python programs the HumanEval sandbox runs inside its namespaces: the wrapper that installs the
seccomp filter and runs the untrusted program (printing SANDBOX-READY first), and the probe that checks
the sandbox confines a program (its own pid and network namespaces, no host paths visible or writable, no
/proc, no capabilities, RLIMIT_NPROC set, no new user namespace)."""

from __future__ import annotations

WRAPPER = r'''
import builtins, os, sys, traceback
_write, _exit, _exec, _flush, _print_exc = os.write, os._exit, exec, sys.stdout.flush, traceback.print_exc


def _seccomp():
    """A seccomp filter (x86_64), installed before any untrusted code and never removable: namespaces,
    mounts, ptrace, keyrings, bpf, perf, userfaultfd, io_uring, modules and kexec are refused (EPERM)."""
    import ctypes, struct
    if os.uname().machine != "x86_64":
        return "no seccomp filter on " + os.uname().machine
    deny = (272, 308, 165, 166, 155, 161, 101, 310, 311, 248, 249, 250, 321, 298, 323, 425, 426, 427, 175, 313,
            176, 246, 320, 303, 304, 428, 429, 430, 431, 432, 433, 442, 163, 167, 168, 169, 134, 139, 156)
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38, 0x80000000
    code = [(0x20, 0, 0, 4), (0x15, 1, 0, 0xC000003E), (0x06, 0, 0, kill), (0x20, 0, 0, 0),
            (0x35, 0, 1, 0x40000000), (0x06, 0, 0, eperm), (0x15, 0, 1, 435), (0x06, 0, 0, enosys)]
    for nr in deny:
        code += [(0x15, 0, 1, nr), (0x06, 0, 0, eperm)]
    # clone (56) with a CLONE_NEW* flag: no new namespaces from inside
    code += [(0x15, 0, 3, 56), (0x20, 0, 0, 16), (0x45, 0, 1, 0x7E020080), (0x06, 0, 0, eperm), (0x06, 0, 0, allow)]
    program = b"".join(struct.pack("HBBI", *c) for c in code)
    buffer = ctypes.create_string_buffer(program)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Prog(len(code), ctypes.addressof(buffer))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
        _write(1, b"sandbox setup failed: seccomp: errno %d\n" % ctypes.get_errno())
        _exit(125)
    return ""


_seccomp()
_write(1, b"SANDBOX-READY\n")


def _run():
    nonce = b""
    while not nonce.endswith(b"\n"):
        chunk = os.read(0, 64)
        if not chunk:
            _exit(3)
        nonce += chunk
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sources = []
    for name in ("program.py", "check.py"):
        with open("/sandbox/" + name, encoding="utf-8") as fh:
            sources.append(compile(fh.read(), name, "exec"))
    program, check = sources
    # the program runs as __main__ with its own globals: `import __main__` never reaches this wrapper
    module = type(sys)("__main__")
    sys.modules["__main__"] = module
    saved_builtins = dict(builtins.__dict__)
    try:
        _exec(program, module.__dict__)
        # what the program replaced (abs, len, isinstance, print...) must not decide the check
        sys.settrace(None)
        sys.setprofile(None)
        builtins.__dict__.clear()
        builtins.__dict__.update(saved_builtins)
        _exec(check, module.__dict__)
        _flush()
    except BaseException:  # SystemExit and KeyboardInterrupt raised by the program are failures too
        _print_exc()
        _flush()
        _exit(1)
    _write(1, b"\nSANDBOX-PASS " + nonce)
    _exit(0)


_run()
'''

PROBE_PROGRAM = r'''
import os, socket, resource
problems = []
if os.getppid() != 1:
    problems.append(f"parent pid {os.getppid()}: not in a new pid namespace")
names = [name for _, name in socket.if_nameindex()]
if names != ["lo"]:
    problems.append(f"network interfaces {names}: not in an empty network namespace")
for path in ("/", "/usr", "/sandbox", "/dev"):
    try:
        open(os.path.join(path, "probe"), "w").close()
        problems.append(f"{path} is writable")
    except OSError:
        pass
open("/tmp/probe", "w").close()
for path in ("/etc/passwd", "/home", "/work", "/sys", "/.old", HOST_PATH):
    if os.path.exists(path):
        problems.append(f"{path} is visible")
if os.listdir("/proc"):
    problems.append("/proc is mounted")
try:
    os.setgroups([])
    problems.append("the program holds CAP_SETGID")
except PermissionError:
    pass
try:
    os.chroot("/tmp")
    problems.append("the program holds CAP_SYS_CHROOT")
except PermissionError:
    pass
if resource.getrlimit(resource.RLIMIT_NPROC)[0] == resource.RLIM_INFINITY:
    problems.append("RLIMIT_NPROC is not set")
if os.uname().machine == "x86_64":
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0:
        problems.append("the program can create a user namespace (no seccomp filter)")
if problems:
    raise SystemExit("; ".join(problems))
'''
