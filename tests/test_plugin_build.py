"""Every registered CUDA plugin compiles here (nvcc + CUDA build of torch needed; no GPU needed).

Parametrised over custom_ops' registry, so an op module that calls register_plugin at import is covered once it is
imported below; nothing has to be added here. Builds go to the test cache dir (tests/conftest.py) and are keyed by
source digest, so only edited kernels are rebuilt. On 2 shared CPU cores a fresh build takes ~3 minutes.
"""

import importlib
import os

import pytest
import torch

from torch_utils import custom_ops

#----------------------------------------------------------------------------

OP_MODULES = ['torch_utils.ops.bias_act', 'torch_utils.ops.upfirdn2d', 'torch_utils.ops.filtered_lrelu']

def _import_op_modules():
    for name in OP_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # A module not written yet registers nothing; test_<op>.py reports its absence.
            pass
    return custom_ops.registered_plugins()

@pytest.mark.slow
@pytest.mark.parametrize('plugin_name', _import_op_modules())
def test_registered_plugin_compiles_and_loads(plugin_name, monkeypatch):
    if not os.environ.get('CUDA_HOME') and os.path.isfile('/usr/local/cuda/bin/nvcc'):
        monkeypatch.setenv('CUDA_HOME', '/usr/local/cuda')
    if not os.environ.get('TORCH_CUDA_ARCH_LIST') and not torch.cuda.is_available():
        monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '9.0')  # Hopper; compile-only check without a GPU.
    spec = custom_ops._specs[plugin_name]
    needs_cuda = any(source.endswith('.cu') for source in spec['sources'])
    problem = custom_ops.toolchain_problem(needs_cuda)
    if problem is not None:
        pytest.skip(f'cannot build {plugin_name} here: {problem}')
    module = custom_ops.get_plugin(plugin_name, spec['sources'], spec['headers'], spec['source_dir'],
                                   **spec['build_kwargs'])
    exported = [name for name in dir(module) if not name.startswith('_')]
    assert exported, f'{plugin_name} loaded but exports no functions'

def test_bias_act_plugin_is_registered():
    assert 'bias_act_plugin' in _import_op_modules()

#----------------------------------------------------------------------------
