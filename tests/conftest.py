"""Shared test fixtures: repository paths and the shared seed data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def seeds_root() -> Path:
    assert SEEDS.is_dir(), f"shared seed data missing at {SEEDS}"
    return SEEDS


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


# Tests never reach the Hugging Face hub: `datasets` reads local folders only.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
