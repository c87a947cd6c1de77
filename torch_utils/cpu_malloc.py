"""Let a CPU process keep its freed large buffers (glibc malloc settings), for the command-line tools.

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mmap() and returns it
to the kernel on free(). A full-width network on the CPU allocates such buffers in every layer (one
[8, 512, 64, 64] float32 activation is 64 MiB), and the kernel must zero and map every page of each one anew:
measured on a 2-core VM, StyleGAN2 64x64 batch 8 inference ran 1.56 -> 1.27 s per forward and 256x256 5.70 ->
3.79 s with the settings below, and one bias + lrelu + gain + clamp over a 64 MiB activation spends most of its
time in page faults. PyTorch's CPU tuning advice (jemalloc or tcmalloc through LD_PRELOAD) addresses the same
cost; these two mallopt() calls need no install:
  M_MMAP_MAX = 0          large blocks come from the heap, where free() keeps them for the next allocation;
  M_TRIM_THRESHOLD = max  free() does not hand the top of the heap back to the kernel.
Cost: the process keeps its heap until it exits, and the heap fragments (torch's 64-byte-aligned blocks do not
always fit a freed block of the same size): peak memory of StyleGAN2 256x256 batch 8 inference 1.7 -> 2.8 GB,
64x64 1.0 -> 1.2 GB, a 32x32 training step unchanged; it settles within a few iterations and then stays put.
Settings are per process (inherited by forked DataLoader workers). glibc only; elsewhere nothing changes.
Set DNNLIB_MALLOC=system to leave the allocator alone.
"""

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1   # <malloc.h> parameter numbers (glibc).
_M_MMAP_MAX = -4
_INT_MAX = 2 ** 31 - 1
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}

# Whether this process keeps freed memory (mirrors the allocator's own process-wide state, which mallopt cannot
# report): ops whose large temporaries pay only without page faults (winograd.py) ask keeps_freed_memory().
_keeping = False

#----------------------------------------------------------------------------

def _glibc():
    """The C library as a ctypes handle when it is glibc (which has mallopt), else None."""
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(enable=True):
    """Keep freed large blocks in the process (enable=True) or restore glibc's default limits (False, for A/B
    benchmarks). Returns True iff the setting was applied: False off glibc, or when DNNLIB_MALLOC=system."""
    if os.environ.get('DNNLIB_MALLOC', '').strip().lower() == 'system':
        return False
    libc = _glibc()
    if libc is None:
        return False
    global _keeping
    settings = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: _INT_MAX} if enable else _GLIBC_DEFAULTS
    applied = all(libc.mallopt(param, value) == 1 for param, value in settings.items())  # mallopt: 1 = success.
    _keeping = applied and enable
    return applied


def keeps_freed_memory():
    """True iff keep_freed_memory() is in effect in this process."""
    return _keeping

#----------------------------------------------------------------------------
