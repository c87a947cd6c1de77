"""torch_utils/cpu_malloc.py: the CLIs' CPU allocator setting takes effect (page faults of a reused large buffer),
can be switched off, and is applied only for CPU devices."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from dnnlib import cli
from torch_utils import cpu_malloc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = cpu_malloc._glibc() is not None

# In a fresh process (the setting is per process): page faults of one step of a loop whose temporaries are large,
# once the loop is in its steady state.
_FAULTS_SCRIPT = textwrap.dedent('''
    import resource, sys, torch
    from torch_utils import cpu_malloc
    applied = cpu_malloc.keep_freed_memory() if sys.argv[1] == 'keep' else False
    x = torch.ones(4, 128, 128, 128)  # 32 MiB.
    def faults_of_one_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = torch.nn.functional.avg_pool2d(x * 2 + 1, 2).relu_()  # 8-32 MiB temporaries, as layers make.
        del y
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    for _ in range(12):  # The heap settles into a steady state (allocation sizes vary by alignment padding).
        faults_of_one_step()
    print(applied, faults_of_one_step())
''')


def _second_buffer_faults(mode, **env):
    result = subprocess.run([sys.executable, '-c', _FAULTS_SCRIPT, mode], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO, **env), timeout=120, check=True)
    applied, faults = result.stdout.split()
    return applied == 'True', int(faults)


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only (the setting is a no-op elsewhere)')
def test_kept_buffers_are_reused_without_page_faults():
    applied, faults_kept = _second_buffer_faults('keep')
    _, faults_system = _second_buffer_faults('system')
    assert applied
    assert faults_system > 4000      # Fresh mappings: a fault per page (fewer with transparent huge pages).
    assert faults_kept < 500         # Freed blocks are handed out again, already mapped.


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_dnnlib_malloc_system_opts_out():
    applied, faults = _second_buffer_faults('keep', DNNLIB_MALLOC='system')
    assert not applied and faults > 4000


def test_tune_cpu_allocator_applies_only_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_malloc, 'keep_freed_memory', lambda: calls.append(1) or True)
    assert cli.tune_cpu_allocator(torch.device('cpu')) is True
    assert cli.tune_cpu_allocator('cuda:0') is False
    assert cli.tune_cpu_allocator('meta') is False
    assert len(calls) == 1


def test_off_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr(cpu_malloc, '_glibc', lambda: None)
    monkeypatch.setattr(cpu_malloc, '_keeping', False)
    assert cpu_malloc.keep_freed_memory() is False
    assert cpu_malloc.keeps_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_keeps_freed_memory_reports_the_setting(monkeypatch):
    monkeypatch.setattr(cpu_malloc, '_keeping', cpu_malloc._keeping)  # Restored after the test.
    try:
        assert cpu_malloc.keep_freed_memory(False) and not cpu_malloc.keeps_freed_memory()
        assert cpu_malloc.keep_freed_memory(True) and cpu_malloc.keeps_freed_memory()
    finally:
        cpu_malloc.keep_freed_memory(False)  # glibc's limits again, as for the rest of the test session.
