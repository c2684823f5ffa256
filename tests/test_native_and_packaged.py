"""The llama.cpp build here is portable and generates; llama-server serves a teacher and a
judge from one process with parallel slots; packaged models are joined and checked."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.packaged_models import DEFAULT, MODELS, PackagedModel
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.native import (
    PORTABLE_CMAKE_ARGS,
    UNPORTABLE,
    check_build,
    enabled_features,
    find_llama_server,
)
from test_managed_server import port_closed, running_with
from workspace import write_task

from taskseed.config.pipeline import load_config
from taskseed.execution.serving import serving

REPO = Path(__file__).resolve().parents[1]


def test_the_installed_llama_cpp_is_portable_and_generates_one_token() -> None:
    proc = subprocess.run([sys.executable, "-m", "taskseed.cli.main", "native", "check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "portable: yes" in proc.stdout
    assert "generated one token with SmolLM2-135M-Instruct" in proc.stdout
    result = check_build(MODELS["smollm2"].path())
    assert result.portable and result.generated
    assert not any(f.startswith(UNPORTABLE) for f in enabled_features(result.system_info))
    assert "AVX2" in enabled_features(result.system_info)


def test_the_readme_and_ci_build_with_the_portable_flags() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}"' in readme
    assert f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}"' in ci
    assert "--no-cache-dir" in ci and "taskseed native build-server" in ci


def test_features_are_read_from_llama_cpp_system_info() -> None:
    info = "CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | AVX512 = 0 | REPACK = 1 | "
    assert enabled_features(info) == {"SSE3", "AVX2", "AMX_INT8", "REPACK"}


def fake_parts(root: Path, chunks: list[bytes]) -> tuple[str, ...]:
    names = []
    for i, chunk in enumerate(chunks, 1):
        package = root / f"fake_model_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        names.append(package.name)
    return tuple(names)


def fake_model(root: Path, chunks: list[bytes], sha256: str) -> PackagedModel:
    names = fake_parts(root, chunks)
    return PackagedModel(
        name="fake", title="Fake", license="MIT", credit="tests", install="pip install fake",
        file_name="fake.gguf", packages=names,
        chunk_files=tuple(f"data/part{i:02d}.bin" for i in range(1, len(names) + 1)),
        size=sum(map(len, chunks)), sha256=sha256)


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("TASKSEED_MODEL_CACHE", str(tmp_path / "cache"))
    return root


def test_parts_are_joined_in_order_once_and_checked(on_path: Path, tmp_path: Path) -> None:
    chunks = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    model = fake_model(on_path, chunks, hashlib.sha256(b"".join(chunks)).hexdigest())
    path = model.path()
    assert path == tmp_path / "cache" / "fake.gguf"
    assert path.read_bytes() == b"".join(chunks)
    stamp = path.stat().st_mtime_ns
    assert model.path() == path and path.stat().st_mtime_ns == stamp  # joined once


def test_parts_that_do_not_match_the_pinned_sha256_are_refused(on_path: Path,
                                                                tmp_path: Path) -> None:
    model = fake_model(on_path, [b"x" * 10, b"y" * 10], "0" * 64)
    with pytest.raises(TaskseedError, match="not the pinned 0000000000000000"):
        model.path()
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written is left


def test_a_missing_package_names_the_install_command() -> None:
    model = PackagedModel(name="gone", title="Gone", license="MIT", credit="", file_name="g",
                          install="pip install gone-model", packages=("no_such_model_pkg",),
                          chunk_files=("g.gguf",))
    with pytest.raises(TaskseedError, match=r"is not installed: pip install gone-model"):
        model.path()


@pytest.mark.slow
def test_the_default_model_is_installed_and_matches_its_pin() -> None:
    model = MODELS[DEFAULT]
    path = model.path()
    assert path.stat().st_size == model.size
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert (REPO / "LICENSES" / "Qwen2.5-Coder-1.5B-Instruct.txt").read_text().count(
        "Apache License") >= 1


SERVED = ("{backend: openai, model: smollm2, max_concurrency: 4, max_retries: 1, "
          "server: {launch: llama-server, checkpoint: 'packaged:smollm2', parallel: 2, "
          "args: ['--ctx-size', '4096'], startup_timeout_s: 120}}")

PIPE = """name: served
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
teacher: {model}
models:
  judge: {model}
stages:
  - {{name: seeds}}
"""


@pytest.mark.slow
def test_one_llama_server_serves_the_teacher_and_the_judge_with_parallel_slots(
    tmp_path: Path,
) -> None:
    find_llama_server()  # built by `taskseed native build-server` (.ci/run does)
    write_task(tmp_path, "qa", "free_form", [{"q": "Why?", "a": "Because."}],
               "{question: q, answer: a}")
    (tmp_path / "pipe.yaml").write_text(PIPE.format(run=tmp_path / "run", model=SERVED))
    loaded = load_config(tmp_path / "pipe.yaml")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    requests = [TeacherRequest([{"role": "user", "content": f"Name a colour. ({i})"}],
                               Sampling(temperature=0.0, max_tokens=96, seed=i), schema)
                for i in range(4)]
    with serving(loaded, {"teacher", "judge"}, tmp_path / "logs") as served:
        teacher, judge = served.config.teacher, served.config.models["judge"]
        assert teacher.base_url == judge.base_url  # one server for both
        port = int(teacher.base_url.rsplit(":", 1)[1].split("/")[0])
        assert len(running_with("--port", str(port))) == 1
        with teacher.build() as a, judge.build() as b, \
                concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = [r for batch in pool.map(lambda t: t.generate(requests), (a, b))
                       for r in batch]
        assert all(r.ok for r in replies), replies
        assert all(set(json.loads(r.text)) == {"answer"} for r in replies)
    assert port_closed(port) and not running_with("--port", str(port))
    logs = list((tmp_path / "logs").glob("server-*.log"))
    assert [p.name.split("-")[1] for p in logs] == ["teacher"]
    log = logs[0].read_text()
    assert "--parallel 2" in log and "n_slots = 2" in log.replace("n_slots=", "n_slots = ")


def test_llama_server_is_found_through_the_environment(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("TASKSEED_LLAMA_SERVER", str(binary))
    assert find_llama_server() == binary
    monkeypatch.setenv("TASKSEED_LLAMA_SERVER", str(tmp_path / "missing"))
    with pytest.raises(TaskseedError, match="not an executable file"):
        find_llama_server()
    assert os.access(binary, os.X_OK)
