"""Tests of bench/ scripts: load one as a module (bench/ is not a package, and its scripts stay runnable as files)."""

import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench(name):
    """The module bench/<name>.py, freshly executed."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, 'bench', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
