"""Shared pytest setup: the repo root on sys.path, a private cache dir, and one thread per test process."""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Tests must never read or write the user's real cache (downloads, plugin builds, metric statistics).
os.environ.setdefault('DNNLIB_CACHE_DIR', os.path.join(REPO_ROOT, '.cache', 'test-dnnlib'))


@pytest.fixture(scope='session', autouse=True)
def _torch_threads():
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture
def repo_root():
    """Absolute path of the repository root."""
    return REPO_ROOT
