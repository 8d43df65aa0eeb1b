"""The sandbox for generated code: every escape is stopped by the kernel, every fake pass is scored failed,
honest programs pass, and without kernel isolation nothing runs at all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness.errors import HarnessError
from suites.instructeval import sandbox
from suites.instructeval.sandbox import SandboxLimits, SandboxUnavailable, run_untrusted

FAST = SandboxLimits(timeout_s=5.0, cpu_s=5, memory_mb=512)
# a HumanEval-shaped check: the tests of `add`, then the call
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n\ncheck(add)\n"
RIGHT = "def add(a, b):\n    return a + b\n"


def sandbox_processes() -> list[int]:
    """Host pids still running as a sandbox uid (there must never be any once run_untrusted returned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid_line = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if sandbox.UID_BASE <= int(uid_line.split()[1]) < sandbox.UID_BASE + sandbox.UID_SPAN:
            found.append(int(entry.name))
    return found


def sandbox_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("harness-sandbox-*")}


@pytest.fixture(autouse=True)
def nothing_left_behind():
    folders = sandbox_folders()
    yield
    assert sandbox_processes() == []
    assert sandbox_folders() <= folders


# ---- honest programs ------------------------------------------------------------------------------


def test_correct_program_passes_and_wrong_one_fails():
    assert run_untrusted(RIGHT, FAST, check=CHECK).passed
    assert run_untrusted("def f(x):\n    return x + 1\nassert f(1) == 2\n", FAST).passed
    result = run_untrusted("def add(a, b):\n    return a - b\n", FAST, check=CHECK)
    assert result.status == "failed" and "AssertionError" in result.output_tail
    result = run_untrusted("assert 1 + 1 == 3\n", FAST)
    assert result.status == "failed" and "AssertionError" in result.output_tail


def test_writing_inside_tmp_is_allowed_and_thrown_away():
    name = f"scratch-{uuid.uuid4().hex}.txt"
    program = f"open('/tmp/{name}', 'w').write('ok')\nprint(open('/tmp/{name}').read())\n"
    result = run_untrusted(program, FAST)
    assert result.passed and "ok" in result.output_tail
    assert not (Path(tempfile.gettempdir()) / name).exists()  # that /tmp was the sandbox's own
    assert run_untrusted(f"import os\nassert not os.path.exists('/tmp/{name}')\n", FAST).passed


# ---- a pass must come from the check -----------------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "raise SystemExit(0)\n",
        "quit()\n",
        "def add(a, b):\n    raise SystemExit(0)\n",  # raised inside check()
        "def add(a, b):\n    import os\n    os._exit(0)\n",  # exits from inside check()
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0\n",
        "import builtins\nbuiltins.abs = lambda x: 0\ndef add(a, b):\n    return a + b if isinstance(a, int) else 9\n",
        "import sys\nsys.settrace(lambda *a: None)\ndef add(a, b):\n    return 0\n",
        "import threading, os\nthreading.Timer(0.01, lambda: os._exit(0)).start()\ndef add(a, b):\n    import time\n"
        "    time.sleep(1)\n    return 0\n",
        # a forged marker: the nonce is in no file the program can read, and it is random per run
        "import os, sys\nfor f in os.listdir('/sandbox'):\n    print(open('/sandbox/' + f).read())\n"
        "print('\\nSANDBOX-PASS ' + '0' * 32)\nsys.stdout.flush()\nos._exit(0)\n",
        "import os\nos.write(1, b'\\nSANDBOX-PASS ' + os.read(0, 64))\nos._exit(0)\n",  # stdin is /dev/null by now
        "import __main__\nprint(sorted(vars(__main__)))\nos = __import__('os')\nos._exit(0)\n",
    ],
)
def test_a_completion_that_does_not_let_the_check_finish_fails(completion):
    result = run_untrusted(completion, FAST, check=CHECK)
    assert result.status == "failed", result


# ---- the filesystem ----------------------------------------------------------------------------------


@pytest.fixture
def outside():
    """A host folder outside /tmp (inside the sandbox /tmp is its own tmpfs, so a /tmp path proves little)."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path.home()
    folder = Path(tempfile.mkdtemp(prefix="sandbox-target-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    "attempt",
    [
        "open(TARGET, 'w').write('x')",
        "import os\nos.chdir(os.path.dirname(TARGET))\nopen(os.path.basename(TARGET), 'w').write('x')",
        "import os\nfd = os.open(os.path.dirname(TARGET), os.O_RDONLY)\n"
        "os.close(os.open(os.path.basename(TARGET), os.O_CREAT | os.O_WRONLY, dir_fd=fd))",
        "import os.path\nos.path.realpath = lambda p, **k: '/tmp/x'\nopen(TARGET, 'w').write('x')",
        "import __main__\ntry:\n    __main__.BLOCKED.clear()\nexcept AttributeError:\n    pass\n"
        "import subprocess\nsubprocess.run(['touch', TARGET], check=True)",
        "import os\nassert os.system('touch ' + TARGET) == 0",
        "import _posixsubprocess, os\n"
        "r, w = os.pipe()\n"
        "pid = _posixsubprocess.fork_exec([b'/usr/bin/touch', TARGET.encode()], [b'/usr/bin/touch'], True, (), None, None,"
        " -1, -1, -1, -1, -1, -1, r, w, True, False, None, None, None, -1, None, False)\n"
        "os.waitpid(pid, 0)\nassert os.path.exists(TARGET)",
        "import ctypes\nassert ctypes.CDLL(None).system(('touch ' + TARGET).encode()) == 0",
        "import os\nos.symlink(TARGET, '/tmp/link')\nopen('/tmp/link', 'w').write('x')",
        "import os\nos.makedirs(os.path.dirname(TARGET), exist_ok=True)\nopen(TARGET, 'w').write('x')",
        "import shutil\nshutil.copy('/sandbox/program.py', TARGET)",
        "import os\nos.chmod('/tmp', 0o777)\nos.rename('/tmp', TARGET)",
        "open('/usr/escaped', 'w').write('x')",
        "import os\nos.mkdir('/escaped')",
        "open('/dev/escaped', 'w').write('x')",
    ],
)
def test_writing_outside_the_sandbox_is_impossible(outside, tmp_path, attempt):
    for folder in (outside, tmp_path):
        target = folder / f"escaped-{uuid.uuid4().hex}"
        result = run_untrusted(f"TARGET = {str(target)!r}\n{attempt}\n", FAST)
        assert list(folder.iterdir()) == []
        if folder == outside:  # a /tmp path may land in the sandbox's own /tmp, which is allowed
            assert not result.passed, result
    assert not Path("/usr/escaped").exists() and not Path("/escaped").exists()


def test_host_files_can_be_neither_read_nor_deleted(tmp_path):
    results = tmp_path / "results" / "glue" / "sst2"
    results.mkdir(parents=True)
    record = results / "lora-seed42.json"
    secret = f"secret-{uuid.uuid4().hex}"
    record.write_text(secret)
    record.chmod(0o644)
    for attempt in (f"print(open({str(record)!r}).read())", f"import os\nos.remove({str(record)!r})",
                    f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                    "import os\nprint(os.listdir('/home'), open('/etc/passwd').read())",
                    f"print(open({str(Path(sandbox.__file__).resolve())!r}).read())"):
        result = run_untrusted(attempt, FAST)
        assert not result.passed and secret not in result.output_tail
    assert record.read_text() == secret
    # the only thing visible under the harness's home is the path down to the Python installation
    home = Path.home()
    result = run_untrusted(f"import os\nfor d, subdirs, files in os.walk({str(home)!r}):\n    print(d)\n"
                           f"    if d.count('/') > {str(home).count('/') + 1}: break\n", FAST)
    assert result.passed
    prefix = os.path.realpath(sys.base_prefix)
    for line in result.output_tail.split():
        assert prefix.startswith(line) or line.startswith(prefix), line


def test_filling_the_disk_and_huge_files_are_stopped():
    many = "for i in range(1000):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * 1024 * 1024)\n"  # 1 GB > tmp_mb
    result = run_untrusted(many, FAST)
    assert result.status == "failed" and "No space left" in result.output_tail
    big = "open('/tmp/big', 'wb').write(b'x' * 64 * 1024 * 1024)\n"  # > file_mb
    assert run_untrusted(big, SandboxLimits(timeout_s=5, tmp_mb=256, file_mb=16)).status == "failed"


# ---- processes, network, resources ----------------------------------------------------------------------


def test_the_process_tree_is_killed_at_the_timeout():
    t0 = time.monotonic()
    result = run_untrusted("while True:\n    pass\n", SandboxLimits(timeout_s=1.5, cpu_s=5))
    assert result.status == "timeout" and not result.passed
    assert time.monotonic() - t0 < 6


@pytest.mark.parametrize(
    "program",
    [
        # a daemon that left the session and keeps stdout open: it used to block run_untrusted for ever
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n",
        "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)\n",
    ],
)
def test_children_that_setsid_die_with_the_sandbox(program):
    t0 = time.monotonic()
    run_untrusted(program, SandboxLimits(timeout_s=3, cpu_s=5))
    assert time.monotonic() - t0 < 8
    # (the autouse fixture checks that no sandbox process is left)


def test_fork_bomb_is_capped_by_rlimit_nproc():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    result = run_untrusted(bomb, SandboxLimits(timeout_s=3, cpu_s=5, processes=8))
    assert not result.passed and time.monotonic() - t0 < 10
    count = ("import subprocess\nn = 0\nfor _ in range(50):\n    try:\n        subprocess.Popen(['sleep', '30'])\n"
             "        n += 1\n    except OSError:\n        break\nprint('started', n)\n")
    result = run_untrusted(count, SandboxLimits(timeout_s=5, cpu_s=5, processes=8))
    started = int(result.output_tail.split("started")[-1].split()[0])
    assert started < 8


def test_the_harness_and_other_processes_cannot_be_killed():
    victim = subprocess.Popen(["sleep", "60"])
    try:
        for attempt in (f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)",
                        f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)",
                        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                        "import os, signal\nos.kill(-1, signal.SIGKILL)\nimport time\ntime.sleep(1)",
                        f"import os, signal\nos.killpg({os.getpgid(0)}, signal.SIGKILL)"):
            assert not run_untrusted(attempt, FAST).passed
            assert victim.poll() is None
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_network_is_unreachable_even_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    port = server.getsockname()[1]
    connected: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connected.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        for attempt in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
                        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
                        f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}', timeout=1)",
                        "import socket\nsocket.getaddrinfo('example.com', 80)",
                        f"import subprocess\nsubprocess.run(['bash', '-c', 'echo x > /dev/tcp/127.0.0.1/{port}'], "
                        "check=True)"):
            assert run_untrusted(attempt, FAST).status == "failed"
    finally:
        stop.set()
        thread.join()
        server.close()
    assert connected == []


def test_memory_cpu_and_open_file_limits():
    result = run_untrusted("x = bytearray(2 * 1024 ** 3)\n", FAST)
    assert result.status == "failed" and "MemoryError" in result.output_tail
    result = run_untrusted("while True:\n    pass\n", SandboxLimits(timeout_s=20, cpu_s=1))
    assert result.status == "failed" and result.reason == "killed by SIGXCPU (CPU limit)"  # before the wall clock
    files = "fs = [open('/dev/null') for _ in range(1000)]\n"
    result = run_untrusted(files, FAST)
    assert result.status == "failed" and "Too many open files" in result.output_tail


def test_huge_output_is_capped_and_kills_the_program():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    result = run_untrusted("import sys\nfor _ in range(1536 * 16):\n    sys.stdout.write('x' * 65536)\n",
                           SandboxLimits(timeout_s=30, cpu_s=30, output_kb=1024))
    assert result.status == "failed" and "KiB" in result.reason
    assert len(result.output_tail) <= 600 and time.monotonic() - t0 < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: far below 1.5 GB


def test_the_environment_is_not_inherited(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    result = run_untrusted("import os\nprint(sorted(os.environ.items()))\nprint(os.getgroups())\nprint(os.getuid())\n",
                           FAST)
    assert result.passed and "hf_secret_token" not in result.output_tail
    lines = result.output_tail.strip().splitlines()
    if os.geteuid() == 0:  # root harness: the program runs as an unused uid with no groups
        assert sandbox.UID_BASE <= int(lines[-1]) < sandbox.UID_BASE + sandbox.UID_SPAN and lines[-2] == "[]"


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the seccomp filter is x86_64 only")
@pytest.mark.parametrize(
    "attempt",
    [
        "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0",  # a user namespace of its own
        "import ctypes\nassert ctypes.CDLL(None).unshare(0x00020000) == 0",
        "import subprocess\nsubprocess.run(['unshare', '-U', '-r', 'true'], check=True)",
        "import ctypes\nassert ctypes.CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0",
        "import ctypes\nassert ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0",  # PTRACE_ATTACH to pid 1
        "import ctypes\nassert ctypes.CDLL(None).syscall(321, 0, 0, 0) >= 0",  # bpf
        "import ctypes\nassert ctypes.CDLL(None).syscall(323, 0) >= 0",  # userfaultfd
        "import ctypes\nassert ctypes.CDLL(None).syscall(425, 1, 0) >= 0",  # io_uring_setup
        "import ctypes\nassert ctypes.CDLL(None).syscall(0x40000000 + 39) >= 0",  # x32 getpid
    ],
)
def test_dangerous_system_calls_are_refused_by_seccomp(attempt):
    assert run_untrusted(attempt, FAST).status == "failed"


def test_ordinary_processes_and_threads_still_work():
    program = ("import os, subprocess, threading\npid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
               "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7\n"
               "assert subprocess.run(['echo', 'hi'], capture_output=True).stdout == b'hi\\n'\n"
               "t = threading.Thread(target=print, args=('thread',))\nt.start()\nt.join()\n")
    result = run_untrusted(program, FAST)
    assert result.passed, result


# ---- refusing to run without kernel isolation ----------------------------------------------------------


@pytest.fixture
def fresh_probe():
    sandbox.require_sandbox.cache_clear()
    yield
    sandbox.require_sandbox.cache_clear()


def test_missing_tools_or_platform_refuse(fresh_probe, monkeypatch, tmp_path):
    with pytest.raises(SandboxUnavailable, match="needs setpriv"):
        sandbox.build_plan(which=lambda name: None if name == "setpriv" else shutil.which(name))
    with pytest.raises(SandboxUnavailable, match="needs Linux namespaces"):
        sandbox.build_plan(platform="darwin")
    ran = tmp_path / "ran"

    build_plan = sandbox.build_plan

    def no_setpriv() -> sandbox.SandboxPlan:
        return build_plan(which=lambda name: None if name == "setpriv" else shutil.which(name))

    monkeypatch.setattr(sandbox, "build_plan", no_setpriv)
    with pytest.raises(SandboxUnavailable, match="needs setpriv"):
        run_untrusted(f"open({str(ran)!r}, 'w')", FAST)
    assert not ran.exists()


def test_a_kernel_without_namespaces_refuses(fresh_probe, tmp_path):
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    plan = sandbox.build_plan(which=lambda name: str(fake) if name == "unshare" else shutil.which(name))
    with pytest.raises(SandboxUnavailable, match="Operation not permitted"):
        sandbox.probe(plan)


def test_a_weak_sandbox_fails_the_probe(fresh_probe):
    """A view that shows the harness's folders (here: its source) is refused, not used."""
    plan = sandbox.build_plan()
    leaky = sandbox.SandboxPlan(**{**plan.__dict__, "read_only": (*plan.read_only, str(Path(sandbox.__file__).parent))})
    with pytest.raises(SandboxUnavailable, match="is visible"):
        sandbox.probe(leaky)
    assert sandbox.probe(plan) is plan


def test_instructeval_refuses_humaneval_at_plan_time_without_the_sandbox(fresh_probe, monkeypatch):
    from suites.instructeval import suite as instructeval

    def unavailable():
        raise SandboxUnavailable("refusing to run generated code: the sandbox needs setpriv")

    monkeypatch.setattr(instructeval, "require_sandbox", unavailable)
    suite = instructeval.InstructEval()
    with pytest.raises(SandboxUnavailable, match="needs setpriv"):
        suite.preflight({"allow_code_execution": "true"}, "cpu", "smollm2-135m")
    suite.preflight({}, "cpu", "smollm2-135m")  # without the opt-in no code runs: nothing to refuse


def test_limits_are_validated():
    for bad in ({"timeout_s": 0}, {"timeout_s": float("nan")}, {"cpu_s": float("inf")}, {"processes": 0},
                {"output_kb": 0}, {"memory_mb": 10}):
        with pytest.raises(HarnessError, match="finite and positive"):
            SandboxLimits(**bad)


NON_ROOT_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suites.instructeval import sandbox as s
plan = s.require_sandbox()
L = s.SandboxLimits(timeout_s=4, cpu_s=4, memory_mb=512)
check = "assert add(2, 3) == 5\n"
count = ("import subprocess\nn = 0\nfor _ in range(50):\n    try:\n        subprocess.Popen(['sleep', '30'])\n"
         "        n += 1\n    except OSError:\n        break\nprint('started', n)\n")
t0 = time.monotonic()
out = {
    "root_mode": plan.root_mode,
    "right": s.run_untrusted("def add(a, b):\n    return a + b\n", L, check=check).status,
    "early_exit": s.run_untrusted("import os\nos._exit(0)\n", L, check=check).status,
    "write_usr": s.run_untrusted("open('/usr/escaped', 'w')\n", L).status,
    "write_home": s.run_untrusted(f"open({os.environ['TARGET']!r}, 'w')\n", L).status,
    "socket": s.run_untrusted("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n", L).status,
    "nproc": s.run_untrusted(count, s.SandboxLimits(timeout_s=4, processes=8)).output_tail,
    "setsid": s.run_untrusted("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n", L).status,
}
out["seconds"] = time.monotonic() - t0
print(json.dumps(out))
"""


@pytest.fixture
def shared_folder():
    """A folder another user can read (pytest's shared_folder is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-nonroot-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_non_root_harness_gets_a_user_namespace_sandbox(shared_folder, outside):
    """The harness run by an ordinary user: uid 0 of a new user namespace with every capability dropped,
    the same read-only view, limits and kill; checked by running the sandbox module as uid 65534."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("needs root (to switch to another uid) and a system python3 under /usr/bin")
    for package in ("harness", "suites", "suites/instructeval"):
        (shared_folder / package).mkdir()
        (shared_folder / package / "__init__.py").write_text("")
    shutil.copy(Path(sandbox.__file__).parents[2] / "harness" / "errors.py", shared_folder / "harness")
    for module in ("sandbox.py", "sandbox_programs.py"):  # the sandbox and the programs it runs inside
        shutil.copy(Path(sandbox.__file__).with_name(module), shared_folder / "suites" / "instructeval")
    (shared_folder / "run.py").write_text(NON_ROOT_SCRIPT)
    for path in (shared_folder, *shared_folder.rglob("*")):
        path.chmod(0o755)
    os.chmod(outside, 0o777)  # writable by that user outside the sandbox: only the sandbox stops the write
    target = outside / "escaped"
    proc = subprocess.run(
        [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", system_python, "run.py"],
        cwd=shared_folder, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "TARGET": str(target)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["root_mode"] is False and out["right"] == "passed"
    assert out["early_exit"] == out["write_usr"] == out["write_home"] == out["socket"] == "failed"
    assert out["setsid"] == "passed" and out["seconds"] < 60  # the daemon died with the namespace
    assert int(out["nproc"].split("started")[-1].split()[0]) < 8
    assert not target.exists() and not Path("/usr/escaped").exists()
