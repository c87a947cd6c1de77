"""The plugin layer: a broken toolchain or source falls back with one clear warning, never a crash or a hang."""

import os
import time
import warnings

import pytest
import torch

from torch_utils import custom_ops


@pytest.fixture
def fresh_caches(monkeypatch, tmp_path):
    """Isolate the plugin caches and the build dir of one test."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    for name in ['_specs', '_loaded', '_failed', '_parity']:
        monkeypatch.setattr(custom_ops, name, dict())
    monkeypatch.setattr(custom_ops, 'verbosity', 'brief')
    return tmp_path


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = fn()
    return result, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_empty_cuda_home_falls_back_with_one_warning(fresh_caches, monkeypatch):
    empty = fresh_caches / 'empty-cuda'
    empty.mkdir()
    monkeypatch.setenv('CUDA_HOME', str(empty))
    src = fresh_caches / 'k.cu'
    src.write_text('__global__ void k() {}\n')
    custom_ops.register_plugin('fake_cuda_plugin', sources=[str(src)])
    first, caught = _warnings_of(lambda: custom_ops.try_get_plugin('fake_cuda_plugin'))
    second, caught_again = _warnings_of(lambda: custom_ops.try_get_plugin('fake_cuda_plugin'))
    assert first is None and second is None
    assert len(caught) == 1 and len(caught_again) == 0
    message = str(caught[0].message)
    if torch.version.cuda is None:
        assert 'CPU-only build' in message
    else:
        assert 'CUDA_HOME' in message and str(empty) in message
    assert custom_ops.plugin_status('fake_cuda_plugin').startswith('failed:')


def test_syntax_error_in_source_falls_back_quoting_the_compiler(fresh_caches):
    src = fresh_caches / 'broken.cpp'
    src.write_text('int broken( {\n')  # No torch headers: the compiler fails within a second or two.
    custom_ops.register_plugin('broken_plugin', sources=[str(src)])
    start = time.time()
    result, caught = _warnings_of(lambda: custom_ops.try_get_plugin('broken_plugin'))
    assert result is None
    assert time.time() - start < 120
    assert len(caught) == 1
    message = str(caught[0].message)
    assert 'building broken_plugin failed' in message
    assert 'error' in message.lower() and 'fix:' in message
    assert 'broken.cpp' in message  # The compiler's own error line names the file.


def test_get_plugin_raises_with_the_fix(fresh_caches, monkeypatch):
    monkeypatch.setenv('CUDA_HOME', str(fresh_caches))
    src = fresh_caches / 'k.cu'
    src.write_text('\n')
    with pytest.raises(custom_ops.PluginBuildError, match='cannot build k_plugin'):
        custom_ops.get_plugin('k_plugin', sources=['k.cu'], source_dir=str(fresh_caches))


def test_unregistered_plugin_is_a_clear_error(fresh_caches):
    with pytest.raises(KeyError, match='never registered'):
        custom_ops.try_get_plugin('nope_plugin')


def test_stale_lock_is_cleared_and_fresh_lock_kept(fresh_caches, monkeypatch):
    build_dir = fresh_caches / 'build'
    build_dir.mkdir()
    lock = build_dir / 'lock'
    lock.write_text('')
    custom_ops._clear_stale_lock(str(build_dir))
    assert lock.exists()  # A build in progress elsewhere keeps its lock.
    old = time.time() - custom_ops.BUILD_TIMEOUT_S - 10
    os.utime(lock, (old, old))
    custom_ops._clear_stale_lock(str(build_dir))
    assert not lock.exists()


def test_build_dir_changes_with_source_contents(fresh_caches):
    src = fresh_caches / 'a.cu'
    src.write_text('one')
    digest_one = custom_ops._source_digest([str(src)], dict(extra_cflags=['-O3']))
    src.write_text('two')
    digest_two = custom_ops._source_digest([str(src)], dict(extra_cflags=['-O3']))
    digest_flags = custom_ops._source_digest([str(src)], dict(extra_cflags=['-O2']))
    assert len({digest_one, digest_two, digest_flags}) == 3


def test_use_fast_path_rules(monkeypatch):
    x = torch.zeros(2)
    monkeypatch.delenv('DNNLIB_OPS', raising=False)
    assert not custom_ops.use_fast_path('cuda', x)  # CPU tensors always take the reference path.
    assert not custom_ops.use_fast_path('ref', x)
    with pytest.raises(ValueError, match="impl='fast'"):
        custom_ops.use_fast_path('fast', x)
    monkeypatch.setenv('DNNLIB_OPS', 'bogus')
    with pytest.raises(ValueError, match='DNNLIB_OPS'):
        custom_ops.use_fast_path('cuda', x)
    monkeypatch.setenv('DNNLIB_OPS', 'ref')
    assert custom_ops.forced_impl() == 'ref'


def test_parity_failure_warns_once_with_figures_and_sticks(fresh_caches):
    calls = []

    def check():
        calls.append(1)
        return False, 'max abs err 0.5'

    first, caught = _warnings_of(lambda: custom_ops.parity_ok('some_op', 'cuda:0', check))
    second, caught_again = _warnings_of(lambda: custom_ops.parity_ok('some_op', 'cuda:0', check))
    assert first is False and second is False
    assert len(calls) == 1 and len(caught) == 1 and not caught_again
    assert 'max abs err 0.5' in str(caught[0].message)


def test_parity_check_that_crashes_counts_as_failure(fresh_caches):
    def check():
        raise RuntimeError('illegal memory access')

    result, caught = _warnings_of(lambda: custom_ops.parity_ok('crashy_op', 'cuda:0', check))
    assert result is False and 'illegal memory access' in str(caught[0].message)
