"""Small utilities shared by every part of the project (the official `dnnlib` names).

`dnnlib.EasyDict` is the dict-with-attributes used for configuration; `dnnlib.util` holds the cache
directory, `open_url`, `Logger`, `format_time` and the by-name constructors.
"""

from . import util
from .util import EasyDict, make_cache_dir_path

__all__ = ['EasyDict', 'make_cache_dir_path', 'util']
