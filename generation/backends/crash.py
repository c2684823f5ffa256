"""Why a process died: its signal, in words, and the likely cause from its last stderr lines."""

from __future__ import annotations

import signal
from pathlib import Path

from taskseed.generation.backends.native import REBUILD

_NATIVE_CRASHES = {"SIGSEGV", "SIGILL", "SIGBUS", "SIGFPE", "SIGABRT"}
_WHAT = {"SIGSEGV": "segmentation fault", "SIGILL": "illegal instruction",
         "SIGBUS": "bus error", "SIGFPE": "arithmetic fault", "SIGABRT": "aborted",
         "SIGKILL": "killed", "SIGTERM": "terminated"}
_LLAMA_MARKS = ("llama_cpp", "ggml", "libllama")


def signal_name(number: int) -> str:
    """`SIGSEGV` for 11; `signal 99` for a number with no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_signal(returncode: int) -> str | None:
    """The signal behind a return code: negative from Python, 128+N from a shell."""
    if returncode < 0:
        return signal_name(-returncode)
    if 128 < returncode < 128 + 65:
        return signal_name(returncode - 128)
    return None


def describe_exit(returncode: int) -> str:
    """`was killed by SIGSEGV (segmentation fault)` or `exited with code 3`."""
    sig = exit_signal(returncode)
    if sig is None:
        return f"exited with code {returncode}"
    what = _WHAT.get(sig)
    return f"was killed by {sig}" + (f" ({what})" if what else "")


def likely_cause(sig: str | None, stderr_tail: str, memory_limit_hit: bool = False) -> str:
    """What most likely killed a worker, and what to do about it."""
    inside_llama = any(mark in stderr_tail for mark in _LLAMA_MARKS)
    if memory_limit_hit:
        return ("it went over the Dask worker memory limit (executor.memory_limit); raise it "
                "or use smaller shards")
    if sig in _NATIVE_CRASHES and inside_llama:
        return ("a crash inside llama.cpp, most often a native build that does not suit "
                f"this CPU (AMX or -march=native); rebuild it portably: {REBUILD}")
    if sig == "SIGILL":
        return ("an instruction this CPU lacks: a native library was built for another CPU; "
                f"for llama.cpp: {REBUILD}")
    if sig in _NATIVE_CRASHES:
        return "a crash in native code (the worker's last stderr lines are in the log)"
    if sig == "SIGKILL":
        return ("killed from outside, most often for memory: the kernel's OOM killer or a "
                "job's memory limit (check `dmesg` or the job's accounting)")
    if sig == "SIGTERM":
        return "stopped from outside (a job's time limit, a cancel or a shutdown)"
    return "the worker's last stderr lines are in the log"


def tail(path: Path, lines: int = 12, max_bytes: int = 262144) -> str:
    """The last `lines` non-empty lines of a log ('' when it is missing); when it ends in a
    Python fault-handler dump, the dump's crashing thread instead (where the fault was)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(kept) if line.startswith("Fatal Python error")]
    if not starts:
        return "\n".join(kept[-lines:])
    dump = kept[starts[-1]:]
    current = next((i for i, line in enumerate(dump)
                    if line.startswith(("Current thread", "Thread "))
                    and "most recent call first" in line and line.startswith("Current")), None)
    if current is None:
        return "\n".join(dump[:lines])
    frames = [dump[current]]
    for line in dump[current + 1:]:
        if not line.startswith("  File "):
            break
        frames.append(line)
    return "\n".join([dump[0], *frames[:lines]])
