"""dnnlib: EasyDict, cache directory, open_url, Logger, format_time, by-name construction."""

import hashlib
import http.server
import io
import os
import pickle
import pickletools
import socket
import sys
import tempfile
import threading

import pytest

import dnnlib
from dnnlib import util

#----------------------------------------------------------------------------
# EasyDict

def test_easydict_reads_and_writes_keys_as_attributes():
    d = dnnlib.EasyDict(lr=0.002, betas=(0, 0.99))
    d.batch = 32
    assert d['batch'] == 32 and d.lr == 0.002 and d.betas == (0, 0.99)
    del d.lr
    assert 'lr' not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    with pytest.raises(AttributeError):
        del d.missing


def _pickle_globals(data):
    """Dotted names of all globals a pickle refers to (GLOBAL and STACK_GLOBAL opcodes)."""
    names, strings = [], []
    for op, arg, _pos in pickletools.genops(data):
        if op.name == 'GLOBAL':
            names.append(arg.replace(' ', '.'))
        elif op.name == 'STACK_GLOBAL':
            names.append(f'{strings[-2]}.{strings[-1]}')
        elif isinstance(arg, str):
            strings.append(arg)
    return names


def test_easydict_pickles_as_dnnlib_util_easydict():
    d = dnnlib.EasyDict(a=1, nested=dnnlib.EasyDict(b=[1, 2]))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(d, protocol=protocol)
        assert set(_pickle_globals(data)) == {'dnnlib.util.EasyDict'}
        loaded = pickle.loads(data)
        assert type(loaded) is dnnlib.EasyDict and type(loaded.nested) is dnnlib.EasyDict
        assert loaded == {'a': 1, 'nested': {'b': [1, 2]}}
    assert dnnlib.EasyDict is util.EasyDict

#----------------------------------------------------------------------------
# Cache directory

def test_make_cache_dir_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    assert util.make_cache_dir_path('downloads', 'x.pkl') == str(tmp_path / 'cache' / 'downloads' / 'x.pkl')


def test_make_cache_dir_path_uses_home_then_temp_dir(monkeypatch, tmp_path):
    monkeypatch.delenv('DNNLIB_CACHE_DIR', raising=False)
    monkeypatch.setenv('HOME', str(tmp_path))
    assert util.make_cache_dir_path('a') == os.path.join(str(tmp_path), '.cache', 'dnnlib', 'a')
    blocker = tmp_path / 'not_a_dir'
    blocker.write_text('a file where HOME should be')
    monkeypatch.setenv('HOME', str(blocker / 'home'))  # Cannot be created: its parent is a file.
    path = util.make_cache_dir_path('a')
    assert os.path.dirname(os.path.dirname(path)) == tempfile.gettempdir()
    assert os.path.basename(os.path.dirname(path)).startswith('dnnlib-cache-') and os.path.basename(path) == 'a'

#----------------------------------------------------------------------------
# URLs

@pytest.mark.parametrize('obj, allow_file, expected', [
    ('https://example.com/a.pkl', False, True),
    ('http://127.0.0.1:8000/x', False, True),
    ('file:///tmp/a.pkl', False, False),
    ('file:///tmp/a.pkl', True, True),
    ('/tmp/a.pkl', True, False),
    ('relative/path.pkl', False, False),
    ('https://', False, False),
    (123, False, False),
])
def test_is_url(obj, allow_file, expected):
    assert util.is_url(obj, allow_file_urls=allow_file) is expected


def test_open_url_opens_local_paths_and_file_urls(tmp_path):
    path = tmp_path / 'data.bin'
    path.write_bytes(b'\x00\x01payload')
    with util.open_url(str(path)) as f:
        assert f.read() == b'\x00\x01payload'
    with util.open_url(path.as_uri()) as f:
        assert f.read() == b'\x00\x01payload'
    assert util.open_url(path.as_uri(), return_filename=True) == str(path)
    assert util.open_url(path, return_filename=True) == str(path)
    with pytest.raises(FileNotFoundError):
        util.open_url(str(tmp_path / 'missing.pkl'))


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests = []

    def do_GET(self):  # noqa: N802 (http.server API)
        type(self).requests.append(self.path)
        if self.path.startswith('/missing'):
            self.send_error(404)
            return
        body = b'network bytes for ' + self.path.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(monkeypatch):
    monkeypatch.setenv('no_proxy', '*')
    monkeypatch.setenv('NO_PROXY', '*')
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_open_url_downloads_once_then_reads_cache(local_server, tmp_path):
    url = local_server + '/weights/net.pkl'
    with util.open_url(url, cache_dir=str(tmp_path), verbose=False) as f:
        assert f.read() == b'network bytes for /weights/net.pkl'
    cached = tmp_path / (hashlib.md5(url.encode()).hexdigest() + '_net.pkl')
    assert cached.read_bytes() == b'network bytes for /weights/net.pkl'
    assert util.open_url(url, cache_dir=str(tmp_path), verbose=False, return_filename=True) == str(cached)
    assert _CountingHandler.requests == ['/weights/net.pkl']  # Second call was a cache hit.
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # No temporary files left behind.


def test_open_url_without_cache_returns_memory_file(local_server, tmp_path):
    f = util.open_url(local_server + '/x.bin', cache_dir=str(tmp_path), verbose=False, cache=False)
    assert isinstance(f, io.BytesIO) and f.read() == b'network bytes for /x.bin'
    assert list(tmp_path.iterdir()) == []


def test_open_url_http_404_fails_fast_naming_url_and_cache_path(local_server, tmp_path):
    url = local_server + '/missing/detector.pkl'
    with pytest.raises(IOError) as info:
        util.open_url(url, cache_dir=str(tmp_path), verbose=False, num_attempts=5)
    assert url in str(info.value) and util.url_cache_path(url, str(tmp_path)) in str(info.value)
    assert len(_CountingHandler.requests) == 1  # 4xx is not retried.


def test_open_url_offline_error_says_where_to_put_the_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv('no_proxy', '*')
    monkeypatch.setenv('NO_PROXY', '*')
    with socket.socket() as sock:  # A port with nobody listening: connection refused, like being offline.
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    url = f'http://127.0.0.1:{port}/inception-2015-12-05.pkl'
    with pytest.raises(IOError) as info:
        util.open_url(url, cache_dir=str(tmp_path), verbose=False, num_attempts=2)
    message = str(info.value)
    assert url in message and 'offline' in message
    assert os.path.join(str(tmp_path), hashlib.md5(url.encode()).hexdigest() + '_inception-2015-12-05.pkl') in message
    assert capsys.readouterr().err == ''  # verbose=False prints nothing.

def test_open_url_checks_sha256_and_size_and_keeps_no_file_on_mismatch(local_server, tmp_path):
    url = local_server + '/detectors/vgg16.pkl'
    body = b'network bytes for /detectors/vgg16.pkl'
    with pytest.raises(util.ChecksumError, match='sha256'):
        util.open_url(url, cache_dir=str(tmp_path), verbose=False, sha256='0' * 64)
    assert list(tmp_path.iterdir()) == []  # Neither the file nor its temporary copy is kept.
    with pytest.raises(util.ChecksumError, match=f'{len(body)} bytes, expected 5'):
        util.open_url(url, cache_dir=str(tmp_path), verbose=False, size=5)
    assert list(tmp_path.iterdir()) == []
    good = hashlib.sha256(body).hexdigest()
    path = util.open_url(url, cache_dir=str(tmp_path), verbose=False, sha256=good.upper(), size=len(body),
                         return_filename=True)
    assert open(path, 'rb').read() == body and os.listdir(tmp_path) == [os.path.basename(path)]


def test_open_url_streams_in_chunks_with_a_progress_bar(local_server, tmp_path, capsys, monkeypatch):
    reads = []
    original = util._stream_to_file

    def spy(response, file, url, verbose):
        real_read = response.read
        response.read = lambda n=-1: reads.append(n) or real_read(n)
        return original(response, file, url, verbose)

    monkeypatch.setattr(util, '_stream_to_file', spy)
    with util.open_url(local_server + '/big.bin', cache_dir=str(tmp_path), verbose=True) as f:
        assert f.read() == b'network bytes for /big.bin'
    assert reads and all(n == 1 << 20 for n in reads)  # Never one unbounded read() of the whole body.
    err = capsys.readouterr().err
    assert 'Downloading' in err and 'big.bin' in err  # tqdm's bar names the file.

#----------------------------------------------------------------------------
# Atomic writes and stale temporary files

def test_write_file_atomic_leaves_no_temp_file_and_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / 'out.bin'
    util.write_file_atomic(str(path), lambda f: f.write(b'first'))
    with pytest.raises(ZeroDivisionError):
        util.write_file_atomic(str(path), lambda f: (f.write(b'half'), 1 / 0))
    assert path.read_bytes() == b'first' and os.listdir(tmp_path) == ['out.bin']


def test_write_file_atomic_names_the_file_when_the_disk_is_full(tmp_path):
    import errno

    def full_disk(f):
        raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(OSError) as info:
        util.write_file_atomic(str(tmp_path / 'snap.pkl'), full_disk)
    assert info.value.errno == errno.ENOSPC and str(tmp_path / 'snap.pkl') in str(info.value)
    assert os.listdir(tmp_path) == []


def test_remove_stale_temp_files_removes_only_those_of_dead_processes(tmp_path):
    import subprocess
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    names = [f'network-snapshot-000004.pkl.tmp{dead.pid}', f'fakes000004.png.tmp{dead.pid}',
             f'seed0001.png.tmp{dead.pid}.png', f'log.txt.tmp{os.getpid()}', 'network-snapshot-000004.pkl',
             'notes.tmpfile']
    for name in names:
        (tmp_path / name).write_bytes(b'x')
    removed = util.remove_stale_temp_files(str(tmp_path))
    assert sorted(removed) == sorted(names[:3])
    assert sorted(os.listdir(tmp_path)) == sorted(names[3:])

#----------------------------------------------------------------------------
# Logger

def test_logger_tees_stdout_and_stderr_to_file_and_restores_streams(tmp_path):
    log_path = tmp_path / 'log.txt'
    stdout_before, stderr_before = sys.stdout, sys.stderr
    with util.Logger(file_name=str(log_path), file_mode='w'):
        print('tick 1 kimg 4.0')
        sys.stderr.write('warning: something\n')
    assert sys.stdout is stdout_before and sys.stderr is stderr_before
    assert log_path.read_text() == 'tick 1 kimg 4.0\nwarning: something\n'
    with util.Logger(file_name=str(log_path), file_mode='a'):
        print('resumed')
    assert log_path.read_text().endswith('something\nresumed\n')

#----------------------------------------------------------------------------
# format_time

@pytest.mark.parametrize('seconds, text', [
    (0, '0s'), (12, '12s'), (59.4, '59s'), (60, '1m 00s'), (184, '3m 04s'),
    (7500, '2h 05m'), (86399, '23h 59m'), (97200, '1d 03h'), (10 * 86400 + 5, '10d 00h'),
])
def test_format_time(seconds, text):
    assert util.format_time(seconds) == text

#----------------------------------------------------------------------------
# By-name construction

def test_construct_class_and_call_func_by_name():
    d = util.construct_class_by_name(class_name='dnnlib.util.EasyDict', lr=0.1)
    assert type(d) is dnnlib.EasyDict and d.lr == 0.1
    assert util.call_func_by_name(3.0, 4.0, func_name='math.hypot') == 5.0
    assert util.get_obj_by_name('os.path.join') is os.path.join
    assert util.get_obj_by_name('dict') is dict


def test_bad_names_give_clear_errors():
    with pytest.raises(ModuleNotFoundError, match='no_such_package.Net'):
        util.construct_class_by_name(class_name='no_such_package.Net')
    with pytest.raises(AttributeError, match='"Generatorr" in module "dnnlib.util"'):
        util.get_obj_by_name('dnnlib.util.Generatorr')
    with pytest.raises(TypeError, match='not a class'):
        util.construct_class_by_name(class_name='math.hypot')
    with pytest.raises(ValueError):
        util.construct_class_by_name()
