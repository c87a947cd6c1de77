"""Miscellaneous helpers: EasyDict, cache directory, open_url, Logger, format_time, by-name construction.

Library functions here never print unless asked to (`verbose=True` in `open_url`); diagnostics go through
the `logging` module under the logger name `dnnlib.util`.
"""

import contextlib
import hashlib
import importlib
import io
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import uuid

_log = logging.getLogger(__name__)

#----------------------------------------------------------------------------
# EasyDict: configuration dictionaries with attribute access.
# Pickles store it as the global `dnnlib.util.EasyDict`, which official pickles also use.

class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes: `d.lr` is `d['lr']`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return list(super().__dir__()) + [key for key in self.keys() if isinstance(key, str)]

#----------------------------------------------------------------------------
# Cache directory.

def _is_writable_dir(path):
    """True if `path` exists as a writable directory or could be created as one."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def make_cache_dir_path(*paths):
    """Path of a file or folder inside the dnnlib cache directory (the directory is not created).

    The cache root is, in order of preference: `$DNNLIB_CACHE_DIR`; `~/.cache/dnnlib` when the home
    directory is writable; `<system temp dir>/dnnlib-cache-<user>` otherwise (e.g. a read-only HOME in a
    container).
    """
    env_dir = os.environ.get('DNNLIB_CACHE_DIR')
    if env_dir:
        return os.path.join(env_dir, *paths)
    home_dir = os.environ.get('HOME') or os.environ.get('USERPROFILE')
    if home_dir:
        home_cache = os.path.join(home_dir, '.cache', 'dnnlib')
        if _is_writable_dir(home_cache):
            return os.path.join(home_cache, *paths)
    user = os.environ.get('USER') or (str(os.getuid()) if hasattr(os, 'getuid') else 'user')
    user = re.sub(r'[^A-Za-z0-9_.-]', '_', user)
    return os.path.join(tempfile.gettempdir(), f'dnnlib-cache-{user}', *paths)

#----------------------------------------------------------------------------
# URLs and open_url.

def is_url(obj, allow_file_urls=False):
    """True if `obj` is a string holding an absolute URL (`scheme://host/...`).

    `file://` URLs count only when `allow_file_urls` is True.
    """
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    try:
        parsed = urllib.parse.urlparse(obj)
    except ValueError:
        return False
    return bool(parsed.scheme) and bool(parsed.netloc) and parsed.scheme != 'file'


def _file_url_to_path(url):
    """Local filesystem path of a `file://` URL (host must be empty or localhost)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ('', 'localhost'):
        raise ValueError(f'open_url: cannot open {url!r}: file:// URLs must name a local file (host "" or localhost)')
    return urllib.request.url2pathname(parsed.path)


def url_cache_path(url, cache_dir=None):
    """Where `open_url` keeps (or expects) the cached copy of `url`: `<cache_dir>/<md5(url)>_<file name>`."""
    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    base_name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    base_name = re.sub(r'[^0-9A-Za-z_.-]', '_', base_name)[:128]
    return os.path.join(cache_dir, f'{url_md5}_{base_name}')


def _download_once(url, timeout):
    """Open `url` for reading; the caller streams the body (`_stream_to_file`) and closes the response."""
    request = urllib.request.Request(url, headers={'User-Agent': 'dnnlib-open-url'})
    return urllib.request.urlopen(request, timeout=timeout)


def _stream_to_file(response, file, url, verbose):
    """Copy the response body into `file` in 1 MiB chunks with a progress bar (verbose); returns the sha256 hex.

    Raises IOError on a short read (fewer bytes than the Content-Length header promised)."""
    expected = response.headers.get('Content-Length')
    total = int(expected) if expected is not None and expected.isdigit() else None
    digest, num_bytes = hashlib.sha256(), 0
    from tqdm import tqdm  # A dependency (requirements.txt); imported here so that dnnlib imports stay light.
    with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, disable=not verbose, file=sys.stderr,
              desc=os.path.basename(urllib.parse.urlparse(url).path) or url, leave=False) as progress:
        while chunk := response.read(1 << 20):
            file.write(chunk)
            digest.update(chunk)
            num_bytes += len(chunk)
            progress.update(len(chunk))
    if total is not None and total != num_bytes:
        raise IOError(f'short read: got {num_bytes} of {total} bytes')
    return digest.hexdigest(), num_bytes


def _is_permanent_failure(err):
    """Errors that retrying cannot fix: HTTP 4xx, and a failing name lookup (no network)."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, socket.gaierror):
        return True
    return False


class ChecksumError(IOError):
    """A download whose size or sha256 differs from the expected one (the file is not kept)."""


def _download_with_retries(url, file, num_attempts, verbose, timeout=60):
    """Stream `url` into the binary `file` (truncated before each try) with up to `num_attempts` tries and a
    short exponential back-off. Returns (sha256 hex, size in bytes)."""
    last_error = None
    for attempt in range(max(num_attempts, 1)):
        if attempt > 0:
            time.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
        try:
            file.seek(0)
            file.truncate()
            with _download_once(url, timeout) as response:
                return _stream_to_file(response, file, url, verbose)
        except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors.
            last_error = err
            _log.debug('open_url: attempt %d for %s failed: %s', attempt + 1, url, err)
            if _is_permanent_failure(err):
                break
    raise _DownloadError(last_error)


class _DownloadError(Exception):
    """Internal: all attempts failed; `cause` holds the last error."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause

#----------------------------------------------------------------------------
# Atomic writes: a temporary file beside the target, renamed over it only when complete.

TEMP_FILE_REGEX = r'(?P<target>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?'  # <name>.tmp<pid>[.ext]


def temp_path_for(path, suffix=''):
    """The temporary name `write_file_atomic` uses for `path` in this process: `<path>.tmp<pid><suffix>`."""
    return f'{path}.tmp{os.getpid()}{suffix}'


def named_os_error(err, path):
    """`err` with `path` as its file name (ENOSPC/EFBIG raised by write() and close() carry none); `err` itself
    when it already names a file or is not an OSError."""
    if not isinstance(err, OSError) or err.filename is not None or err.errno is None:
        return err
    return type(err)(err.errno, err.strerror, path)


@contextlib.contextmanager
def atomic_output_path(path, suffix=''):
    """Yield a temporary path beside `path` to write to; rename it to `path` when the block succeeds, delete it
    when it fails. OSErrors (a full disk, a read-only folder) name `path`. `suffix` keeps an extension for
    writers that need one (e.g. '.mp4' for ffmpeg)."""
    tmp_path = temp_path_for(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        named = named_os_error(err, path)
        if named is err:
            raise
        raise named from err
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)


def write_file_atomic(path, write_fn, mode='wb'):
    """Write `path` by calling write_fn(file) on a temporary file, then renaming it over `path`, so that readers
    (and a later resume after kill -9) never see half a file. mode: 'wb' or 'wt'/'w'."""
    with atomic_output_path(path) as tmp_path:
        with open(tmp_path, mode) as f:
            write_fn(f)


def _pid_is_alive(pid):
    """True if a process with this id exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # Someone else's process, or no way to tell: keep its files.
    return True


def remove_stale_temp_files(folder, target=None):
    """Delete `<name>.tmp<pid>[.ext]` files and folders in `folder` (not recursive) left by processes that no
    longer run (kill -9 during an atomic write); only those of `<target>` when given. Returns the removed names.
    Files of live processes are kept."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        match = re.fullmatch(TEMP_FILE_REGEX, name)
        if match is None or (target is not None and match.group('target') != target) or \
                _pid_is_alive(int(match.group('pid'))):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
            else:
                continue
            removed.append(name)
    return removed

#----------------------------------------------------------------------------
# open_url.

def _check_download(url, sha256, size, actual_sha256, actual_size):
    if size is not None and actual_size != size:
        raise ChecksumError(f'open_url: {url} is {actual_size} bytes, expected {size}; the download is not kept')
    if sha256 is not None and actual_sha256 != sha256.lower():
        raise ChecksumError(f'open_url: {url} has sha256 {actual_sha256}, expected {sha256.lower()}; the '
                            'download is not kept (a changed or corrupt file; retry, or check the URL)')


def _download_to(url, cache_path, num_attempts, verbose, sha256, size):
    """Download `url` to `cache_path` through a temporary file in the same folder, checked, then renamed."""
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with atomic_output_path(cache_path) as tmp_path:
        with open(tmp_path, 'w+b') as file:
            try:
                actual_sha256, actual_size = _download_with_retries(url, file, num_attempts, verbose)
            except _DownloadError as err:
                raise IOError(f'open_url: could not download {url} ({err.cause}). If this machine is offline, '
                              f'fetch the file elsewhere and put it at {cache_path} (that is where the cache looks '
                              'for this URL), or pass a local path instead of the URL.') from err.cause
        _check_download(url, sha256, size, actual_sha256, actual_size)


def open_url(url, cache_dir=None, num_attempts=10, verbose=True, return_filename=False, cache=True, sha256=None,
             size=None):
    """Open a local path, a `file://` URL or an http(s) URL as a binary file object.

    Local paths and file:// URLs are opened directly (never copied). http(s) URLs are streamed (with a
    progress bar when `verbose`) into a temporary file in `cache_dir` (default
    `make_cache_dir_path('downloads')`), checked against `size`/`sha256` when given, and renamed to
    `<md5 of the URL>_<file name>`; a later call finds the file there without touching the network, so a
    machine without internet can use a URL once its file has been put at that path.

    Args:
        url:             path or URL (str or os.PathLike).
        cache_dir:       where downloads are cached; None = default cache directory.
        num_attempts:    download tries before giving up (HTTP 4xx and failed DNS lookups stop early).
        verbose:         print download progress to stderr (CLI use); otherwise only `logging`.
        return_filename: return the local file name instead of an open file (requires `cache` for URLs).
        cache:           keep downloads on disk; False returns an in-memory `io.BytesIO` (the temporary file
                         is deleted).
        sha256:          expected sha256 (hex) of the download; a mismatch keeps no file.
        size:            expected size of the download in bytes; a mismatch keeps no file.
    Returns:
        A binary file object (the caller closes it), or a path if `return_filename`.
    Raises:
        FileNotFoundError for a missing local file; IOError naming the URL and the cache path to fill
        when a download fails; ChecksumError (an IOError) for a download of the wrong size or sha256.
    """
    url = os.fspath(url)
    if not isinstance(url, str):
        raise TypeError(f'open_url: expected a str path or URL, got {type(url).__name__}')
    if return_filename and not cache and is_url(url):
        raise ValueError('open_url: return_filename=True needs cache=True for remote URLs')
    if not is_url(url, allow_file_urls=True):  # Plain local path.
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        path = _file_url_to_path(url)
        return path if return_filename else open(path, 'rb')

    cache_path = url_cache_path(url, cache_dir)
    if cache and os.path.isfile(cache_path):
        _log.debug('open_url: cache hit for %s at %s', url, cache_path)
        return cache_path if return_filename else open(cache_path, 'rb')
    if not cache:  # Stream to a private temporary file, then read it into memory.
        cache_path = os.path.join(os.path.dirname(cache_path), f'.nocache-{uuid.uuid4().hex}')
    if verbose:
        print(f'Downloading {url} ...', file=sys.stderr, flush=True)
    _download_to(url, cache_path, num_attempts, verbose, sha256, size)
    if not cache:
        try:
            with open(cache_path, 'rb') as f:
                return io.BytesIO(f.read())
        finally:
            os.remove(cache_path)
    return cache_path if return_filename else open(cache_path, 'rb')

#----------------------------------------------------------------------------
# Logger: tee stdout and stderr into a log file.

class _TeeStream:
    """A text stream that writes to the original stream and to the Logger's file."""

    def __init__(self, logger, original):
        self._logger = logger
        self._original = original

    def write(self, text):
        if isinstance(text, bytes):
            text = text.decode()
        if len(text) == 0:
            return 0
        self._logger._write_file(text)
        if self._original is not None:
            self._original.write(text)
        if self._logger.should_flush:
            self.flush()
        return len(text)

    def flush(self):
        self._logger._flush_file()
        if self._original is not None:
            self._original.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, ... come from the original stream.
        return getattr(self._original, name)


class Logger:
    """Copy everything written to stdout and stderr into a text file, until `close()`.

    Use as a context manager or call `close()`; nested Loggers restore their predecessors in order.
    """

    def __init__(self, file_name=None, file_mode='w', should_flush=True):
        self.file = open(file_name, file_mode, encoding='utf-8') if file_name is not None else None
        self.should_flush = should_flush
        self._lock = threading.Lock()
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = _TeeStream(self, self.stdout)
        sys.stderr = _TeeStream(self, self.stderr)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def _write_file(self, text):
        if self.file is not None:
            with self._lock:
                self.file.write(text)

    def _flush_file(self):
        if self.file is not None:
            with self._lock:
                self.file.flush()

    def write(self, text):
        """Write to the log file and the original stdout."""
        _TeeStream(self, self.stdout).write(text)

    def flush(self):
        """Flush the log file and the original streams."""
        self._flush_file()
        self.stdout.flush()
        self.stderr.flush()

    def _owns(self, stream):
        return isinstance(stream, _TeeStream) and stream._logger is self

    def close(self):
        """Flush, restore sys.stdout/sys.stderr and close the file (idempotent)."""
        self.flush()
        if self._owns(sys.stdout):
            sys.stdout = self.stdout
        if self._owns(sys.stderr):
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None

#----------------------------------------------------------------------------
# Human-readable durations.

def format_time(seconds):
    """Duration as text with two units at most: '12s', '3m 04s', '2h 05m', '1d 03h'."""
    total = int(round(seconds))
    if total < 60:
        return f'{total}s'
    if total < 60 * 60:
        return f'{total // 60}m {total % 60:02d}s'
    if total < 24 * 60 * 60:
        return f'{total // 3600}h {(total // 60) % 60:02d}m'
    return f'{total // 86400}d {(total // 3600) % 24:02d}h'

#----------------------------------------------------------------------------
# Objects by dotted name ('training.networks_stylegan2.Generator').

def get_module_from_obj_name(obj_name):
    """Split a dotted name into (module, attribute path inside it), importing the longest module prefix.

    A bare name ('dict') resolves to a top-level module or a builtin.
    """
    if not isinstance(obj_name, str) or not obj_name:
        raise ValueError(f'Expected a dotted object name such as "torch.optim.Adam", got {obj_name!r}')
    parts = obj_name.split('.')
    for split in range(len(parts) - 1, 0, -1):  # Longest module prefix first.
        module_name = '.'.join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and not module_name.startswith(err.name):
                raise  # The module exists but one of its own imports is missing: report that.
            continue
        return module, '.'.join(parts[split:])
    try:
        return importlib.import_module(obj_name), ''
    except ModuleNotFoundError:
        import builtins
        if len(parts) == 1 and hasattr(builtins, obj_name):
            return builtins, obj_name
    raise ModuleNotFoundError(f'Cannot import a module for "{obj_name}": no prefix of it is an importable module '
                              f'(is the package installed and the name spelled right?)', name=parts[0])


def get_obj_from_module(module, obj_name):
    """Follow a dotted attribute path inside a module; '' returns the module itself."""
    obj = module
    for part in [p for p in obj_name.split('.') if p]:
        obj = getattr(obj, part)
    return obj


def get_obj_by_name(name):
    """The object named by a dotted path, e.g. `get_obj_by_name('torch.optim.Adam')`."""
    module, obj_name = get_module_from_obj_name(name)
    try:
        return get_obj_from_module(module, obj_name)
    except AttributeError:
        raise AttributeError(f'Cannot find "{obj_name}" in module "{module.__name__}" (looking up "{name}"); '
                             f'check the spelling of the class or function name') from None


def call_func_by_name(*args, func_name=None, **kwargs):
    """Call the function (or class) named `func_name` with the given arguments."""
    if func_name is None:
        raise ValueError('call_func_by_name: func_name is required')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f'"{func_name}" names a {type(func).__name__}, which is not callable')
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name=None, **kwargs):
    """Instantiate the class named `class_name` with the given arguments."""
    if class_name is None:
        raise ValueError('construct_class_by_name: class_name is required')
    cls = get_obj_by_name(class_name)
    if not isinstance(cls, type):
        raise TypeError(f'"{class_name}" names a {type(cls).__name__}, not a class')
    return cls(*args, **kwargs)


def get_module_dir_by_obj_name(obj_name):
    """Directory of the module that defines the named object."""
    module, _ = get_module_from_obj_name(obj_name)
    return os.path.dirname(os.path.abspath(module.__file__))


def is_top_level_function(obj):
    """True if `obj` is a plain function defined at the top level of its module."""
    return isinstance(obj, types.FunctionType) and obj.__qualname__ == obj.__name__ and \
        getattr(sys.modules.get(obj.__module__), obj.__name__, None) is obj


def get_top_level_function_name(obj):
    """Dotted name of a top-level function, usable with `call_func_by_name`."""
    if not is_top_level_function(obj):
        raise ValueError(f'{obj!r} is not a top-level function of its module')
    module = obj.__module__
    if module == '__main__':
        module = os.path.splitext(os.path.basename(sys.modules[module].__file__))[0]
    return f'{module}.{obj.__name__}'

#----------------------------------------------------------------------------
