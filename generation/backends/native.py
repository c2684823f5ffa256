"""llama.cpp on this machine: a portable build, a check that it runs, and `llama-server`.

A source build of llama-cpp-python compiles for the build machine's CPU unless told
otherwise, and llama.cpp's AMX kernel (`ggml_backend_amx_mul_mat`) crashes on some AMX
CPUs. `PORTABLE_CMAKE_ARGS` builds for any x86-64 CPU with AVX2 (Haswell, 2013, and
later): no `-march=native`, no AMX. pip's wheel cache does not key on `CMAKE_ARGS`, so
every build here passes `--no-cache-dir`.

`llama-server` (llama.cpp's OpenAI-compatible server: parallel slots, continuous batching)
is built from the llama.cpp sources inside the installed llama-cpp-python release, with the
same flags, into the model cache's `bin/` folder.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.packaged_models import cache_dir

PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
                       "-DGGML_F16C=ON -DGGML_BMI2=ON")
REBUILD = (f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --no-cache-dir --force-reinstall '
           "--no-deps llama-cpp-python")
BUILD_SERVER = "taskseed native build-server"
SERVER_ENV = "TASKSEED_LLAMA_SERVER"
# Features whose kernels must not be in a portable build.
UNPORTABLE = ("AMX_INT8", "AMX_TILE", "AMX_BF16", "AVX512")
_SERVER_TARGET_ARGS = ("-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
                       "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                       "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                       "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
                       "-DCMAKE_BUILD_TYPE=Release")

_PROBE = """
import sys
import llama_cpp
info = llama_cpp.llama_print_system_info().decode()
print("SYSTEM_INFO " + info, flush=True)
if len(sys.argv) > 1:
    llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
    out = llm.create_completion("The sky is", max_tokens=1, temperature=0.0)
    print("GENERATED " + repr(out["choices"][0]["text"]), flush=True)
"""


@dataclass(frozen=True, slots=True)
class BuildCheck:
    """What the installed llama.cpp build is compiled for, and whether it generated."""

    system_info: str
    unportable: tuple[str, ...]  # features enabled that a portable build lacks
    generated: str | None  # the one token, when a model was given

    @property
    def portable(self) -> bool:
        return not self.unportable


def enabled_features(system_info: str) -> set[str]:
    """Feature names that llama.cpp's system info reports as on (`AVX2 = 1`)."""
    features = set()
    for part in system_info.replace("|", " | ").split("|"):
        if "=" in part:
            name, _, value = part.partition("=")
            if value.strip() == "1":
                features.add(name.split(":")[-1].strip())
    return features


def check_build(model: Path | None = None, timeout_s: float = 300.0) -> BuildCheck:
    """Ask the installed llama.cpp, in a subprocess, what it was built for; with `model`,
    load it and generate one token. A crash or a non-portable build is a one-line error
    that names the rebuild command."""
    argv = [sys.executable, "-c", _PROBE, *([str(model)] if model else [])]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    except subprocess.TimeoutExpired:
        raise TaskseedError(f"llama.cpp check did not finish within {timeout_s:g} s") from None
    info = next((line.removeprefix("SYSTEM_INFO ") for line in proc.stdout.splitlines()
                 if line.startswith("SYSTEM_INFO ")), "")
    if proc.returncode != 0:
        from taskseed.generation.backends.crash import describe_exit

        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise TaskseedError(f"llama.cpp {describe_exit(proc.returncode)} while "
                            f"{'generating one token' if model else 'starting'} "
                            f"({last[:160]}); rebuild it portably: {REBUILD}")
    unportable = tuple(sorted(f for f in enabled_features(info)
                              if any(f.startswith(u) for u in UNPORTABLE)))
    generated = next((line.removeprefix("GENERATED ") for line in proc.stdout.splitlines()
                      if line.startswith("GENERATED ")), None)
    return BuildCheck(info, unportable, generated)


def server_dir() -> Path:
    """Where `taskseed native build-server` puts llama-server."""
    return cache_dir().parent / "bin"


def find_llama_server() -> Path:
    """The llama-server binary: $TASKSEED_LLAMA_SERVER, the one built here, or on PATH."""
    configured = os.environ.get(SERVER_ENV)
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TaskseedError(f"{SERVER_ENV}={configured}: not an executable file")
        return path
    built = server_dir() / f"llama-server-{llama_cpp_version()}"
    if built.is_file():
        return built
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise TaskseedError(f"llama-server not found (looked for {built}, ${SERVER_ENV} and "
                        f"PATH): build it with `{BUILD_SERVER}`")


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise TaskseedError("llama-cpp-python is not installed") from None


def build_llama_server(jobs: int | None = None, source: Path | None = None,
                       log=print) -> Path:
    """Build llama-server portably from the installed llama-cpp-python's llama.cpp sources
    (its sdist from the package index, or `source`: an sdist or an unpacked tree)."""
    version = llama_cpp_version()
    target = server_dir() / f"llama-server-{version}"
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise TaskseedError(f"building llama-server needs {tool} (Debian: apt-get install "
                                "cmake g++)")
    with tempfile.TemporaryDirectory(prefix="taskseed-llama-server-") as tmp:
        tree = _sources(Path(tmp), version, source, log)
        build = Path(tmp) / "build"
        configure = ["cmake", "-S", str(tree), "-B", str(build),
                     *PORTABLE_CMAKE_ARGS.split(), *_SERVER_TARGET_ARGS]
        compile_ = ["cmake", "--build", str(build), "--target", "llama-server",
                    "-j", str(jobs or os.cpu_count() or 1)]
        for step in (configure, compile_):
            log(f"$ {' '.join(step)}")
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
                raise TaskseedError(f"llama-server build failed at `{step[1]}`: {tail[:400]}")
        built = build / "bin" / "llama-server"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.tmp")
        shutil.copy2(built, partial)
        os.replace(partial, target)
    return target


def _sources(tmp: Path, version: str, source: Path | None, log) -> Path:
    """The llama.cpp source tree of llama-cpp-python `version`."""
    if source is not None and source.is_dir():
        tree = source / "vendor" / "llama.cpp" if (source / "vendor").is_dir() else source
        return tree
    if source is None:
        log(f"fetching the llama-cpp-python {version} sources from the package index")
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", "-d", str(tmp),
                    f"llama-cpp-python=={version}"]
        done = subprocess.run(download, capture_output=True, text=True)
        sdists = sorted(tmp.glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 and not sdists:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise TaskseedError(f"could not fetch the llama-cpp-python {version} sources: "
                                f"{tail[:300]}")
        source = sdists[0]
    with tarfile.open(source) as archive:
        archive.extractall(tmp / "src", filter="data")
    roots = [p for p in (tmp / "src").iterdir() if p.is_dir()]
    tree = roots[0] / "vendor" / "llama.cpp"
    if not (tree / "tools" / "server").is_dir():
        raise TaskseedError(f"{source}: no llama.cpp server sources inside")
    return tree
