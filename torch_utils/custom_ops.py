"""Just-in-time build of the CUDA op plugins, with a fallback that never kills a run.

Every fast op under `torch_utils/ops` has a pure-PyTorch reference path. The CUDA kernels are an optimisation, so a
plugin that cannot be built (no nvcc, wrong CUDA_HOME, a compiler error) or that gives wrong numbers on this GPU
(`parity_ok`) makes its op fall back to the reference path with one warning per process.

Public surface (DESIGN §5): `verbosity`, `get_plugin(...)` (builds and loads, raises on failure, as the official
function does), plus the helpers the ops use: `register_plugin`, `try_get_plugin`, `use_fast_path`, `parity_ok`,
`plugin_status`.

Build directories live under the dnnlib cache dir (`DNNLIB_CACHE_DIR`), one per plugin and source digest, so an edited
kernel never reuses a stale binary and two checkouts of the same sources share one build.
"""

import glob
import hashlib
import os
import shutil
import time
import logging
import warnings

import torch

import dnnlib

#----------------------------------------------------------------------------

verbosity = 'brief'             # 'none': silent, 'brief': one line per build, 'full': the compiler's output.
BUILD_TIMEOUT_S = float(os.environ.get('DNNLIB_BUILD_TIMEOUT', 900))  # A lock older than this is stale.
_ERROR_LINES = 12               # Lines of compiler output quoted in the fallback warning.

# Plugin caches: the only module-level state here (allowed by the style guide).
_specs = dict()                 # module_name -> dict(sources, headers, source_dir, build_kwargs)
_loaded = dict()                # module_name -> loaded module
_failed = dict()                # module_name -> one-line reason the plugin is unavailable in this process
_parity = dict()                # (op_name, device str) -> bool

_log = logging.getLogger(__name__)

class PluginBuildError(RuntimeError):
    """The plugin could not be built or loaded; the message holds the compiler's error and the fix."""

#----------------------------------------------------------------------------
# Toolchain discovery.

def _cpp_extension():
    """torch.utils.cpp_extension, imported without its import-time guess of CUDA_HOME being logged: that guess
    is often wrong (see find_cuda_home) and we report the toolkit we really use instead."""
    torch_logger = logging.getLogger('torch.utils.cpp_extension')
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_ext
    finally:
        torch_logger.setLevel(level)
    return cpp_ext

def _looks_like_cuda_root(path):
    return bool(path) and os.path.isfile(os.path.join(path, 'bin', 'nvcc')) and \
        os.path.isfile(os.path.join(path, 'include', 'cuda_runtime.h'))

def find_cuda_home():
    """Return the CUDA toolkit root to build with, or None.

    Honours CUDA_HOME / CUDA_PATH. Otherwise torch guesses from the `nvcc` on PATH, which is wrong when that `nvcc` is
    a wrapper script (it would answer /usr/local), so we check that the guess really holds `bin/nvcc` and
    `include/cuda_runtime.h` before trusting it.
    """
    for var in ['CUDA_HOME', 'CUDA_PATH']:
        if os.environ.get(var):
            return os.environ[var]
    cpp_ext = _cpp_extension()
    candidates = [cpp_ext.CUDA_HOME, '/usr/local/cuda'] + sorted(glob.glob('/usr/local/cuda-*'), reverse=True)
    for path in candidates:
        if _looks_like_cuda_root(path):
            return path
    return None

def toolchain_problem(needs_cuda=True):
    """Return None when plugins (with CUDA sources if needs_cuda) can be built here, else a short reason (str)."""
    if shutil.which('ninja') is None and not os.path.isfile(os.path.join(os.path.dirname(os.sys.executable), 'ninja')):
        return 'ninja is not installed (pip install ninja)'
    if not needs_cuda:
        return None
    if torch.version.cuda is None:
        return f'this PyTorch ({torch.__version__}) is a CPU-only build'
    cuda_home = find_cuda_home()
    if cuda_home is None:
        return 'no CUDA toolkit found (nvcc); set CUDA_HOME to the toolkit root, e.g. /usr/local/cuda'
    if not _looks_like_cuda_root(cuda_home):
        return f'CUDA_HOME={cuda_home} holds no bin/nvcc and include/cuda_runtime.h; point it at the toolkit root'
    return None

#----------------------------------------------------------------------------
# Building.

def _source_digest(paths, build_kwargs):
    md5 = hashlib.md5()
    for path in paths:
        md5.update(os.path.basename(path).encode())
        with open(path, 'rb') as f:
            md5.update(f.read())
    md5.update(repr(sorted(build_kwargs.items())).encode())
    md5.update(f'{torch.__version__} {torch.version.cuda}'.encode())
    return md5.hexdigest()

def _build_dir_for(module_name, digest):
    import dnnlib
    return dnnlib.util.make_cache_dir_path('torch_extensions', f'{module_name}-{digest[:16]}')

def _clear_stale_lock(build_dir):
    # torch's FileBaton waits forever on a lock left by a killed build; one older than the build timeout is stale.
    lock = os.path.join(build_dir, 'lock')
    try:
        if time.time() - os.path.getmtime(lock) > BUILD_TIMEOUT_S:
            os.remove(lock)
    except OSError:
        pass

def _prepare_toolchain_env():
    cuda_home = find_cuda_home()
    if cuda_home is not None:
        cpp_ext = _cpp_extension()
        os.environ['CUDA_HOME'] = cuda_home
        cpp_ext.CUDA_HOME = cuda_home  # Its import-time guess may be wrong (see find_cuda_home).
    if not os.environ.get('TORCH_CUDA_ARCH_LIST') and torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        os.environ['TORCH_CUDA_ARCH_LIST'] = ';'.join(f'{major}.{minor}' for major, minor in sorted(caps))
    ninja_dir = os.path.dirname(os.sys.executable)  # A venv's ninja is not on PATH unless the venv is activated.
    if shutil.which('ninja') is None and os.path.isfile(os.path.join(ninja_dir, 'ninja')):
        os.environ['PATH'] = ninja_dir + os.pathsep + os.environ.get('PATH', '')

def get_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs):
    """Build (if needed) and load a C++/CUDA extension; return the module. Raises PluginBuildError on failure.

    sources, headers: file names (relative to source_dir, or absolute). build_kwargs go to
    torch.utils.cpp_extension.load (extra_cflags, extra_cuda_cflags, extra_ldflags, ...).
    """
    if module_name in _loaded:
        return _loaded[module_name]
    headers = headers or []
    resolve = (lambda p: os.path.join(source_dir, p)) if source_dir is not None else (lambda p: p)
    source_paths = [resolve(p) for p in sources]
    header_paths = [resolve(p) for p in headers]
    needs_cuda = any(p.endswith('.cu') for p in source_paths)
    problem = toolchain_problem(needs_cuda)
    if problem is not None:
        raise PluginBuildError(f'cannot build {module_name}: {problem}')
    _prepare_toolchain_env()
    if needs_cuda and not os.environ.get('TORCH_CUDA_ARCH_LIST'):
        raise PluginBuildError(f'cannot build {module_name}: no GPU to detect; set TORCH_CUDA_ARCH_LIST, e.g. 9.0')

    # Copy the sources into a directory named by their digest, so that paths in the ninja file are stable and
    # concurrent processes with different sources never share a build.
    digest = _source_digest(source_paths + header_paths, build_kwargs)
    build_dir = _build_dir_for(module_name, digest)
    src_dir = os.path.join(build_dir, 'src')
    os.makedirs(src_dir, exist_ok=True)
    for path in source_paths + header_paths:
        dst = os.path.join(src_dir, os.path.basename(path))
        if not os.path.isfile(dst):
            with dnnlib.util.atomic_output_path(dst) as tmp:
                shutil.copyfile(path, tmp)
    _clear_stale_lock(build_dir)

    cpp_ext = _cpp_extension()
    if verbosity != 'none':
        _log.info('Setting up PyTorch plugin "%s" (a first build takes minutes) in %s', module_name, build_dir)
    try:
        module = cpp_ext.load(name=module_name, build_directory=build_dir, verbose=(verbosity == 'full'),
                              sources=[os.path.join(src_dir, os.path.basename(p)) for p in source_paths],
                              **build_kwargs)
    except Exception as e:  # Compiler errors come as RuntimeError, a missing toolkit as OSError, ...
        raise PluginBuildError(_describe_build_error(module_name, e, build_dir)) from e
    _loaded[module_name] = module
    return module

def _describe_build_error(module_name, exc, build_dir):
    lines = [line for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if 'error' in line.lower()] or lines
    quoted = '\n    '.join(errors[:_ERROR_LINES])
    return (f'building {module_name} failed ({type(exc).__name__}):\n    {quoted}\n'
            f'  build dir: {build_dir}\n'
            f'  fix: check that CUDA_HOME points at a CUDA toolkit matching torch {torch.version.cuda} and that a host '
            f'compiler is installed; run `python -m torch_utils.ops` for a diagnosis. The op uses its (slower) '
            f'reference implementation meanwhile; set DNNLIB_OPS=ref to silence this.')

#----------------------------------------------------------------------------
# What the ops call.

def register_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs):
    """Record how to build a plugin (called when an op module is imported); builds nothing."""
    _specs[module_name] = dict(sources=list(sources), headers=list(headers or []), source_dir=source_dir,
                               build_kwargs=dict(build_kwargs))

def registered_plugins():
    """Names of the plugins registered so far, in registration order."""
    return list(_specs)

def try_get_plugin(module_name):
    """Return the loaded plugin, or None when it cannot be had in this process (warns once, then stays silent)."""
    if module_name in _loaded:
        return _loaded[module_name]
    if module_name in _failed:
        return None
    if module_name not in _specs:
        raise KeyError(f'plugin {module_name!r} was never registered; known: {registered_plugins()}')
    spec = _specs[module_name]
    try:
        return get_plugin(module_name, spec['sources'], spec['headers'], spec['source_dir'], **spec['build_kwargs'])
    except PluginBuildError as e:
        _failed[module_name] = str(e).splitlines()[0]
        if verbosity != 'none':
            warnings.warn(f'{e}', RuntimeWarning, stacklevel=2)
        return None

def forced_impl():
    """The implementation forced by env DNNLIB_OPS ('ref' or 'cuda'), or None."""
    value = os.environ.get('DNNLIB_OPS', '').strip().lower()
    if value in ('', 'auto'):
        return None
    if value not in ('ref', 'cuda'):
        raise ValueError(f'DNNLIB_OPS={value!r} is not one of ref, cuda, auto')
    return value

def use_fast_path(impl, x):
    """True iff the op should try its CUDA kernel for tensor x: impl == 'cuda', x on CUDA, DNNLIB_OPS != 'ref'."""
    if impl not in ('cuda', 'ref'):
        raise ValueError(f"impl={impl!r}: expected 'cuda' (fast kernel when possible) or 'ref'")
    forced = forced_impl()  # Validated on every call, so a typo in DNNLIB_OPS is an error on CPU too.
    return impl == 'cuda' and x.is_cuda and forced != 'ref'

def parity_ok(op_name, device, check_fn):
    """Check once per (op, device) and process that the kernel matches the reference.

    check_fn() -> (ok: bool, details: str). On a mismatch (or an exception) warns once with the details and the op
    stays on its reference path for the rest of the process.
    """
    key = (op_name, str(device))
    if key not in _parity:
        try:
            ok, details = check_fn()
        except Exception as e:  # A kernel that crashes on this GPU is as unusable as a wrong one.
            ok, details = False, f'{type(e).__name__}: {e}'
        _parity[key] = bool(ok)
        if not ok:
            _failed.setdefault(op_name, f'parity check failed on {device}')
            warnings.warn(f'{op_name}: CUDA kernel disagrees with the reference on {device} ({details}); '
                          f'using the reference implementation for the rest of this process.', RuntimeWarning)
    return _parity[key]

def plugin_status(module_name):
    """One line: 'loaded', 'failed: <reason>', or 'not built yet' for a registered plugin."""
    if module_name in _loaded:
        return 'loaded'
    if module_name in _failed:
        return f'failed: {_failed[module_name]}'
    return 'not built yet'

#----------------------------------------------------------------------------
