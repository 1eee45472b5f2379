"""Fixtures for the trainer tests: tiny models built once per session, synthetic data, one CPU thread.

No database: these tests import no Django models.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.helpers import (
    build_tiny_bert,
    build_tiny_gpt2,
    synthetic_rows,
    write_jsonl,
    write_parquet,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: trains a tiny model for several seconds (still in the default suite)"
    )


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's spinning
    # threads make each step 10-40x slower whenever another process holds a core.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {
        "train": write_jsonl(synthetic_rows(384, seed=1), root / "train.jsonl"),
        "test": write_parquet(synthetic_rows(96, seed=2), root / "test.parquet"),
        "small": write_jsonl(synthetic_rows(64, seed=3), root / "small.jsonl"),
    }
