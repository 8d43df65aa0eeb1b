"""Run untrusted generated code (HumanEval completions) isolated by the kernel, not by the interpreter.

Only ever called after the user opted in (``--suite-opt allow_code_execution=true``). Nothing inside the
untrusted interpreter is relied on for isolation: each program runs as

    unshare --pid --mount --net --ipc --uts --fork  (pid 1: a root shell that builds the view below)
      prlimit (CPU, address space, processes, file size, open files, no core)
        setpriv (an unused uid/gid, no groups, no capabilities, no_new_privs)  [or, when the harness is
                 not root, uid 0 of a new user namespace with every capability dropped]
          python -I -S -B /sandbox/wrapper.py

in a filesystem of its own (``pivot_root`` onto a read-only tmpfs): ``/usr``, the top-level library
links and the Python installation bound read-only, four device nodes, a size-capped tmpfs ``/tmp`` (the
only writable place, gone when the namespace dies), and nothing else: no ``/root``, ``/home``, ``/work``,
results folder, ``/proc``, ``/sys`` or ``/etc``. The network namespace has only a down loopback; the pid
namespace hides every host process, and when its pid 1 dies (at the timeout the harness SIGKILLs it)
the kernel kills every process left inside, ``setsid`` or not. Output is read with a cap; a program that
writes more is killed. On x86_64 a seccomp filter (installed by the wrapper before any untrusted code,
irremovable) also refuses new namespaces, mounts, ptrace, keyrings, bpf, perf, userfaultfd, io_uring,
module loading and the x32 ABI.

A pass needs the test code itself to finish: the wrapper runs the program, restores the builtins the
program may have replaced, runs the check, and only then prints a marker with a random per-run nonce
that is never written to any file (it arrives on stdin, read before the untrusted code starts). So
``os._exit(0)``, ``sys.exit()``, ``SystemExit`` raised in ``check`` or a crash before the tests all
score failed. The nonce lives in the interpreter's memory: code written to attack this wrapper (walking
interpreter frames) could still find it; the marker is there to stop early exits, the kernel isolation
is what protects the machine.

When the kernel features or tools are missing, nothing runs: ``require_sandbox`` (called at plan time
and by every ``run_untrusted``) raises ``SandboxUnavailable`` after a probe run checked, from inside,
that the isolation really holds.
"""

from __future__ import annotations

import math
import os
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.errors import HarnessError
from suites.instructeval.sandbox_programs import PROBE_PROGRAM, WRAPPER

TOOLS = ("unshare", "prlimit", "setpriv", "mount", "umount", "pivot_root", "sh", "cp", "mkdir", "rmdir", "touch", "ln")
READY = b"SANDBOX-READY\n"  # printed by the wrapper before any untrusted code runs
PASS_MARK = b"SANDBOX-PASS "
SETUP_FAILED = "sandbox setup failed"
# Sandboxed processes run as a uid nobody else has (root mode); a random one per run, so two sandboxes
# running at once never share an RLIMIT_NPROC count.
UID_BASE, UID_SPAN = 1_500_000_000, 500_000_000


class SandboxUnavailable(HarnessError):
    """The kernel features or tools the sandbox needs are missing: generated code is not run at all."""


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock; the whole process tree is killed
    cpu_s: int = 10
    memory_mb: int = 1024  # address space of each process; Python itself needs ~100 MB
    file_mb: int = 16  # largest file
    tmp_mb: int = 64  # the whole writable /tmp
    processes: int = 16  # RLIMIT_NPROC (threads count too) of the sandbox uid
    open_files: int = 64
    output_kb: int = 1024  # stdout + stderr; more kills the program

    def __post_init__(self) -> None:
        fields = (self.timeout_s, self.cpu_s, self.memory_mb, self.file_mb, self.tmp_mb, self.processes,
                  self.open_files, self.output_kb)
        if (not all(_finite(v) for v in fields) or self.timeout_s <= 0 or self.cpu_s < 1 or self.memory_mb < 64
                or self.file_mb < 1 or self.tmp_mb < 1 or self.processes < 1 or self.open_files < 16
                or self.output_kb < 1):
            raise HarnessError(
                f"sandbox limits must be finite and positive (memory at least 64 MB, open files at least 16), "
                f"got {self}"
            )


@dataclass(frozen=True)
class SandboxResult:
    status: str  # "passed" (the check finished) | "failed" | "timeout"
    returncode: int | None
    output_tail: str  # the last part of stdout/stderr, for the record (markers removed)
    reason: str = ""  # why it failed, when the harness knows (output limit, early exit...)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxPlan:
    """What the sandbox needs on this machine: resolved tools, how privileges are dropped, what is shown."""

    tools: dict[str, str]
    root_mode: bool  # True: switch to an unused uid; False: a user namespace (the harness is not root)
    python: str
    read_only: tuple[str, ...]  # directories bound read-only
    links: tuple[tuple[str, str], ...]  # top-level symlinks recreated (e.g. /lib -> usr/lib)
    files: tuple[str, ...]  # single files bound read-only


def _python_and_paths() -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The base interpreter (``-S``: no site-packages needed) and the directories it needs."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    dirs: list[str] = ["/usr"]
    links: list[tuple[str, str]] = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            links.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            dirs.append(top)
    for extra in (os.path.realpath(sys.base_prefix), os.path.dirname(python)):
        if not any(extra == d or extra.startswith(d + "/") for d in dirs):
            dirs.append(extra)
    return python, tuple(dirs), tuple(links)


def build_plan(which: Callable[[str], str | None] = shutil.which, platform: str = sys.platform) -> SandboxPlan:
    """Resolve what the sandbox needs; SandboxUnavailable naming what is missing."""
    if not platform.startswith("linux"):
        raise SandboxUnavailable(f"refusing to run generated code: the sandbox needs Linux namespaces, this is {platform}")
    tools: dict[str, str] = {}
    missing = []
    for name in TOOLS:
        path = which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
        if path is None or not os.path.isabs(path) or not os.access(path, os.X_OK):
            missing.append(name)
        else:
            tools[name] = path
    if missing:
        raise SandboxUnavailable(
            f"refusing to run generated code: the sandbox needs {', '.join(missing)} (util-linux, coreutils) on PATH")
    python, dirs, links = _python_and_paths()
    files = tuple(f for f in ("/etc/ld.so.cache",) if os.path.isfile(f))
    return SandboxPlan(tools=tools, root_mode=os.geteuid() == 0, python=python, read_only=dirs, links=links,
                       files=files)


def _setup_script(plan: SandboxPlan, limits: SandboxLimits, inputs: Path, root: Path, uid: int) -> str:
    """The shell that pid 1 of the new namespaces runs (as root there) before dropping privileges."""
    t = {k: shlex.quote(v) for k, v in plan.tools.items()}
    q = shlex.quote
    lines = [
        "set -u",
        f'fail() {{ echo "{SETUP_FAILED}: $*"; exit 125; }}',
        f"R={q(str(root))}",
        f'{t["mount"]} --make-rprivate / || fail "making / private"',
        f'{t["mount"]} -t tmpfs -o size=4m,mode=755,nosuid,nodev tmpfs "$R" || fail "tmpfs root"',
    ]
    for d in plan.read_only:
        lines.append(
            f'{t["mkdir"]} -p "$R"{q(d)} && {t["mount"]} --bind {q(d)} "$R"{q(d)} && '
            f'{t["mount"]} -o remount,bind,ro,nosuid,nodev "$R"{q(d)} || fail "read-only bind of {d}"')
    for f in plan.files:
        lines.append(
            f'{t["mkdir"]} -p "$R"{q(os.path.dirname(f))} && {t["touch"]} "$R"{q(f)} && {t["mount"]} --bind {q(f)} "$R"{q(f)} && '
            f'{t["mount"]} -o remount,bind,ro,nosuid,nodev "$R"{q(f)} || fail "read-only bind of {f}"')
    for link, target in plan.links:
        lines.append(f'{t["ln"]} -s {q(target)} "$R"{q(link)} || fail "link {link}"')
    owner = f",uid={uid},gid={uid}" if plan.root_mode else ""
    inodes = max(64, limits.tmp_mb * 16)
    lines += [
        f'{t["mkdir"]} "$R/dev" && {t["mount"]} -t tmpfs -o size=64k,mode=755,nosuid,nodev,noexec tmpfs "$R/dev" || fail "/dev"',
        f'for d in null zero random urandom; do {t["touch"]} "$R/dev/$d" && {t["mount"]} --bind "/dev/$d" "$R/dev/$d" '
        f'|| fail "/dev/$d"; done',
        f'{t["mount"]} -o remount,bind,ro,nosuid,nodev,noexec "$R/dev" || fail "read-only /dev"',
        f'{t["mkdir"]} "$R/tmp" && {t["mount"]} -t tmpfs -o size={limits.tmp_mb}m,nr_inodes={inodes},mode=700{owner},'
        f'nosuid,nodev tmpfs "$R/tmp" || fail "/tmp"',
        f'{t["mkdir"]} "$R/sandbox" && {t["cp"]} {q(str(inputs))}/wrapper.py {q(str(inputs))}/program.py '
        f'{q(str(inputs))}/check.py "$R/sandbox/" || fail "copying the program"',
        # umount reads /proc/self/mountinfo: a proc of the new pid namespace, unmounted again before the
        # program starts (an empty /proc directory stays)
        f'{t["mkdir"]} "$R/.old" "$R/proc" && {t["mount"]} -t proc -o nosuid,nodev,noexec proc "$R/proc" || fail "/proc"',
        f'cd "$R" && {t["pivot_root"]} . .old && cd / && {t["umount"]} -l /.old && {t["rmdir"]} /.old || fail "pivot_root"',
        f'{t["mount"]} -o remount,bind,ro,nosuid,nodev / && {t["umount"]} -l /proc || fail "read-only root"',
    ]
    mb = 1024 * 1024
    rlimits = (f"--cpu={limits.cpu_s}:{limits.cpu_s + 1} --as={limits.memory_mb * mb} --fsize={limits.file_mb * mb} "
               f"--nproc={limits.processes} --nofile={limits.open_files} --core=0 --memlock=0 --msgqueue=0")
    privs = ("--inh-caps=-all --bounding-set=-all --no-new-privs "
             + (f"--reuid={uid} --regid={uid} --clear-groups" if plan.root_mode else "--ambient-caps=-all"))
    # not exec: this shell stays pid 1 (root, never setsid) so that killing it kills the namespace
    lines += [
        f'cd /tmp && {t["prlimit"]} {rlimits} -- {t["setpriv"]} {privs} -- {q(plan.python)} -I -S -B /sandbox/wrapper.py',
        "exit $?",
    ]
    return "\n".join(lines) + "\n"


def _command(plan: SandboxPlan, script: str) -> list[str]:
    user = [] if plan.root_mode else ["--user", "--map-root-user"]
    return [plan.tools["unshare"], *user, "--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc", "--uts",
            "--", plan.tools["sh"], "-c", script]


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group: unshare and the namespace's pid 1, whose death kills everything inside."""
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _read_capped(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, str]:
    """Everything the program writes, up to ``cap`` bytes, until it ends or the deadline; 'timeout' or
    'output' when it had to be killed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    stopped = ""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and not stopped:
                stopped = "timeout"
                _kill(proc)
                deadline = time.monotonic() + 10  # the namespace dies at once; never wait for ever
                continue
            if left <= 0:
                break
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if len(out) + len(chunk) > cap:
                if not stopped:
                    stopped = "output"
                    _kill(proc)
                    deadline = time.monotonic() + 10
                continue  # drain what is left without keeping it
            out += chunk
    return bytes(out), stopped


def _tail(out: bytes, limit: int = 600) -> str:
    return out[-limit:].decode("utf-8", errors="replace")


def exit_reason(code: int) -> str:
    """The shell's status of the program: 128 + N means killed by signal N (SIGXCPU: the CPU limit)."""
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            return f"exit code {code}"
        return f"killed by {name}" + (" (CPU limit)" if name == "SIGXCPU" else "")
    return f"exit code {code}"


def _execute(plan: SandboxPlan, program: str, check: str, limits: SandboxLimits) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    uid = UID_BASE + secrets.randbelow(UID_SPAN)
    tmp = Path(tempfile.mkdtemp(prefix="harness-sandbox-"))
    try:
        inputs, root = tmp / "in", tmp / "root"
        inputs.mkdir()
        root.mkdir()
        (inputs / "wrapper.py").write_text(WRAPPER, encoding="utf-8")
        (inputs / "program.py").write_text(program, encoding="utf-8")
        (inputs / "check.py").write_text(check, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            _command(plan, _setup_script(plan, limits, inputs, root, uid)), cwd=tmp, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(nonce + b"\n")
                proc.stdin.close()
            except BrokenPipeError:
                pass
            out, stopped = _read_capped(proc, time.monotonic() + limits.timeout_s, limits.output_kb * 1024)
        finally:
            _kill(proc)  # nothing may outlive the call, whatever happened above
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not out.startswith(READY) and not stopped:
        raise SandboxUnavailable(f"refusing to run generated code: {_tail(out).strip() or 'the sandbox did not start'}")
    body = out[len(READY):] if out.startswith(READY) else out
    marker = b"\n" + PASS_MARK + nonce + b"\n"
    if stopped == "timeout":
        return SandboxResult("timeout", None, _tail(body), f"still running after {limits.timeout_s:g}s")
    if stopped == "output":
        return SandboxResult("failed", None, _tail(body), f"wrote more than {limits.output_kb} KiB")
    if proc.returncode == 0 and body.endswith(marker):
        return SandboxResult("passed", 0, _tail(body[: -len(marker)]))
    reason = "exited before the check finished" if proc.returncode == 0 else exit_reason(proc.returncode)
    return SandboxResult("failed", proc.returncode, _tail(body), reason)


@lru_cache(maxsize=1)
def require_sandbox() -> SandboxPlan:
    """The plan, once a probe run proved from inside that the isolation holds; SandboxUnavailable if not."""
    return probe(build_plan())


def probe(plan: SandboxPlan) -> SandboxPlan:
    try:
        # the harness's own source folder (the suites package) must be out of sight too
        program = PROBE_PROGRAM.replace("HOST_PATH", repr(str(Path(__file__).resolve().parents[1])))
        result = _execute(plan, program, "", SandboxLimits(timeout_s=30, cpu_s=10))
    except OSError as exc:
        raise SandboxUnavailable(f"refusing to run generated code: the sandbox could not start ({exc})") from None
    if not result.passed:
        detail = result.output_tail.strip().splitlines()[-1:] or [result.reason]
        raise SandboxUnavailable(f"refusing to run generated code: the sandbox's isolation check failed ({detail[0]})")
    return plan


def run_untrusted(program: str, limits: SandboxLimits | None = None, check: str = "") -> SandboxResult:
    """Run ``program`` (untrusted Python source), then ``check`` (the trusted tests) in the same namespace.
    Passed only when ``check`` ran to its end; SandboxUnavailable (nothing runs) without kernel isolation."""
    return _execute(require_sandbox(), program, check, limits or SandboxLimits())
