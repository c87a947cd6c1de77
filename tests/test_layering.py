"""Layering (DESIGN.md §4.4): nothing under torch_utils/ or dnnlib/ imports training/, metrics/ or a top-level
script, at import time or lazily inside a function. Read from the source with `ast`, so imports that only run in
some code path count too."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOW_LAYERS = ('torch_utils', 'dnnlib')
UPPER_PACKAGES = ('training', 'metrics')
IMPORT_FUNCTIONS = ('import_module', '__import__')  # importlib.import_module('x'), __import__('x').


def top_level_scripts():
    """Module names of the scripts at the repository root (train, legacy, gen_images, ...)."""
    return {name[:-3] for name in os.listdir(REPO) if name.endswith('.py')}


def imported_modules(source, package):
    """(line, absolute module name) of every import in `source`: import statements anywhere (functions
    included), relative ones resolved against `package`, and calls of import_module/__import__ with a string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(parent + ([base] if base else []))
            found += [(node.lineno, f'{base}.{alias.name}' if base else alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            if name in IMPORT_FUNCTIONS:
                found.append((node.lineno, node.args[0].value))
    return found


def forbidden_imports(source, package):
    """The imports of `source` that reach training/, metrics/ or a top-level script."""
    forbidden = set(UPPER_PACKAGES) | top_level_scripts()
    return [(line, module) for line, module in imported_modules(source, package)
            if module.split('.')[0] in forbidden]


def low_layer_sources():
    for layer in LOW_LAYERS:
        for folder, _dirs, files in os.walk(os.path.join(REPO, layer)):
            for name in sorted(files):
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    package = os.path.relpath(folder, REPO).replace(os.sep, '.')
                    yield os.path.relpath(path, REPO), package


def test_scanner_finds_plain_lazy_relative_and_import_module_imports():
    source = '''
import os, training.networks_stylegan2
from metrics import metric_main
def load():
    import legacy
    from training.tf_legacy import convert_tf_snapshot
    importlib.import_module('metrics.metric_utils')
    return __import__('train')
from . import misc
from .. import dnnlib
'''
    found = forbidden_imports(source, 'torch_utils.ops')
    assert [module for _line, module in found] == [
        'training.networks_stylegan2', 'metrics.metric_main', 'legacy', 'training.tf_legacy.convert_tf_snapshot',
        'metrics.metric_utils', 'train']
    assert ('torch_utils.ops.misc' in [module for _line, module in imported_modules(source, 'torch_utils.ops')])


@pytest.mark.parametrize('path,package', list(low_layer_sources()))
def test_low_layers_import_no_upper_layer_or_script(path, package):
    with open(os.path.join(REPO, path), encoding='utf-8') as f:
        found = forbidden_imports(f.read(), package)
    assert found == [], f'{path} imports ' + ', '.join(f'{module} (line {line})' for line, module in found)


def test_every_low_layer_file_is_scanned():
    paths = [path for path, _package in low_layer_sources()]
    assert os.path.join('torch_utils', 'safe_pickle.py') in paths and os.path.join('dnnlib', 'util.py') in paths
    assert any(path.startswith(os.path.join('torch_utils', 'ops')) for path in paths)
