"""Layering (DESIGN.md §4.4): nothing under torch_utils/ or dnnlib/ imports training/, metrics/ or a top-level
script, at import time or lazily inside a function. Read from the source with `ast`, so imports that only run in
some code path count too. Imports by a computed name are caught twice over: no string constant in those layers may
name a training./metrics. module (a table of module names is an import waiting to happen), and import_module /
__import__ may only take a literal or an f-string inside the low layers (one generic helper excepted)."""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOW_LAYERS = ('torch_utils', 'dnnlib')
UPPER_PACKAGES = ('training', 'metrics')
IMPORT_FUNCTIONS = ('import_module', '__import__')  # importlib.import_module('x'), __import__('x').
UPPER_MODULE_NAME = re.compile(r'(training|metrics)(\.[A-Za-z_]\w*)+')  # 'training.networks_stylegan2', ...
# Functions that import a name their caller chose: the official dotted-name API (construct_class_by_name and
# friends), called with upper-layer names only from upper layers. Nothing else may import a computed name.
GENERIC_IMPORTERS = {(os.path.join('dnnlib', 'util.py'), 'get_module_from_obj_name')}


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


def _call_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)


def upper_module_strings(source):
    """(line, text) of string constants (f-string heads included) that name a training./metrics. module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)  # f'training.{name}' names a training module too.
            if re.match(r'(training|metrics)\.', text):
                found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and UPPER_MODULE_NAME.fullmatch(node.value.strip()):
            found.append((node.lineno, node.value))
    return sorted(set(found))


def computed_imports(source, low_prefixes=LOW_LAYERS):
    """(line, enclosing function) of import_module/__import__ calls whose module name is neither a string literal
    nor an f-string that starts inside the low layers (f'torch_utils.ops.{name}')."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call) and _call_name(child) in IMPORT_FUNCTIONS:
                arg = child.args[0] if child.args else None
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                low_fstring = isinstance(arg, ast.JoinedStr) and arg.values \
                    and isinstance(arg.values[0], ast.Constant) \
                    and str(arg.values[0].value).split('.')[0] in low_prefixes \
                    and str(arg.values[0].value).count('.') >= 1
                if not (literal or low_fstring):
                    found.append((child.lineno, function))
            visit(child, function)
    visit(ast.parse(source), None)
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


def test_scanner_finds_module_name_strings_and_computed_imports():
    source = """
\"\"\"Docstring mentioning training/networks_stylegan2.py and training.networks_stylegan2 in prose.\"\"\"
TABLE = {'stylegan2': 'training.networks_stylegan2', 'fid': 'metrics.frechet_inception_distance'}
OK = ('training', 'metrics', 'torch_utils.ops.bias_act', 'training-set', 'training.')
def load(name, family):
    importlib.import_module(TABLE[family])
    importlib.import_module(f'training.networks_{family}')
    importlib.import_module(f'torch_utils.ops.{name}')
    importlib.import_module('torch_utils.misc')
    return __import__(name)
"""
    assert upper_module_strings(source) == [
        (3, 'metrics.frechet_inception_distance'), (3, 'training.networks_stylegan2'), (7, 'training.networks_')]
    assert computed_imports(source) == [(6, 'load'), (7, 'load'), (10, 'load')]


@pytest.mark.parametrize('path,package', list(low_layer_sources()))
def test_low_layers_import_no_upper_layer_or_script(path, package):
    with open(os.path.join(REPO, path), encoding='utf-8') as f:
        found = forbidden_imports(f.read(), package)
    assert found == [], f'{path} imports ' + ', '.join(f'{module} (line {line})' for line, module in found)


@pytest.mark.parametrize('path,package', list(low_layer_sources()))
def test_low_layers_name_no_upper_module_and_import_no_computed_name(path, package):
    with open(os.path.join(REPO, path), encoding='utf-8') as f:
        source = f.read()
    names = upper_module_strings(source)
    assert names == [], f'{path} names upper-layer modules (pass them in from training/ instead): ' + \
        ', '.join(f'{text!r} (line {line})' for line, text in names)
    computed = [(line, function) for line, function in computed_imports(source)
                if (path, function) not in GENERIC_IMPORTERS]
    assert computed == [], f'{path} imports a computed module name: ' + \
        ', '.join(f'line {line} in {function}()' for line, function in computed)


def test_every_low_layer_file_is_scanned():
    paths = [path for path, _package in low_layer_sources()]
    assert os.path.join('torch_utils', 'safe_pickle.py') in paths and os.path.join('dnnlib', 'util.py') in paths
    assert any(path.startswith(os.path.join('torch_utils', 'ops')) for path in paths)
