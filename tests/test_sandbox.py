"""The sandbox for generated code, tested with real subprocesses and namespaces."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from taskseed.judges.checks.sandbox import (
    WORKDIR_PREFIX,
    SandboxLimits,
    run_python,
    sandbox_problem,
)


@pytest.fixture(scope="module", autouse=True)
def sandbox_available() -> None:
    problem = sandbox_problem()
    if problem is not None:
        pytest.fail(f"the sandbox cannot be set up on this machine: {problem}", pytrace=False)


def sandbox_pids() -> set[int]:
    """Live processes of any sandbox: their command lines name a sandbox's directory."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if WORKDIR_PREFIX.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.add(int(entry))
            except OSError:
                continue
    return pids


def test_passing_program_returns_its_output():
    source = "import os\nprint('hello')\nprint(os.getuid(), os.getcwd(), os.environ['HOME'])\n"
    result = run_python(source)
    assert (result.status, result.returncode, result.truncated) == ("passed", 0, False)
    hello, ids = result.stdout.splitlines()
    uid, cwd, home = ids.split()
    assert hello == "hello"
    assert uid != "0"
    assert cwd == home
    assert Path(cwd).name.startswith(WORKDIR_PREFIX)
    assert not Path(cwd).exists()
    assert run_python(source).stdout.split()[-1] != cwd


def test_failing_assert_is_failed_with_the_error():
    source = "def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4, 'add is wrong'\n"
    result = run_python(source)
    assert (result.status, result.returncode) == ("failed", 1)
    assert "AssertionError: add is wrong" in result.stderr


def test_loopback_server_of_the_caller_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
        control = subprocess.run([sys.executable, "-c", source], capture_output=True, timeout=30)
        assert control.returncode == 0, control.stderr
        server.accept()[0].close()

        result = run_python(source)
        assert result.status == "failed"
        assert "Error" in result.stderr.splitlines()[-1]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


@pytest.mark.parametrize(
    "call",
    [
        "socket.getaddrinfo('pypi.org', 443)",
        "socket.create_connection(('1.1.1.1', 443), timeout=5)",
        "socket.create_connection(('151.101.0.223', 80), timeout=5)",
    ],
)
def test_public_network_is_unreachable(call):
    result = run_python(f"import socket\n{call}\n")
    assert result.status == "failed"
    assert any(name in result.stderr for name in ("gaierror", "OSError", "Unreachable"))


def test_writes_outside_the_workdir_fail(tmp_path):
    open_dir = Path(tempfile.mkdtemp(prefix="taskseed-open-"))
    open_dir.chmod(0o777)
    targets = [
        tmp_path / "escape.txt",
        Path(tempfile.gettempdir()) / f"taskseed-escape-{os.getpid()}.txt",
        Path("/tmp") / f"taskseed-escape-{os.getpid()}-b.txt",
        open_dir / "escape.txt",
    ]
    source = (
        f"for target in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(target, 'w').write('x')\n"
        "        print('wrote', target)\n"
        "    except OSError as err:\n"
        "        print('blocked', target, type(err).__name__)\n"
        "open('mine.txt', 'w').write('own file')\n"
        "print(open('mine.txt').read())\n"
    )
    try:
        result = run_python(source)
    finally:
        escaped = [t for t in targets if t.exists()]
        for target in escaped:
            target.unlink()
        shutil.rmtree(open_dir)
    assert result.status == "passed", result.stderr
    assert not escaped
    for target in targets:
        assert f"blocked {target}" in result.stdout
    assert result.stdout.splitlines()[-1] == "own file"


def run_watched(source: str, limits: SandboxLimits) -> tuple[str, float, int]:
    """Run `source`; return its status, the call's seconds and the most sandbox processes seen."""
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], len(sandbox_pids()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    try:
        result = run_python(source, limits)
    finally:
        done.set()
        watcher.join()
    return result.status, time.monotonic() - start, peak[0]


BOMB = "import os\nwhile True:\n    os.fork()\n"
PERSISTENT_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)


@pytest.mark.parametrize(
    ("source", "statuses"),
    [(BOMB, {"timeout", "failed"}), (PERSISTENT_BOMB, {"timeout"})],
    ids=["fork-bomb", "persistent-fork-bomb"],
)
def test_fork_bomb_is_stopped_and_leaves_no_process(source, statuses):
    limits = SandboxLimits(seconds=3, processes=16)
    assert not sandbox_pids()
    status, seconds, peak = run_watched(source, limits)
    assert status in statuses
    assert seconds < limits.seconds + 3
    assert peak <= limits.processes + 2
    if source == PERSISTENT_BOMB:
        assert peak > limits.processes // 2
    assert not sandbox_pids()


def test_detached_descendants_die_with_the_program():
    source = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print('parent done')\n"
    )
    start = time.monotonic()
    result = run_python(source)
    assert (result.status, result.stdout) == ("passed", "parent done\n")
    assert time.monotonic() - start < 5
    assert not sandbox_pids()


def test_infinite_loop_is_killed_at_the_time_limit():
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", SandboxLimits(seconds=2))
    elapsed = time.monotonic() - start
    assert (result.status, result.returncode) == ("timeout", None)
    assert 2 <= elapsed < 5
    assert not sandbox_pids()


def test_large_output_is_cut():
    limits = SandboxLimits()
    source = "import sys\nsys.stdout.write('x' * 10_000_000)\nsys.stderr.write('y' * 10_000_000)\n"
    result = run_python(source, limits)
    assert result.status == "passed"
    assert result.stdout == "x" * limits.output_bytes
    assert result.stderr == "y" * limits.output_bytes
    assert result.truncated


def test_memory_limit():
    limits = SandboxLimits(memory_mb=256)
    assert run_python("x = bytearray(100 * 1024**2)\n", limits).status == "passed"
    result = run_python("x = bytearray(2 * 1024**3)\n", limits)
    assert result.status == "failed"
    assert "MemoryError" in result.stderr


def test_file_size_limit():
    result = run_python("open('big', 'wb').write(b'x' * (2 << 20))\n", SandboxLimits())
    assert result.status == "failed"
    assert "File too large" in result.stderr


def test_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sandbox-test-secret")
    result = run_python("import json, os\nprint(json.dumps(dict(os.environ)))\n")
    assert result.status == "passed"
    env = json.loads(result.stdout)
    assert "OPENAI_API_KEY" not in env
    assert "sk-sandbox-test-secret" not in result.stdout
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE"}
