"""Shared test fixtures: repository paths and the shared seed data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, SlurmMissing

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def seeds_root() -> Path:
    assert SEEDS.is_dir(), f"shared seed data missing at {SEEDS}"
    return SEEDS


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def cluster() -> Iterator[SlurmCluster]:
    running, problem = SlurmCluster(), None
    try:
        running.start()
    except SlurmMissing as err:
        running.stop()
        problem = str(err)
    if problem is not None:
        pytest.fail(f"these tests need a real Slurm: {problem}", pytrace=False)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(running.conf)
    try:
        yield running
    finally:
        running.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


# Tests never reach the Hugging Face hub: `datasets` reads local folders only.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
